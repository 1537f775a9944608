//! `ssh-rsa` host-key signatures (RSA with SHA-1) are refused by default: against a
//! real sshd that offers nothing else, key exchange fails before any credential is
//! sent; with `allow_rsa_sha1` the same server is reached. The same RSA key offered with
//! `rsa-sha2-*` is fine by default.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpcc_core::transport::{Argv, ExecRequest, Transport, TransportError};

use rpcc_ssh::{RetryPolicy, SshTarget, SshTransport};

mod common;
use common::key_target;

/// A private sshd on loopback with an RSA host key, offering `algorithms`; killed on drop.
struct RsaSshd {
    child: std::process::Child,
    port: u16,
    pin: String,
    client_key: std::path::PathBuf,
    log: std::path::PathBuf,
    user: String,
    _dir: tempfile::TempDir,
}

impl Drop for RsaSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "{:?}: {}", cmd, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

fn start(algorithms: &str) -> anyhow::Result<RsaSshd> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let p = |n: &str| dir.path().join(n);
    run(Command::new("ssh-keygen").args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"]).arg(p("host_rsa")))?;
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(p("client")))?;
    std::fs::copy(p("client.pub"), p("authorized_keys"))?;
    std::fs::set_permissions(p("authorized_keys"), std::fs::Permissions::from_mode(0o644))?;
    let fp = run(Command::new("ssh-keygen").args(["-l", "-E", "sha256", "-f"]).arg(p("host_rsa.pub")))?;
    let sha = fp.split_whitespace().nth(1).unwrap_or_default().to_owned();
    // The kit's login user (plain /bin/sh) when scripts/setup-host made it.
    let user = if Command::new("id").arg("rpcc-test").stdout(Stdio::null()).status()?.success() {
        "rpcc-test".to_owned()
    } else {
        run(Command::new("id").arg("-un"))?.trim().to_owned()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    std::fs::write(
        p("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nHostKeyAlgorithms {algorithms}\nPidFile {pid}\n\
             AuthorizedKeysFile {auth}\nAllowUsers {user}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            hk = p("host_rsa").display(),
            pid = p("sshd.pid").display(),
            auth = p("authorized_keys").display(),
        ),
    )?;
    std::fs::create_dir_all("/run/sshd").ok();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-f"])
        .arg(p("sshd_config"))
        .arg("-E")
        .arg(p("sshd.log"))
        .stdin(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "sshd did not listen: {}", std::fs::read_to_string(p("sshd.log"))?);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(RsaSshd {
        child,
        port,
        pin: format!("ssh-rsa {sha}"),
        client_key: p("client"),
        log: p("sshd.log"),
        user,
        _dir: dir,
    })
}

fn target(s: &RsaSshd, allow_rsa_sha1: bool) -> SshTarget {
    let mut t = key_target("rsa", &format!("127.0.0.1:{}", s.port), &s.user, &s.client_key, &s.pin);
    t.timeouts.connect = Duration::from_secs(5);
    t.retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    t.allow_rsa_sha1 = allow_rsa_sha1;
    t
}

fn id() -> ExecRequest {
    ExecRequest::new(Argv::new("id", ["-un"]).expect("argv")).timeout(Duration::from_secs(10))
}

fn auth_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Accepted") || l.contains("Failed") || l.contains("publickey"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_sha1_host_keys_are_refused_unless_allowed() -> anyhow::Result<()> {
    if !Path::new("/usr/sbin/sshd").exists() {
        anyhow::bail!("sshd missing: run scripts/setup-host");
    }
    // A server that signs its RSA host key with SHA-1 only.
    let old = start("ssh-rsa")?;
    let err = SshTransport::new(target(&old, false))?.exec(id()).await.unwrap_err();
    assert!(!matches!(err, TransportError::Auth { .. }), "refused before authentication: {err}");
    assert_eq!(auth_lines(&old.log), 0, "no credential reached sshd: {}", std::fs::read_to_string(&old.log)?);
    // Opting in reaches it (and authenticates).
    let out = SshTransport::new(target(&old, true))?.exec(id()).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), old.user);

    // The same kind of key signed with SHA-2 is fine by default.
    let new = start("rsa-sha2-512,rsa-sha2-256")?;
    let out = SshTransport::new(target(&new, false))?.exec(id()).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), new.user);
    Ok(())
}
