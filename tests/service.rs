//! `rpcc watch` as a systemd service: the generated unit passes `systemd-analyze verify`
//! and scores ≤ 2.0 in `systemd-analyze security`; the running watch speaks the
//! sd_notify protocol (READY, WATCHDOG, STOPPING) to a real datagram socket, serves
//! `/metrics` and `/healthz`, and logs JSON lines.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpcc_testkit::Fleet;

fn rpcc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpcc"));
    c.env_remove("RPCC_STATE").env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env("RUST_LOG", "info");
    c
}

use common::output_text as text;

/// `systemd-analyze security`'s overall exposure for a unit file.
fn exposure(unit: &std::path::Path) -> anyhow::Result<f64> {
    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(unit).output()?;
    let all = text(&out);
    let line = all.lines().find(|l| l.contains("Overall exposure level")).ok_or_else(|| anyhow::anyhow!("{all}"))?;
    let value = line.rsplit(':').next().and_then(|v| v.split_whitespace().next()).unwrap_or("");
    Ok(value.parse()?)
}

#[test]
fn the_unit_verifies_and_its_exposure_is_at_most_2() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = env!("CARGO_BIN_EXE_rpcc");
    for (name, extra) in [("rpcc-watch", vec![]), ("rpcc-watch-jit", vec!["--allow-jit"])] {
        let out = rpcc()
            .args(["service", "install", "/etc/rpcc/inventory.toml", "--bin", bin, "--name", name])
            .args(["--state", "postgres://rpcc@db.internal/rpcc", "--dir"])
            .arg(dir.path())
            .args(extra)
            .output()?;
        assert!(out.status.success(), "{}", text(&out));
        let unit = dir.path().join(format!("{name}.service"));
        let body = std::fs::read_to_string(&unit)?;
        for line in [
            "Type=notify",
            "WatchdogSec=",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "StateDirectory=",
            "--log-format json --listen 127.0.0.1:9810",
        ] {
            assert!(body.contains(line), "{line:?} missing:\n{body}");
        }
        let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output()?;
        assert!(verify.status.success(), "{}", text(&verify));
        let score = exposure(&unit)?;
        eprintln!("{name}: exposure {score}");
        assert!(score <= 2.0, "{name}: exposure {score}");
    }
    // Refused: a password in the unit, a relative inventory, a name that is a path.
    let refused = |args: &[&str], why: &str| -> anyhow::Result<()> {
        let out = rpcc().args(["service", "unit"]).args(args).output()?;
        assert!(!out.status.success() && text(&out).contains(why), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("hunter2"), "{}", text(&out));
        Ok(())
    };
    refused(&["/etc/rpcc/inv.toml", "--state", "postgres://rpcc:hunter2@db/rpcc"], "holds a password")?;
    refused(
        &["/etc/rpcc/inv.toml", "--state", "postgres://rpcc@db/rpcc?sslmode=require&password=hunter2"],
        "holds a password",
    )?;
    refused(&["inv.toml"], "must be an absolute path")?;
    refused(&["/etc/rpcc/inv.toml", "--name", "../evil"], "--name")?;
    refused(&["/etc/rpcc/inv.toml", "--bin", "/usr/bin/rpcc --evil"], "without spaces")?;
    Ok(())
}

fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok((status, out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()))
}

#[test]
fn the_watch_notifies_systemd_serves_metrics_and_logs_json() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let glances = rpcc_testkit::GlancesServer::start()?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    let body = fleet
        .deploy_inventory_toml()
        .replace("\nnginx = {", &format!("\nglances = {{ port = {} }}\nnginx = {{", glances.port()))
        + &common::site("a.test.example", "svc")
        + "\n[monitor]\ninterval = \"1s\"\ntimeout = \"2s\"\n";
    std::fs::write(&inv, body)?;
    let socket_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path)?;
    notify.set_read_timeout(Some(Duration::from_secs(10)))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = rpcc()
        .args(["watch", inv.to_str().unwrap_or_default(), "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RPCC_STATE", dir.path().join("state.db"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "90000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut child = common::KillOnDrop(child);
    let mut stderr_pipe = child.0.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr_pipe.read_to_string(&mut all);
        all
    });
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !(seen.iter().any(|s| s == "READY=1") && seen.iter().filter(|s| *s == "WATCHDOG=1").count() >= 3)
    {
        let n = notify.recv(&mut buf)?;
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen.iter().any(|s| s == "READY=1"), "{seen:?}");
    assert!(seen.iter().filter(|s| *s == "WATCHDOG=1").count() >= 3, "{seen:?}");

    // A round has finished: healthy, and the metrics say so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        metrics = http_get(port, "/metrics")?.1;
        if metrics.lines().any(|l| l.starts_with("rpcc_watch_rounds_total ") && !l.ends_with(" 0")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metrics.lines().any(|l| l.starts_with("rpcc_watch_rounds_total ") && !l.ends_with(" 0")), "{metrics}");
    for name in ["rpcc_watch_members 1", "# TYPE rpcc_alerts_total counter", "# TYPE rpcc_deployments_total counter"] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert_eq!(http_get(port, "/healthz")?.0, 200);
    assert_eq!(http_get(port, "/nope")?.0, 404);

    // SIGTERM: STOPPING=1, a clean exit, and every log line is one JSON object.
    Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status()?;
    let mut stopping = false;
    while let Ok(n) = notify.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    let status = child.0.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    assert!(stopping && status.success(), "{status:?}\n{stderr}");
    let json_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!json_lines.is_empty(), "{stderr}");
    for line in json_lines {
        let v: serde_json::Value = serde_json::from_str(line)?;
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    Ok(())
}
