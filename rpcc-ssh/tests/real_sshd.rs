//! `SshTransport` against real OpenSSH servers from rpcc-testkit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::transport::{Argv, ExecRequest, ExitStatus, Transport, TransportError};
use rpcc_core::value::RemotePath;
use rpcc_ssh::{SshAuth, SshTarget, SshTransport};
use rpcc_testkit::{FaultMode, FaultProxy, Fleet, TestServer};

mod common;
use common::key_target;

fn target(fleet: &Fleet, server: &TestServer, port: u16, pin: &str) -> SshTarget {
    key_target(server.name(), &format!("127.0.0.1:{port}"), server.user(), fleet.client_key(), pin)
}

fn argv(program: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(Argv::new(program, args.iter().copied()).expect("argv")).timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_quotes_every_argument_exactly() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let t = SshTransport::new(target(&fleet, s, s.ssh_port(), s.host_key_pin()))?;
    let out = t.exec(argv("id", &["-un"])).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), s.user());

    let hostile = [
        "a b",
        "$(touch /tmp/rpcc-pwned)",
        "`id`",
        "'single'",
        "\"double\"",
        ";",
        "&&",
        "|",
        "*",
        "line\nbreak",
        "$HOME",
        "\\",
    ];
    let out = t.exec(argv("printf", &[&["%s\\0"][..], &hostile[..]].concat())).await?;
    let got: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(got, hostile, "the remote did not see exactly the intended argv");
    assert!(!std::path::Path::new("/tmp/rpcc-pwned").exists());

    let fail = t.exec(argv("sh", &["-c", "echo oops >&2; exit 7"])).await?;
    assert_eq!(fail.status, ExitStatus::Code(7));
    assert_eq!(String::from_utf8(fail.stderr)?, "oops\n");
    let input = t.exec(argv("wc", &["-c"]).stdin(vec![b'x'; 100_000])).await?;
    assert_eq!(String::from_utf8(input.stdout)?.trim(), "100000");
    assert_eq!(t.connections_opened(), 1, "every command used the one connection");
    Ok(())
}

