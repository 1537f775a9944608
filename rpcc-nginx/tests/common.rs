//! Shared helpers for rpcc-nginx's tests: installed nginx version, tool paths, writing
//! a generation where its own paths say it lives, and test certificates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rpcc_core::generation::Generation;

/// The installed nginx's version, e.g. `1.22.1`.
pub fn nginx_version() -> String {
    let out = Command::new("nginx").arg("-v").output().expect("nginx is installed (scripts/setup-host)");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.split("nginx/").nth(1).map(|v| v.split_whitespace().next().unwrap_or("").to_owned()).expect("nginx -v output")
}

/// The Python with gixy-ng and crossplane (created by scripts/setup-host).
pub fn tools_python() -> PathBuf {
    if let Ok(p) = std::env::var("RPCC_TOOLS_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::env::var("RPCC_TOOLS_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/rpcc-tools")
    });
    let python = venv.join("bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup-host", python.display());
    python
}

/// Write a generation into `<root>/generations/<id>/` (where its absolute paths point).
pub fn install(root: &Path, generation: &Generation) -> PathBuf {
    let dir = root.join("generations").join(generation.id());
    for (path, file) in generation.files() {
        let target = dir.join(path.as_str());
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, &file.bytes).expect("write file");
    }
    dir
}

/// A self-signed certificate and key (EC P-256), made once per test process.
pub fn test_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("test-cert.pem");
    let key = dir.join("test-key.pem");
    if !cert.exists() {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "30",
            ])
            .args(["-subj", "/CN=rpcc-test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl req failed");
    }
    (cert, key)
}

/// Put the test certificate at every path the given config text references with
/// `ssl_certificate`/`ssl_certificate_key`.
pub fn provide_certs(text: &str, cert: &Path, key: &Path) {
    for line in text.lines() {
        let line = line.trim();
        let (src, rest) = if let Some(r) = line.strip_prefix("ssl_certificate_key ") {
            (key, r)
        } else if let Some(r) = line.strip_prefix("ssl_certificate ") {
            (cert, r)
        } else {
            continue;
        };
        let path = Path::new(rest.trim_end_matches(';'));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir cert dir");
        std::fs::copy(src, path).expect("copy cert");
    }
}

/// `nginx -t -c <conf>`: Ok(()) or nginx's message.
pub fn nginx_t(conf: &Path) -> Result<(), String> {
    let out = Command::new("nginx").arg("-t").arg("-c").arg(conf).output().expect("nginx runs");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}
