//! `rpcc render` end to end: trees and manifests on disk, determinism, and no output at
//! all when anything fails.

use std::path::Path;
use std::process::{Command, Output};

fn rpcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpcc")).args(args).output().expect("run rpcc")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml").display().to_string()
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn renders_every_server_with_a_manifest_that_matches_the_files() -> anyhow::Result<()> {
    let out_dir = tempfile::tempdir()?;
    let out =
        rpcc(&["render", &example(), "--out", out_dir.path().to_str().unwrap_or_default(), "--root", "/srv/rpcc"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for server in ["edge-1", "edge-2", "us-edge-1"] {
        let dir = out_dir.path().join(server);
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
        let files = manifest["files"].as_array().expect("files");
        assert!(!files.is_empty());
        for f in files {
            let path = dir.join(f["path"].as_str().unwrap_or_default());
            assert_eq!(sha256_hex(&path), f["sha256"].as_str().unwrap_or_default(), "{}", path.display());
        }
        assert_eq!(manifest["tree_sha256"].as_str().map(str::len), Some(64));
        let id = manifest["id"].as_str().unwrap_or_default().to_owned();
        if server != "us-edge-1" {
            let main = std::fs::read_to_string(dir.join("nginx.conf"))?;
            assert!(main.contains(&format!("include /srv/rpcc/generations/{id}/http.conf;")), "{main}");
        }
    }
    assert!(!out_dir.path().join("us-edge-1/nginx.conf").exists(), "include mode has no main config");

    // Same input, same bytes.
    let again = tempfile::tempdir()?;
    let out2 = rpcc(&["render", &example(), "--out", again.path().to_str().unwrap_or_default(), "--root", "/srv/rpcc"]);
    let summary = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.split(" -> ").next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(summary(&out), summary(&out2));
    assert_eq!(summary(&out).len(), 3);
    let a = std::fs::read(out_dir.path().join("edge-1/manifest.json"))?;
    let b = std::fs::read(again.path().join("edge-1/manifest.json"))?;
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn one_server_only() -> anyhow::Result<()> {
    let out_dir = tempfile::tempdir()?;
    let out = rpcc(&["render", &example(), "--out", out_dir.path().to_str().unwrap_or_default(), "--server", "edge-2"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out_dir.path().join("edge-2/http.conf").exists());
    assert!(!out_dir.path().join("edge-1").exists());
    let unknown =
        rpcc(&["render", &example(), "--out", out_dir.path().to_str().unwrap_or_default(), "--server", "edge-9"]);
    assert_eq!(unknown.status.code(), Some(1));
    Ok(())
}

#[test]
fn a_broken_template_override_writes_nothing() -> anyhow::Result<()> {
    let templates = tempfile::tempdir()?;
    std::fs::write(
        templates.path().join("site.conf.j2"),
        "server_name {{ site.domain | arg }};\nroot {{ site.missing }};\n",
    )?;
    let out_dir = tempfile::tempdir()?;
    let target = out_dir.path().join("out");
    let out = rpcc(&[
        "render",
        &example(),
        "--out",
        target.to_str().unwrap_or_default(),
        "--templates",
        templates.path().to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("site.conf.j2") && stderr.contains("line 2"), "{stderr}");
    assert!(!target.exists(), "output written despite the error");
    Ok(())
}

#[test]
fn an_invalid_inventory_renders_nothing() -> anyhow::Result<()> {
    let out_dir = tempfile::tempdir()?;
    let target = out_dir.path().join("out");
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("rpcc-core/tests/bad-inventories/many-errors-at-once.toml");
    let out = rpcc(&["render", bad.to_str().unwrap_or_default(), "--out", target.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("7 errors; nothing was changed"));
    assert!(!target.exists());
    Ok(())
}