fn auth_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("publickey") || l.contains("Accepted") || l.contains("Failed") || l.contains("password"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_or_other_algorithm_keys_are_refused_before_authentication() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let (a, b) = (&fleet.servers()[0], &fleet.servers()[1]);
    let fp = b.host_key_pin().split_once(' ').map(|(_, f)| f.to_owned()).unwrap_or_default();
    for (pin, expect) in [
        (b.host_key_pin().to_owned(), "host key changed"),
        (format!("ecdsa-sha2-nistp256 {fp}"), "ecdsa-sha2-nistp256 is pinned"),
    ] {
        let t = SshTransport::new(target(&fleet, a, a.ssh_port(), &pin))?;
        let err = t.exec(argv("true", &[])).await.unwrap_err();
        match &err {
            TransportError::HostKey { reason, .. } => assert!(reason.contains(expect), "{reason}"),
            other => panic!("expected a host-key refusal, got {other}"),
        }
        assert!(!err.is_retryable());
        assert_eq!(t.connections_opened(), 0, "no authenticated connection may exist");
    }
    // sshd (LogLevel VERBOSE) saw connections but not a single authentication attempt.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(a.sshd_log())?;
    assert!(log.contains("Connection from 127.0.0.1"), "{log}");
    assert!(auth_lines(&log).is_empty(), "an authentication attempt reached sshd:\n{log}");
    // The same log does record authentication when it happens (the check above can fail).
    let good = SshTransport::new(target(&fleet, a, a.ssh_port(), a.host_key_pin()))?;
    assert!(good.exec(argv("true", &[])).await?.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(a.sshd_log())?;
    assert!(auth_lines(&log).iter().any(|l| l.contains("Accepted publickey")), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_observes_the_real_key_without_authenticating() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let observed = SshTransport::observe_host_key(&target(&fleet, s, s.ssh_port(), s.host_key_pin())).await?;
    assert_eq!(observed.pin(), s.host_key_pin());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(auth_lines(&std::fs::read_to_string(s.sshd_log())?).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_an_auth_error_naming_server_and_method() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let other = tempfile::tempdir()?;
    let key = other.path().join("other_key");
    let status =
        std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status()?;
    assert!(status.success());
    let mut t = target(&fleet, s, s.ssh_port(), s.host_key_pin());
    t.auth = SshAuth::KeyFile { path: key, passphrase: None };
    let err = SshTransport::new(t)?.exec(argv("true", &[])).await.unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(s.user()) && err.to_string().contains("public key"), "{err}");
    assert!(!err.is_retryable());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_commands_share_one_tcp_connection() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], s.ssh_port()).into())?;
    let t = Arc::new(SshTransport::new(target(&fleet, s, proxy.port(), s.host_key_pin()))?);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let t = Arc::clone(&t);
        tasks.push(tokio::spawn(async move { t.exec(argv("echo", &[&i.to_string()])).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let out = task.await??;
        assert_eq!(String::from_utf8(out.stdout)?.trim(), i.to_string());
    }
    assert_eq!(proxy.accepted(), 1, "TCP connections seen by the proxy");
    assert_eq!(t.connections_opened(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_command_times_out_and_the_connection_survives() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let t = SshTransport::new(target(&fleet, s, s.ssh_port(), s.host_key_pin()))?;
    let started = Instant::now();
    let err = t.exec(argv("sleep", &["30"]).timeout(Duration::from_millis(500))).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(t.exec(argv("true", &[])).await?.success());
    assert_eq!(t.connections_opened(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_reported_then_replaced() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], s.ssh_port()).into())?;
    let t = SshTransport::new(target(&fleet, s, proxy.port(), s.host_key_pin()))?;
    assert!(t.exec(argv("true", &[])).await?.success());
    // Cut the connection in the middle of a command.
    let running = t.exec(argv("sh", &["-c", "sleep 1; echo late"]).timeout(Duration::from_secs(10)));
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.set_mode(FaultMode::CutAfter(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.set_mode(FaultMode::Forward);
    };
    let (result, ()) = tokio::join!(running, cut);
    let err = result.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // The next command reconnects.
    assert!(t.exec(argv("true", &[])).await?.success());
    assert_eq!(t.connections_opened(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_atomic_and_verified_by_hash() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let t = SshTransport::new(target(&fleet, s, s.ssh_port(), s.host_key_pin()))?;
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let path = RemotePath::parse(&format!("{}/upload.bin", s.managed_root().display()))?;
    t.upload(&path, &bytes, 0o640).await?;
    let out = t.exec(argv("sha256sum", &[path.as_str()])).await?;
    let local = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let local = {
        use std::io::Write;
        let mut local = local;
        local.stdin.take().expect("stdin").write_all(&bytes)?;
        local.wait_with_output()?
    };
    let remote_hash = String::from_utf8(out.stdout)?.split_whitespace().next().unwrap_or_default().to_owned();
    let local_hash = String::from_utf8(local.stdout)?.split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(remote_hash, local_hash);
    let mode = t.exec(argv("stat", &["-c", "%a", path.as_str()])).await?;
    assert_eq!(String::from_utf8(mode.stdout)?.trim(), "640");
    let leftovers = t
        .exec(argv(
            "sh",
            &["-c", "ls -a \"$1\" | grep -c rpcc-tmp || true", "sh", &s.managed_root().display().to_string()],
        ))
        .await?;
    assert_eq!(String::from_utf8(leftovers.stdout)?.trim(), "0");
    // A failed upload (no such directory) is an error and leaves nothing behind.
    let bad = RemotePath::parse(&format!("{}/missing/x.bin", s.managed_root().display()))?;
    assert!(t.upload(&bad, b"x", 0o600).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_2000_files_and_a_50_mb_file_arrive_whole_in_one_stream() -> anyhow::Result<()> {
    use rpcc_core::transport::TreeFile;
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let t = SshTransport::new(target(&fleet, s, s.ssh_port(), s.host_key_pin()))?;
    let contents: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            (
                format!("sites/d{}/site-{i}.conf", i % 17),
                format!("server_name s{i}.example.com;\n").repeat(1 + i % 7).into_bytes(),
            )
        })
        .chain(std::iter::once(("big.bin".to_owned(), (0..50_000_000u32).map(|i| (i % 253) as u8).collect())))
        .collect();
    let files: Vec<TreeFile<'_>> = contents.iter().map(|(p, b)| TreeFile { path: p, bytes: b, mode: 0o644 }).collect();
    let dir = RemotePath::parse(&format!("{}/generations/g1", s.managed_root().display()))?;
    t.upload_tree(&dir, &files).await?;

    // Every file, byte for byte: compare one hash over the sorted per-file hashes.
    let remote = t
        .exec(
            argv("sh", &["-c", "cd \"$1\" && find . -type f | sort | xargs sha256sum | sha256sum", "sh", dir.as_str()])
                .timeout(Duration::from_secs(60)),
        )
        .await?;
    let mut sorted: Vec<&(String, Vec<u8>)> = contents.iter().collect();
    sorted.sort_by(|a, b| format!("./{}", a.0).cmp(&format!("./{}", b.0)));
    let listing: String = sorted
        .iter()
        .map(|(p, b)| {
            use std::io::Write;
            let mut child = std::process::Command::new("sha256sum")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("sha256sum");
            child.stdin.take().expect("stdin").write_all(b).expect("write");
            let out = child.wait_with_output().expect("sha256sum");
            format!("{}  ./{p}\n", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default())
        })
        .collect();
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(listing.as_bytes())?;
    }
    let local = child.wait_with_output()?;
    assert_eq!(
        String::from_utf8(remote.stdout)?.split_whitespace().next(),
        String::from_utf8(local.stdout)?.split_whitespace().next()
    );
    assert_eq!(t.connections_opened(), 1);

    // The target exists now: a second upload is refused and leaves it untouched.
    let again = [TreeFile { path: "other.conf", bytes: b"x", mode: 0o644 }];
    assert!(t.upload_tree(&dir, &again).await.is_err());
    let check = t
        .exec(argv("sh", &["-c", "test ! -e \"$1/other.conf\" && test ! -e \"$1.rpcc-staging\"", "sh", dir.as_str()]))
        .await?;
    assert!(check.success(), "the existing tree was modified or staging was left behind");
    // Paths that try to leave the tree are refused before anything is sent.
    let evil = [TreeFile { path: "../escape.conf", bytes: b"x", mode: 0o644 }];
    let fresh = RemotePath::parse(&format!("{}/generations/g2", s.managed_root().display()))?;
    assert!(matches!(t.upload_tree(&fresh, &evil).await, Err(TransportError::InvalidCommand { .. })));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_expire_but_busy_ones_do_not() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    let mut tgt = target(&fleet, s, s.ssh_port(), s.host_key_pin());
    tgt.timeouts.idle = Duration::from_millis(400);
    let t = SshTransport::new(tgt)?;
    // A command longer than the idle time is not cut.
    let out = t.exec(argv("sh", &["-c", "sleep 1; echo done"])).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "done");
    // Steady use keeps the connection.
    for _ in 0..6 {
        assert!(t.exec(argv("true", &[])).await?.success());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(t.connections_opened(), 1);
    // Idle past the limit: closed; the next command reconnects transparently.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let log = std::fs::read_to_string(s.sshd_log())?;
    assert!(
        log.contains("Disconnected from user") || log.contains("Received disconnect"),
        "sshd saw no disconnect:\n{log}"
    );
    assert!(t.exec(argv("true", &[])).await?.success());
    assert_eq!(t.connections_opened(), 2);
    Ok(())
}
