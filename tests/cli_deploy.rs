//! `rpcc plan / apply / status / rollback / drift / history / audit verify` as an
//! operator runs them, against a real loopback fleet and a real SQLite state file;
//! two concurrent `rpcc apply` processes; a process killed mid-deploy.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{current_generation, get, site};
use rpcc_testkit::Fleet;

fn rpcc(args: &[&str], state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpcc"));
    c.args(args).env("RPCC_STATE", state).env_remove("RPCC_FAULT_INJECT").env("RUST_LOG", "warn");
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Setup {
    fleet: Fleet,
    _dir: tempfile::TempDir,
    inv: PathBuf,
    state: PathBuf,
}

fn setup(servers: usize, tag: &str) -> anyhow::Result<Setup> {
    let fleet = Fleet::start(servers)?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    std::fs::write(
        &inv,
        format!("{}\n{}{}", fleet.deploy_inventory_toml(), site("a.test.example", tag), site("b.test.example", tag)),
    )?;
    let state = dir.path().join("state.db");
    Ok(Setup { fleet, _dir: dir, inv, state })
}

impl Setup {
    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut full: Vec<&str> = args.to_vec();
        let inv = self.inv.to_str().unwrap_or_default().to_owned();
        if let Some(pos) = full.iter().position(|a| *a == "INV") {
            full[pos] = &inv;
            Ok(rpcc(&full, &self.state).output()?)
        } else {
            Ok(rpcc(&full, &self.state).output()?)
        }
    }

    fn retag(&self, tag: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.inv)?;
        let old = text.split("X-Deploy = \"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
        std::fs::write(&self.inv, text.replace(&format!("X-Deploy = \"{old}\""), &format!("X-Deploy = \"{tag}\"")))?;
        Ok(())
    }
}

#[test]
fn plan_apply_status_failed_deploy_rollback_drift_history_audit() -> anyhow::Result<()> {
    let s = setup(2, "v1")?;
    let ts = &s.fleet.servers()[0];

    let plan = s.run(&["plan", "INV"])?;
    assert!(plan.status.success(), "{}", text(&plan));
    let out = text(&plan);
    assert!(out.contains("s0: - →") && out.contains("takes over"), "{out}");
    assert!(out.contains("+ sites/a.test.example.conf"), "{out}");

    // Without --yes and without a terminal, apply refuses.
    let refused = s.run(&["apply", "INV"])?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("--yes"));
    assert_eq!(current_generation(&ts.managed_root()), None);

    let apply = s.run(&["apply", "INV", "--yes"])?;
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(text(&apply).matches("succeeded").count(), 2, "{}", text(&apply));
    let g1 = current_generation(&ts.managed_root()).expect("deployed");
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("v1".into()))));

    let again = s.run(&["apply", "INV", "--yes", "--json"])?;
    assert!(again.status.success());
    let json: serde_json::Value = serde_json::from_slice(&again.stdout)?;
    assert_eq!(json["servers"][0]["state"], "no_op");
    assert_eq!(json["servers"][0]["round_trips"], 1);

    let status = s.run(&["status", "INV"])?;
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains(&g1[..16]), "{}", text(&status));

    // v2 ships fine; then a config nginx refuses: exit 3, nginx's message, server stays.
    s.retag("v2")?;
    let apply2 = s.run(&["apply", "INV", "--yes", "--server", "s0"])?;
    assert!(apply2.status.success(), "{}", text(&apply2));
    let g2 = current_generation(&ts.managed_root()).expect("deployed");
    assert_ne!(g1, g2);
    let good_text = std::fs::read_to_string(&s.inv)?;
    std::fs::write(
        &s.inv,
        good_text.replacen(
            "tls = { mode = \"off\" }",
            "tls = { mode = \"custom\", cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\", redirect_http = false }",
            1,
        ),
    )?;
    let bad = s.run(&["apply", "INV", "--yes", "--server", "s0"])?;
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    assert!(text(&bad).contains("rejected") && text(&bad).contains("/nonexistent/c.pem"), "{}", text(&bad));
    assert_eq!(current_generation(&ts.managed_root()).as_deref(), Some(g2.as_str()));
    std::fs::write(&s.inv, &good_text)?;

    // Invalid input never reaches a server.
    std::fs::write(&s.inv, good_text.replace("127.0.0.1:9", "127.0.0.1:99999"))?;
    let invalid = s.run(&["apply", "INV", "--yes"])?;
    assert_eq!(invalid.status.code(), Some(1));
    assert!(text(&invalid).contains("backends[0]"), "{}", text(&invalid));
    std::fs::write(&s.inv, &good_text)?;

    // Rollback (default: the generation before the last success).
    let rb = s.run(&["rollback", "INV", "s0", "--yes"])?;
    assert!(rb.status.success(), "{}", text(&rb));
    assert_eq!(current_generation(&ts.managed_root()).as_deref(), Some(g1.as_str()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("v1".into()))));
    let bad_to = s.run(&["rollback", "INV", "s0", "--to", "../../etc", "--yes"])?;
    assert_eq!(bad_to.status.code(), Some(1));

    // Drift after a hand edit: exit 3, file named; clean servers stay clean.
    let clean = s.run(&["drift", "INV"])?;
    assert!(clean.status.success(), "{}", text(&clean));
    let f = ts.managed_root().join(format!("generations/{g1}/http.conf"));
    let edited = format!("{}# hand edit\n", std::fs::read_to_string(&f)?);
    std::fs::write(f.with_extension("tmp"), edited)?;
    std::fs::rename(f.with_extension("tmp"), &f)?;
    let drift = s.run(&["drift", "INV"])?;
    assert_eq!(drift.status.code(), Some(3), "{}", text(&drift));
    assert!(text(&drift).contains("s0: DRIFT") && text(&drift).contains("~ http.conf"), "{}", text(&drift));
    assert!(text(&drift).contains("s1: clean"), "{}", text(&drift));

    let history = s.run(&["history", "INV", "s0"])?;
    let h = text(&history);
    assert!(history.status.success());
    assert!(h.contains("rollback") && h.contains("rejected") && h.contains("deploy"), "{h}");

    let audit = s.run(&["audit", "verify", "INV", "--no-checkpoint"])?;
    assert!(audit.status.success(), "{}", text(&audit));
    assert!(text(&audit).contains("intact"));
    // Tamper with one outcome: detected.
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update audit_log set outcome='succeeded' where outcome='rejected'\"); c.commit()"])
        .arg(&s.state)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let audit = s.run(&["audit", "verify", "INV"])?;
    assert_eq!(audit.status.code(), Some(3), "{}", text(&audit));
    assert!(text(&audit).contains("TAMPERED"), "{}", text(&audit));
    Ok(())
}

