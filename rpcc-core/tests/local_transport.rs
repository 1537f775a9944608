//! `LocalTransport` runs real processes: output, exit codes, stdin, output caps,
//! timeouts that kill the command, and atomic uploads.

use std::time::{Duration, Instant};

use rpcc_core::local::LocalTransport;
use rpcc_core::transport::{Argv, ExecRequest, ExitStatus, Transport, TransportError};
use rpcc_core::value::RemotePath;

fn req(program: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(Argv::new(program, args.iter().copied()).expect("argv"))
}

#[tokio::test]
async fn runs_argv_without_a_shell() -> anyhow::Result<()> {
    let t = LocalTransport::new();
    // Shell metacharacters arrive as literal arguments.
    let out = t.exec(req("printf", &["%s|", "a b", "$(id)", "`x`", "'q'", ";"])).await?;
    assert!(out.success());
    assert_eq!(String::from_utf8(out.stdout)?, "a b|$(id)|`x`|'q'|;|");
    let fail = t.exec(req("sh", &["-c", "echo oops >&2; exit 3"])).await?;
    assert_eq!(fail.status, ExitStatus::Code(3));
    assert_eq!(String::from_utf8(fail.stderr)?, "oops\n");
    Ok(())
}

#[tokio::test]
async fn feeds_stdin_and_caps_output() -> anyhow::Result<()> {
    let t = LocalTransport::new();
    let out = t.exec(req("cat", &[]).stdin(b"hello".to_vec())).await?;
    assert_eq!(out.stdout, b"hello");
    let mut big = req("head", &["-c", "100000", "/dev/zero"]);
    big.output_limit = 1000;
    let out = t.exec(big).await?;
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
    Ok(())
}

#[tokio::test]
async fn timeout_kills_the_command() -> anyhow::Result<()> {
    let t = LocalTransport::new();
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("survived");
    let script = format!("sleep 2; touch {}", marker.display());
    let started = Instant::now();
    let err = t.exec(req("sh", &["-c", &script]).timeout(Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!marker.exists(), "the timed-out command kept running");
    Ok(())
}

#[tokio::test]
async fn upload_replaces_atomically_with_mode() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let t = LocalTransport::new();
    let dir = tempfile::tempdir()?;
    let path = RemotePath::parse(&format!("{}/site.conf", dir.path().display()))?;
    t.upload(&path, b"first", 0o640).await?;
    t.upload(&path, b"second", 0o600).await?;
    assert_eq!(std::fs::read(path.as_str())?, b"second");
    assert_eq!(std::fs::metadata(path.as_str())?.permissions().mode() & 0o777, 0o600);
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    let missing = RemotePath::parse(&format!("{}/no-such-dir/x", dir.path().display()))?;
    assert!(matches!(t.upload(&missing, b"x", 0o600).await, Err(TransportError::Io { .. })));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_to_one_path_never_mix() -> anyhow::Result<()> {
    let t = std::sync::Arc::new(LocalTransport::new());
    let dir = tempfile::tempdir()?;
    let path = RemotePath::parse(&format!("{}/race.conf", dir.path().display()))?;
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let (t, path) = (t.clone(), path.clone());
        tasks.push(tokio::spawn(async move { t.upload(&path, &vec![i; 64 * 1024], 0o644).await }));
    }
    for task in tasks {
        task.await??;
    }
    // Whoever won, the file is one writer's complete contents.
    let bytes = std::fs::read(path.as_str())?;
    assert_eq!(bytes.len(), 64 * 1024);
    assert!(bytes.iter().all(|b| *b == bytes[0]));
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "temp files left behind");
    Ok(())
}

#[test]
fn argv_refuses_nul_and_newline_programs() {
    assert!(Argv::new("", Vec::<String>::new()).is_err());
    assert!(Argv::new("nginx\n-s", Vec::<String>::new()).is_err());
    assert!(Argv::new("nginx", ["a\0b"]).is_err());
    let ok = Argv::new("nginx", ["-t", "line\nbreak"]).expect("arguments may hold newlines; transports quote them");
    assert_eq!(ok.args().len(), 2);
}

#[tokio::test]
async fn default_tree_upload_is_all_or_nothing() -> anyhow::Result<()> {
    use rpcc_core::transport::TreeFile;
    let t = LocalTransport::new();
    let root = tempfile::tempdir()?;
    let dir = RemotePath::parse(&format!("{}/gen-1", root.path().display()))?;
    let files = [
        TreeFile { path: "nginx.conf", bytes: b"events {}\n", mode: 0o644 },
        TreeFile { path: "sites/a.conf", bytes: b"# a\n", mode: 0o600 },
    ];
    t.upload_tree(&dir, &files).await?;
    assert_eq!(std::fs::read(root.path().join("gen-1/sites/a.conf"))?, b"# a\n");
    assert!(!root.path().join("gen-1.rpcc-staging").exists());
    // Existing target: refused, untouched.
    let more = [TreeFile { path: "extra.conf", bytes: b"x", mode: 0o644 }];
    assert!(t.upload_tree(&dir, &more).await.is_err());
    assert!(!root.path().join("gen-1/extra.conf").exists());
    // A path that leaves the tree is refused.
    let evil = [TreeFile { path: "../escape", bytes: b"x", mode: 0o644 }];
    let dir2 = RemotePath::parse(&format!("{}/gen-2", root.path().display()))?;
    assert!(t.upload_tree(&dir2, &evil).await.is_err());
    assert!(!root.path().join("escape").exists());
    Ok(())
}

/// Runs in a child copy of this test binary that has `RPCC_KEYS` in its environment
/// (the test below starts it): the commands it runs must not see the keys.
#[tokio::test]
async fn child_processes_do_not_inherit_rpcc_keys() -> anyhow::Result<()> {
    if std::env::var_os("RPCC_LOCAL_TRANSPORT_CHILD").is_none() {
        let exe = std::env::current_exe()?;
        let out = std::process::Command::new(exe)
            .args(["--exact", "child_processes_do_not_inherit_rpcc_keys", "--nocapture", "--test-threads", "1"])
            .env("RPCC_LOCAL_TRANSPORT_CHILD", "1")
            .env("RPCC_KEYS", "k1:canary-key-material-not-real")
            .output()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran the test: {text}");
        return Ok(());
    }
    assert!(std::env::var_os("RPCC_KEYS").is_some(), "the parent set RPCC_KEYS");
    let out = LocalTransport::new().exec(req("env", &[])).await?;
    let env = String::from_utf8(out.stdout)?;
    assert!(env.contains("RPCC_LOCAL_TRANSPORT_CHILD=1"), "other variables pass: {env}");
    assert!(!env.contains("RPCC_KEYS") && !env.contains("canary-key-material"), "{env}");
    Ok(())
}
