//! Key types and passphrases, host-key changes after a server reinstall, sshd restarts,
//! connection faults (reset, stall) and `sudo -n`, against real sshd.

use std::time::{Duration, Instant};

use rpcc_core::transport::{Argv, ExecRequest, Transport, TransportError};

use rpcc_ssh::{HostKeyPolicy, RetryPolicy, SshAuth, SshTarget, SshTransport};
use rpcc_testkit::{FaultMode, FaultProxy, Fleet, TestServer};
use secrecy::SecretString;

mod common;
use common::key_target;

fn target(server: &TestServer, port: u16, key: &std::path::Path, passphrase: Option<&str>) -> SshTarget {
    let mut t = key_target(server.name(), &format!("127.0.0.1:{port}"), server.user(), key, server.host_key_pin());
    t.auth = SshAuth::KeyFile { path: key.to_path_buf(), passphrase: passphrase.map(SecretString::from) };
    t.timeouts.connect = Duration::from_secs(1);
    t.retry =
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(400) };
    t
}

fn cmd(program: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(Argv::new(program, args.iter().copied()).expect("argv")).timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_and_an_encrypted_key_authenticate() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    for (kind, passphrase) in [("ecdsa", None), ("rsa", None), ("ed25519", Some("correct horse battery"))] {
        let key = fleet.add_client_key(kind, passphrase)?;
        let t = SshTransport::new(target(s, s.ssh_port(), &key, passphrase))?;
        let out = t.exec(cmd("id", &["-un"])).await?;
        assert_eq!(String::from_utf8(out.stdout)?.trim(), s.user(), "{kind}");
    }
    // A wrong passphrase fails before connecting, naming the key file but never the secret.
    let key = fleet.add_client_key("ed25519", Some("the right one"))?;
    let err = SshTransport::new(target(s, s.ssh_port(), &key, Some("canary-wrong-passphrase"))).unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("key file") && !text.contains("canary-wrong-passphrase"), "{text}");
    Ok(())
}

/// Run `exec` once more if the first try met the connection that was just cut.
async fn exec_after_cut(t: &SshTransport) -> Result<rpcc_core::transport::Output, TransportError> {
    match t.exec(cmd("true", &[])).await {
        Err(e) if e.is_retryable() => t.exec(cmd("true", &[])).await,
        other => other,
    }
}