#[test]
fn two_concurrent_applies_are_serialized_per_server() -> anyhow::Result<()> {
    let s = setup(2, "c1")?;
    let first = s.run(&["apply", "INV", "--yes"])?;
    assert!(first.status.success(), "{}", text(&first));
    // Two processes with different inventories start together.
    let inv2 = s.inv.with_file_name("inventory2.toml");
    std::fs::write(&inv2, std::fs::read_to_string(&s.inv)?.replace("\"c1\"", "\"c2\""))?;
    s.retag("c3")?;
    let a = rpcc(&["apply", s.inv.to_str().unwrap_or_default(), "--yes", "--json"], &s.state).spawn()?;
    let b = rpcc(&["apply", inv2.to_str().unwrap_or_default(), "--yes", "--json"], &s.state).spawn()?;
    let (a, b) = (a.wait_with_output()?, b.wait_with_output()?);
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));

    // Per server: the two deployments never overlapped in time.
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print(*r) for r in c.execute('select server, started_ms, finished_ms, state from deployments where id > 2 order by server, started_ms')]"])
        .arg(&s.state)
        .output()?;
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for pair in rows.chunks(2) {
        assert_eq!(pair[0][0], pair[1][0]);
        let first_end: i64 = pair[0][2].parse()?;
        let second_start: i64 = pair[1][1].parse()?;
        assert!(first_end <= second_start, "interleaved on {}: {rows:?}", pair[0][0]);
        assert!(pair.iter().all(|r| r[3] == "succeeded"), "{rows:?}");
    }
    // Whichever ran last is what the server runs, completely.
    for ts in s.fleet.servers() {
        let tag = get(ts.http_port(), "a.test.example", "/healthz").and_then(|r| r.1);
        let tag_b = get(ts.http_port(), "b.test.example", "/healthz").and_then(|r| r.1);
        assert_eq!(tag, tag_b, "{}: one complete generation", ts.name());
        assert!(matches!(tag.as_deref(), Some("c2" | "c3")), "{tag:?}");
    }
    Ok(())
}

#[test]
fn a_process_killed_mid_deploy_is_recovered_by_the_next_run() -> anyhow::Result<()> {
    let s = setup(1, "k1")?;
    let ts = &s.fleet.servers()[0];
    assert!(s.run(&["apply", "INV", "--yes"])?.status.success());
    let g1 = current_generation(&ts.managed_root()).expect("deployed");

    // Killed after the switch and reload, before the probe and the commit.
    s.retag("k2")?;
    let crashed = rpcc(&["apply", s.inv.to_str().unwrap_or_default(), "--yes"], &s.state)
        .env("RPCC_FAULT_INJECT", "abort-before:probe")
        .output()?;
    assert!(!crashed.status.success(), "{}", text(&crashed));
    let g2 = current_generation(&ts.managed_root()).expect("switched");
    assert_ne!(g1, g2, "the crash happened after the switch");
    assert!(ts.managed_root().join("lock").exists(), "the dead process's lock is left behind");
    let status = s.run(&["status", "INV"])?;
    assert!(text(&status).contains("current ≠ committed"), "{}", text(&status));

    // The next run: breaks the dead holder's lock, restores the committed generation,
    // marks the crashed deployment abandoned, then deploys.
    s.retag("k3")?;
    let next = s.run(&["apply", "INV", "--yes", "--json"])?;
    assert!(next.status.success(), "{}", text(&next));
    let json: serde_json::Value = serde_json::from_slice(&next.stdout)?;
    assert_eq!(json["servers"][0]["state"], "succeeded");
    assert_eq!(json["servers"][0]["recovered"], g2.as_str());
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("k3".into()))));
    let history = text(&s.run(&["history", "INV", "s0"])?);
    assert!(history.contains("abandoned"), "{history}");
    let audit = s.run(&["audit", "verify", "INV", "--no-checkpoint"])?;
    assert!(audit.status.success(), "{}", text(&audit));
    Ok(())
}
