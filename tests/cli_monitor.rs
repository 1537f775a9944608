//! `rpcc check` against a real fleet and a real Glances; `rpcc watch` firing an alert to a
//! signed webhook (secret from the keyring), recording it, and stopping on SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcc::core::deploy::StateStore as _;
use rpcc::core::keyring::{Keyring, RecordId};
use rpcc::monitor::verify_webhook_signature;
use rpcc_testkit::Fleet;
use secrecy::SecretString;

mod common;

fn rpcc(args: &[&str]) -> Command {
    common::rpcc_cli(args)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn site() -> &'static str {
    "\n[[sites]]\ndomain = \"app.watch.example\"\ngroup = \"all\"\nupstream = { backends = [\"127.0.0.1:9\"] }\n\
     tls = { mode = \"off\" }\nhealth_path = \"/healthz\"\n"
}

#[test]
fn check_reports_metrics_and_sites_and_fails_on_an_unreachable_glances() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let glances = rpcc_testkit::GlancesServer::start()?;
    std::thread::sleep(Duration::from_millis(1500)); // its first samples
    let port = glances.port();
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inv.toml");
    let with_glances = |p: u16| {
        fleet.deploy_inventory_toml().replacen("\nnginx = {", &format!("\nglances = {{ port = {p} }}\nnginx = {{"), 1)
            + site()
    };
    // The site's name resolves to its server (127.0.0.1) on a real resolver.
    let dns = rpcc_testkit::Resolver::start(&[("app.watch.example", Some([127, 0, 0, 1].into()))])?;
    let dns_line = format!("\n[monitor]\ndns = \"{}\"\n", dns.addr());
    std::fs::write(&inv, with_glances(port) + &dns_line)?;
    let state = dir.path().join("state.db");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let out = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = rpcc(&["check", &s(&inv), "--json"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(v["servers"][0]["state"], "ok", "{v}");
    assert!(v["servers"][0]["metrics"]["cpu_percent"].as_f64().is_some());
    assert_eq!(v["sites"][0]["http"]["Ok"]["status"], 200, "{v}");
    assert_eq!(v["dns"][0]["site"], "app.watch.example", "{v}");
    assert!(v["dns"][0]["problem"].is_null(), "{v}");

    let table = rpcc(&["check", &s(&inv)]).output()?;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("app.watch.example") && table.contains(" ok"), "{table}");

    std::fs::write(&inv, with_glances(free_port()))?;
    let out = rpcc(&["check", &s(&inv)]).output()?;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("glances unreachable"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

#[test]
fn watch_fires_one_signed_webhook_records_it_and_stops_on_sigterm() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    let secret = "hook-secret-canary";
    let (keys, sealed) = sealed_hook_secret(dir.path(), secret)?;

    let (hook_port, received) = webhook_receiver()?;

    // Glances configured on a port where nothing listens: after 3 rounds, one alert.
    let inv = dir.path().join("inv.toml");
    let mut toml = fleet.deploy_inventory_toml().replacen(
        "\nnginx = {",
        &format!("\nglances = {{ port = {} }}\nnginx = {{", free_port()),
        1,
    );
    toml.push_str(site());
    toml.push_str(&format!(
        "\n[monitor]\ninterval = \"1s\"\ntimeout = \"1s\"\nnotifiers = [{{ name = \"pager\", kind = \"webhook\", insecure_http = true, url = \"http://127.0.0.1:{hook_port}/hook\", secret = \"{sealed}\" }}]\n"
    ));
    std::fs::write(&inv, toml)?;
    let state = dir.path().join("state.db");
    let child = rpcc(&[
        "watch",
        inv.to_str().unwrap_or_default(),
        "--state",
        state.to_str().unwrap_or_default(),
        "--key-file",
        keys.to_str().unwrap_or_default(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut watch = common::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500)); // more rounds: still one message
    let pid = watch.0.id();
    let stopped_at = Instant::now();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let status = watch.0.wait()?;
    assert!(stopped_at.elapsed() < Duration::from_secs(5), "took {:?} to stop", stopped_at.elapsed());
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    if let Some(mut e) = watch.0.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    assert!(!stderr.contains(secret));

    let got = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(got.len(), 1, "one message per incident: {got:?}");
    let (sig, body) = &got[0];
    assert_eq!(verify_webhook_signature(&SecretString::from(secret), sig, body.as_bytes(), now()), Ok(()));
    assert!(body.contains("glances unreachable") && body.contains("s0"), "{body}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let log = rt.block_on(async { rpcc::store::SqliteStore::open(&state).await?.audit_log().await })?;
    assert!(log.iter().any(|r| r.event.action.as_str() == "alert" && r.event.outcome == "fired"), "{log:?}");
    Ok(())
}

/// The receiver's clock, Unix seconds.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A webhook receiver on loopback: records each request's signature header and body.
type Received = Arc<Mutex<Vec<(String, String)>>>;

fn webhook_receiver() -> anyhow::Result<(u16, Received)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let hook_port = listener.local_addr()?.port();
    let received: Received = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut sig = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-rpcc-signature: ") {
                    sig = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((sig, String::from_utf8_lossy(&body).into_owned()));
            let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    Ok((hook_port, received))
}

/// A key file in `dir` and the webhook secret sealed under it.
fn sealed_hook_secret(dir: &Path, secret: &str) -> anyhow::Result<(std::path::PathBuf, String)> {
    let keys = dir.join("keys");
    assert!(
        rpcc(&["keys", "generate", "--key-file", keys.to_str().unwrap_or_default(), "--id", "k1"])
            .output()?
            .status
            .success()
    );
    let ring = Keyring::from_file(&keys)?;
    let sealed = ring.seal(&RecordId::parse("notifier/pager/secret")?, &SecretString::from(secret))?;
    Ok((keys, sealed.to_string()))
}

fn received_now(r: &Received) -> Vec<(String, String)> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

#[test]
fn watch_applies_group_rules_and_keeps_metric_samples() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let glances = rpcc_testkit::GlancesServer::start()?;
    let dir = tempfile::tempdir()?;
    let secret = "group-rules-hook-secret";
    let (keys, sealed) = sealed_hook_secret(dir.path(), secret)?;
    let (hook_port, received) = webhook_receiver()?;
    // The inventory-wide disk threshold (100 %) can never fire; the group "all" lowers it
    // to 1 %, which any real file system exceeds: the alert can only come from the
    // group's rules.
    let inv = dir.path().join("inv.toml");
    let mut toml = fleet.deploy_inventory_toml().replacen(
        "\nnginx = {",
        &format!("\nglances = {{ port = {} }}\nnginx = {{", glances.port()),
        1,
    );
    toml.push_str(site());
    toml.push_str(&format!(
        "\n[monitor]\ninterval = \"1s\"\ntimeout = \"3s\"\nretention = \"1h\"\nrules = {{ disk_above = 100 }}\n\
         notifiers = [{{ name = \"pager\", kind = \"webhook\", insecure_http = true, url = \"http://127.0.0.1:{hook_port}/hook\", secret = \"{sealed}\" }}]\n\
         [[monitor.group_rules]]\ngroup = \"all\"\ndisk_above = 1\n"
    ));
    std::fs::write(&inv, toml)?;
    let state = dir.path().join("state.db");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let child = rpcc(&["watch", &s(&inv), "--state", &s(&state), "--key-file", &s(&keys)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut watch = common::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while received_now(&received).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // another round or two of samples
    Command::new("kill").args(["-TERM", &watch.0.id().to_string()]).status()?;
    assert!(watch.0.wait()?.success());

    let got = received_now(&received);
    assert!(!got.is_empty(), "no alert from the group's disk rule");
    assert!(
        got.iter().all(|(sig, body)| verify_webhook_signature(
            &SecretString::from(secret),
            sig,
            body.as_bytes(),
            now()
        )
        .is_ok())
    );
    assert!(got.iter().any(|(_, body)| body.contains("s0") && body.to_lowercase().contains("disk")), "{got:?}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let samples = rt.block_on(async { rpcc::store::SqliteStore::open(&state).await?.samples("s0", 0).await })?;
    assert!(samples.len() >= 2, "{samples:?}");
    assert!(samples.iter().all(|x| (0.0..=100.0).contains(&x.cpu) && x.disk_max >= 1.0), "{samples:?}");
    Ok(())
}

#[test]
fn apply_sends_its_outcome_to_the_notifiers_when_asked() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    let secret = "deploy-hook-secret";
    let (keys, sealed) = sealed_hook_secret(dir.path(), secret)?;
    let (hook_port, received) = webhook_receiver()?;
    let inv = dir.path().join("inv.toml");
    let monitor = format!(
        "\n[monitor]\nnotify_deploys = true\n\
         notifiers = [{{ name = \"pager\", kind = \"webhook\", insecure_http = true, url = \"http://127.0.0.1:{hook_port}/hook\", secret = \"{sealed}\" }}]\n"
    );
    std::fs::write(&inv, fleet.deploy_inventory_toml() + site() + &monitor)?;
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let state = dir.path().join("state.db");
    let out = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes", "--key-file", &s(&keys)]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = received_now(&received);
    assert_eq!(got.len(), 1, "{got:?}");
    let (sig, body) = &got[0];
    assert_eq!(verify_webhook_signature(&SecretString::from(secret), sig, body.as_bytes(), now()), Ok(()));
    assert!(body.contains("rpcc apply by") && body.contains("1 succeeded, 0 failed"), "{body}");
    assert!(!body.contains(secret));

    // Without notify_deploys nothing is sent.
    std::fs::write(&inv, fleet.deploy_inventory_toml() + site() + &monitor.replace("notify_deploys = true", ""))?;
    let out = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes", "--key-file", &s(&keys)]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(received_now(&received).len(), 1);
    Ok(())
}

#[test]
fn watch_alerts_once_when_a_check_plugin_fails() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    let plugin = rpcc_testkit::wasm_plugins()?.join("expected_status.wasm");
    let secret = "plugin-alert-hook-secret";
    let (keys, sealed) = sealed_hook_secret(dir.path(), secret)?;
    let (hook_port, received) = webhook_receiver()?;
    let inv = dir.path().join("inv.toml");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    // The site answers 200 on its health path; the plugin expects 418.
    let toml = fleet.deploy_inventory_toml()
        + &site().replace("health_path = \"/healthz\"\n", "health_path = \"/healthz\"\nplugins = [\"teapot\"]\n")
        + &format!(
            "\n[[plugins]]\nname = \"teapot\"\npath = \"{}\"\ngrant = [\"http-get\", \"clock\"]\nconfig = {{ status = \"418\" }}\n\
             \n[monitor]\ninterval = \"1s\"\ntimeout = \"2s\"\nrules = {{ site_down_checks = 2 }}\n\
             notifiers = [{{ name = \"pager\", kind = \"webhook\", insecure_http = true, url = \"http://127.0.0.1:{hook_port}/hook\", secret = \"{sealed}\" }}]\n",
            s(&plugin)
        );
    std::fs::write(&inv, toml)?;
    let state = dir.path().join("state.db");
    let out = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes", "--key-file", &s(&keys)]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let child = rpcc(&["watch", &s(&inv), "--state", &s(&state), "--key-file", &s(&keys)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut watch = common::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received_now(&received).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500)); // more failing rounds: still one message
    Command::new("kill").args(["-TERM", &watch.0.id().to_string()]).status()?;
    assert!(watch.0.wait()?.success());
    let got = received_now(&received);
    assert_eq!(got.len(), 1, "one message per incident: {got:?}");
    let body = &got[0].1;
    assert!(body.contains("check teapot") && body.contains("status 200, expected 418"), "{body}");
    Ok(())
}