fn cut(proxy: &FaultProxy) {
    proxy.set_mode(FaultMode::CutAfter(0));
    std::thread::sleep(Duration::from_millis(200));
    proxy.set_mode(FaultMode::Forward);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_and_a_reinstalled_one_refused() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(1)?;
    let key = fleet.client_key().to_path_buf();
    let proxy = FaultProxy::start(([127, 0, 0, 1], fleet.servers()[0].ssh_port()).into())?;
    let t = SshTransport::new(target(&fleet.servers()[0], proxy.port(), &key, None))?;
    assert!(t.exec(cmd("true", &[])).await?.success());

    // sshd restarted (same key) and the connection lost: the pool reconnects.
    fleet.servers_mut()[0].restart_sshd(false)?;
    cut(&proxy);
    assert!(exec_after_cut(&t).await?.success());
    assert_eq!(t.connections_opened(), 2);

    // Reinstalled with a new host key: refused before authentication, and not retried.
    fleet.servers_mut()[0].restart_sshd(true)?;
    cut(&proxy);
    let accepted = proxy.accepted();
    let err = exec_after_cut(&t).await.unwrap_err();
    assert!(matches!(err, TransportError::HostKey { .. }), "{err}");
    assert!(err.to_string().contains("host key changed"), "{err}");
    assert_eq!(proxy.accepted() - accepted, 1, "a host-key refusal must not be retried");
    assert_eq!(t.connections_opened(), 2, "no authenticated connection to the reinstalled server");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_during_connect_are_retried() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let proxy = std::sync::Arc::new(FaultProxy::start(([127, 0, 0, 1], s.ssh_port()).into())?);
    proxy.set_mode(FaultMode::Reset);
    let healer = {
        let proxy = std::sync::Arc::clone(&proxy);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            proxy.set_mode(FaultMode::Forward);
        })
    };
    let t = SshTransport::new(target(s, proxy.port(), fleet.client_key(), None))?;
    let out = t.exec(cmd("true", &[])).await?;
    healer.join().expect("healer");
    assert!(out.success());
    assert!(proxy.accepted() >= 2, "the first attempt was reset and retried ({} connections)", proxy.accepted());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_network_times_out_within_its_bound() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], s.ssh_port()).into())?;
    proxy.set_mode(FaultMode::Stall);
    let t = SshTransport::new(target(s, proxy.port(), fleet.client_key(), None))?;
    let started = Instant::now();
    let err = t.exec(cmd("true", &[])).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    // 3 attempts × 1 s connect timeout + backoff (at most 0.15 s + 0.3 s).
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(proxy.accepted(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_runs_non_interactively() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let mut tgt = target(s, s.ssh_port(), fleet.client_key(), None);
    tgt.sudo = true;
    let t = SshTransport::new(tgt)?;
    // scripts/setup-host lets the test user run exactly /usr/bin/id as root.
    let out = t.exec(cmd("/usr/bin/id", &["-un"])).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "root", "{}", String::from_utf8_lossy(&out.stderr));
    // Anything else needs a password: sudo -n fails at once instead of prompting.
    let started = Instant::now();
    let denied = t.exec(cmd("/usr/bin/whoami", &[])).await?;
    assert!(!denied.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

/// A private ssh-agent on its own socket, stopped on drop.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, socket, _dir: dir })
    }

    fn add(&self, key: &std::path::Path) -> anyhow::Result<()> {
        let out = std::process::Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &self.socket).output()?;
        anyhow::ensure!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_keys_authenticate_and_an_empty_agent_is_an_auth_error() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let agent = Agent::start()?;
    let mut tgt = target(s, s.ssh_port(), fleet.client_key(), None);
    tgt.auth = SshAuth::Agent { socket: Some(agent.socket.clone()) };

    let empty = SshTransport::new(tgt.clone())?.exec(cmd("true", &[])).await.unwrap_err();
    assert!(matches!(empty, TransportError::Auth { .. }) && empty.to_string().contains("ssh-agent"), "{empty}");

    // An unrelated key first, then the authorized one: the agent's keys are tried in turn.
    let other = tempfile::tempdir()?;
    let unrelated = other.path().join("unrelated");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&unrelated)
            .status()?
            .success()
    );
    agent.add(&unrelated)?;
    agent.add(fleet.client_key())?;
    let out = SshTransport::new(tgt)?.exec(cmd("id", &["-un"])).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), s.user());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication_and_a_wrong_password() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let user = rpcc_testkit::TestUser::resolve()?;
    let password = user.password().ok_or_else(|| anyhow::anyhow!("no test password: run scripts/setup-host"))?;
    let mut tgt = target(s, s.ssh_port(), fleet.client_key(), None);
    tgt.auth = SshAuth::Password(SecretString::from(password.clone()));
    let out = SshTransport::new(tgt.clone())?.exec(cmd("id", &["-un"])).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), s.user());

    tgt.auth = SshAuth::Password(SecretString::from("canary-wrong-password-7731"));
    let err = SshTransport::new(tgt)?.exec(cmd("true", &[])).await.unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("password") && text.contains(s.user()), "{text}");
    assert!(!text.contains("canary-wrong-password-7731") && !text.contains(&password), "a password leaked: {text}");
    assert!(!err.is_retryable(), "authentication failures are never retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_policy_accepts_listed_keys_and_refuses_the_rest() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let (a, b) = (&fleet.servers()[0], &fleet.servers()[1]);
    let dir = tempfile::tempdir()?;
    let with = |name: &str, content: &str| -> anyhow::Result<SshTarget> {
        let path = dir.path().join(name);
        std::fs::write(&path, content)?;
        let mut t = target(a, a.ssh_port(), fleet.client_key(), None);
        t.host_key = HostKeyPolicy::KnownHosts(path);
        Ok(t)
    };
    let entry = |key: &str| format!("[127.0.0.1]:{} {key}\n", a.ssh_port());

    // Listed: accepted. Also as a hashed entry (ssh-keygen -H).
    let ok = SshTransport::new(with("plain", &entry(a.host_key_public()))?)?;
    assert!(ok.exec(cmd("true", &[])).await?.success());
    let hashed = dir.path().join("hashed");
    std::fs::write(&hashed, entry(a.host_key_public()))?;
    assert!(std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed).output()?.status.success());
    assert!(!std::fs::read_to_string(&hashed)?.contains("127.0.0.1"), "the entry is hashed");
    let mut t = target(a, a.ssh_port(), fleet.client_key(), None);
    t.host_key = HostKeyPolicy::KnownHosts(hashed);
    assert!(SshTransport::new(t)?.exec(cmd("true", &[])).await?.success());

    // Changed (another ed25519 key for this host), unknown (no entry), missing file: refused.
    for (name, content, expect) in [
        ("changed", entry(b.host_key_public()), "host key changed"),
        ("unknown", format!("[127.0.0.1]:1 {}\n", a.host_key_public()), "is not in"),
    ] {
        let err = SshTransport::new(with(name, &content)?)?.exec(cmd("true", &[])).await.unwrap_err();
        assert!(matches!(&err, TransportError::HostKey { reason, .. } if reason.contains(expect)), "{name}: {err}");
    }
    let mut missing = target(a, a.ssh_port(), fleet.client_key(), None);
    missing.host_key = HostKeyPolicy::KnownHosts(dir.path().join("does-not-exist"));
    assert!(matches!(SshTransport::new(missing)?.exec(cmd("true", &[])).await, Err(TransportError::HostKey { .. })));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(a.sshd_log())?;
    let accepted = log.lines().filter(|l| l.contains("Accepted publickey")).count();
    assert_eq!(accepted, 2, "only the two accepted keys authenticated:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_shares_one_transport_per_identity() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], s.ssh_port()).into())?;
    let pool = rpcc_ssh::SshPool::new();
    let first = pool.transport(target(s, proxy.port(), fleet.client_key(), None))?;
    let second = pool.transport(target(s, proxy.port(), fleet.client_key(), None))?;
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let t = if i % 2 == 0 { std::sync::Arc::clone(&first) } else { std::sync::Arc::clone(&second) };
        tasks.push(tokio::spawn(async move { t.exec(cmd("true", &[])).await }));
    }
    for task in tasks {
        assert!(task.await??.success());
    }
    assert_eq!(proxy.accepted(), 1, "one TCP connection for the identity");
    // Another credential is another identity.
    let other_key = fleet.add_client_key("ed25519", None)?;
    let third = pool.transport(target(s, proxy.port(), &other_key, None))?;
    assert!(!std::sync::Arc::ptr_eq(&first, &third));
    assert_eq!(pool.len(), 2);
    Ok(())
}
