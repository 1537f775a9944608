//! Several control planes on one PostgreSQL state (rpcc-testkit's real `PgServer`) and
//! one loopback fleet: two `rpcc apply` processes deploying the same servers at once,
//! over and over, are serialized per server (never interleaved), every outcome is in
//! the one audit chain, and the chain verifies.

mod common;

use std::path::Path;
use std::process::Command;

use common::{current_generation, site};
use rpcc_testkit::{Fleet, PgServer};

fn rpcc(args: &[&str], state: &str) -> Command {
    let mut c = common::rpcc_cli(args);
    c.env("RPCC_STATE", state);
    c
}

use common::output_text as text;

/// Applies per control plane: 2 control planes × 50 applies × 2 servers = 200 deploys.
const APPLIES: usize = 50;

/// One control plane: its own inventory file (same servers, its own tag per round),
/// `APPLIES` applies one after another; the outputs of the failed ones.
fn control_plane(fleet_toml: &str, dir: &Path, name: &str, state: &str) -> Vec<String> {
    let inv = dir.join(format!("{name}.toml"));
    let mut failed = Vec::new();
    for i in 0..APPLIES {
        let tag = format!("{name}-{i}");
        let body = format!("{fleet_toml}\n{}{}", site("a.test.example", &tag), site("b.test.example", &tag));
        if let Err(e) = std::fs::write(&inv, body) {
            failed.push(e.to_string());
            continue;
        }
        match rpcc(&["apply", inv.to_str().unwrap_or_default(), "--yes", "--json"], state).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => failed.push(text(&o)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    failed
}

#[test]
fn two_control_planes_on_one_postgres_state_are_serialized_and_share_one_audit_chain() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let pg = PgServer::start()?;
    let url = pg.fresh_database()?;
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir()?;
    let fleet_toml = fleet.deploy_inventory_toml();

    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| control_plane(&fleet_toml, dir.path(), "cp1", &url));
        let two = s.spawn(|| control_plane(&fleet_toml, dir.path(), "cp2", &url));
        (one.join().unwrap_or_default(), two.join().unwrap_or_default())
    });
    assert!(one.is_empty() && two.is_empty(), "failed applies:\n{}\n{}", one.join("\n"), two.join("\n"));

    // Per server: 100 deployments, none overlapping another in time, all succeeded.
    let rows = pg.psql(
        &db,
        "SELECT server, started_ms, finished_ms, state, generation FROM deployments ORDER BY server, started_ms",
    )?;
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 * APPLIES, "{rows:?}");
    for server in ["s0", "s1"] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == server).collect();
        assert_eq!(mine.len(), 2 * APPLIES);
        assert!(mine.iter().all(|r| r[3] == "succeeded"), "{mine:?}");
        for pair in mine.windows(2) {
            let (end, next_start): (i64, i64) = (pair[0][2].parse()?, pair[1][1].parse()?);
            assert!(end <= next_start, "{server}: deployments overlap: {pair:?}");
        }
        // The server runs the generation of its last recorded deployment.
        let s = fleet.servers().iter().find(|t| t.name() == server).expect("server");
        assert_eq!(current_generation(&s.managed_root()).as_deref(), mine.last().map(|r| r[4]));
    }

    // One audit chain: an entry per deployment, and it verifies.
    let deploys = pg.psql(&db, "SELECT count(*) FROM audit_log WHERE action = 'deploy'")?;
    assert_eq!(deploys.parse::<usize>()?, 2 * 2 * APPLIES);
    let inv = dir.path().join("cp1.toml");
    let verify = rpcc(&["audit", "verify", inv.to_str().unwrap_or_default(), "--no-checkpoint"], &url).output()?;
    assert!(verify.status.success(), "{}", text(&verify));
    let history = rpcc(&["history", inv.to_str().unwrap_or_default(), "s0", "--json"], &url).output()?;
    assert!(history.status.success() && text(&history).contains("succeeded"), "{}", text(&history));
    Ok(())
}

/// `rpcc state migrate`: a SQLite state with a keyed audit chain moves into PostgreSQL
/// whole; the CLI then works on the copy (history, a new apply continuing the chain,
/// the keyed chain verifying with the key), and a second migrate into it is refused.
#[test]
fn a_sqlite_state_migrates_into_postgres_whole_and_the_fleet_carries_on() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let pg = PgServer::start()?;
    let url = pg.fresh_database()?;
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let sqlite = dir.path().join("state.db");
    let sqlite_state = sqlite.to_str().unwrap_or_default();
    let inv = dir.path().join("inventory.toml");
    let write = |tag: &str| {
        let body = format!("{}\n{}", fleet.deploy_inventory_toml(), site("a.test.example", tag));
        std::fs::write(&inv, body)
    };
    let inv_arg = inv.to_str().unwrap_or_default();
    let keyed = |c: &mut Command| {
        c.env("RPCC_KEY_FILE", &keys);
    };
    let mut generate = rpcc(&["keys", "generate", "--key-file", keys.to_str().unwrap_or_default(), "--id", "k1"], "");
    assert!(generate.output()?.status.success());
    for tag in ["one", "two"] {
        write(tag)?;
        let mut apply = rpcc(&["apply", inv_arg, "--yes"], sqlite_state);
        keyed(&mut apply);
        let out = apply.output()?;
        assert!(out.status.success(), "{}", text(&out));
    }

    let out = rpcc(&["state", "migrate", sqlite_state, &url, "--json"], "").output()?;
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["audit_unchanged"], true, "{report}");
    let rows =
        |table: &str| report["tables"].as_array().and_then(|t| t.iter().find(|r| r[0] == table)).map(|r| r[1].clone());
    assert_eq!(rows("deployments"), Some(serde_json::json!(2)), "{report}");
    // Keyed entries: links checked without the key (their MACs need it: `audit verify`).
    assert_eq!(report["audit"]["unverifiable"], 2, "{report}");
    assert!(report["audit"]["broken"].is_null(), "{report}");

    // The copy is the state now: history, a new apply continuing ids and the chain.
    let history = rpcc(&["history", inv_arg, "s0", "--json"], &url).output()?;
    let past: serde_json::Value = serde_json::from_slice(&history.stdout)?;
    assert_eq!(past.as_array().map(Vec::len), Some(2), "{past}");
    write("three")?;
    let mut apply = rpcc(&["apply", inv_arg, "--yes"], &url);
    keyed(&mut apply);
    let out = apply.output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.psql(&db, "SELECT max(id) FROM deployments")?, "3");
    let mut verify = rpcc(&["audit", "verify", inv_arg, "--key-file", keys.to_str().unwrap_or_default()], &url);
    keyed(&mut verify);
    let out = verify.output()?;
    assert!(out.status.success(), "{}", text(&out));

    // Never into a database that already holds state: refused, nothing changed.
    let before = pg.psql(&db, "SELECT count(*) FROM audit_log")?;
    let again = rpcc(&["state", "migrate", sqlite_state, &url], "").output()?;
    assert!(!again.status.success() && text(&again).contains("already holds state"), "{}", text(&again));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM audit_log")?, before);
    // And never from something that is not a SQLite state.
    let wrong = rpcc(&["state", "migrate", &url, &url], "").output()?;
    assert!(!wrong.status.success() && text(&wrong).contains("not a SQLite state file"), "{}", text(&wrong));
    Ok(())
}

/// Two `rpcc watch` processes on one PostgreSQL state split the fleet: every server is
/// sampled once per interval (not twice, not even when the second joins just after the
/// first checked everything), and after one is killed with SIGKILL its
/// servers are checked by the other within one interval.
#[test]
fn two_watch_processes_split_the_fleet_and_take_over_a_dead_ones_servers() -> anyhow::Result<()> {
    let fleet = Fleet::start(4)?;
    let glances = rpcc_testkit::GlancesServer::start()?;
    let pg = PgServer::start()?;
    let url = pg.fresh_database()?;
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir()?;
    let servers: Vec<String> = fleet.servers().iter().map(|s| s.name().to_owned()).collect();
    // Two member names that both own some servers.
    let (a, b) = (0..)
        .map(|i| (format!("watch-a{i}"), format!("watch-b{i}")))
        .find(|(a, b)| {
            let members = [a.clone(), b.clone()];
            let owned_by_a = servers.iter().filter(|s| rpcc::watch::owner(&members, s) == Some(a.as_str())).count();
            owned_by_a > 0 && owned_by_a < servers.len()
        })
        .unwrap_or_default();
    let members = [a.clone(), b.clone()];
    let a_servers: Vec<&String> =
        servers.iter().filter(|s| rpcc::watch::owner(&members, s) == Some(a.as_str())).collect();
    let inv = dir.path().join("watch.toml");
    let body = fleet
        .deploy_inventory_toml()
        .replace("\nnginx = {", &format!("\nglances = {{ port = {} }}\nnginx = {{", glances.port()))
        + "\n[monitor]\ninterval = \"1s\"\ntimeout = \"2s\"\n";
    std::fs::write(&inv, body)?;
    let watch = |member: &str| {
        rpcc(&["watch", inv.to_str().unwrap_or_default(), "--member", member], &url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    };
    let samples = |since: i64| -> anyhow::Result<Vec<(String, i64)>> {
        let rows = pg.psql(
            &db,
            &format!("SELECT server, at_ms FROM metric_samples WHERE at_ms > {since} ORDER BY server, at_ms"),
        )?;
        Ok(rows
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(s, t)| (s.to_owned(), t.parse().unwrap_or(0)))
            .collect())
    };
    // The second member joins right after the first one's first round (alone, it checked
    // every server): the servers that pass to the newcomer are not checked again at once.
    let mut first = common::KillOnDrop(watch(&a)?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // (The tables appear once the first member has migrated the new database.)
    while samples(0).map_or(0, |s| s.len()) < servers.len() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the first member never completed a round");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _second = common::KillOnDrop(watch(&b)?);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let steady = samples(0)?;
    for s in &servers {
        let times: Vec<i64> = steady.iter().filter(|(x, _)| x == s).map(|(_, t)| *t).collect();
        // 5 to 6 s at one round a second: 4 to 7 samples, never two in the same interval.
        assert!((4..=7).contains(&times.len()), "{s}: {times:?}");
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 500), "{s} checked twice in one interval: {times:?}");
    }

    // Kill the first member: its servers pass to the second within one interval.
    first.0.kill()?;
    first.0.wait()?;
    let killed = rpcc::core::deploy::unix_ms();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = samples(killed)?;
    for s in &a_servers {
        let first_after = after.iter().find(|(x, _)| x == *s).map(|(_, t)| t - killed);
        eprintln!("{s}: first sample {first_after:?} ms after the kill");
        assert!(first_after.is_some_and(|ms| ms <= 1_500), "{s}: {first_after:?} ms after the kill ({after:?})");
    }
    Ok(())
}

/// The keyring commands on a PostgreSQL state, as on SQLite: `keys encrypt --state`
/// stores envelopes there, `keys list` counts them, `keys retire` is refused while the
/// old key still seals a secret or keys an audit entry, `keys rotate` re-seals every
/// secret (same values) and re-keys the audit chain, and then the old key can go and
/// the chain verifies under the new key alone.
#[test]
fn keys_rotate_and_retire_cover_a_postgres_state() -> anyhow::Result<()> {
    use rpcc::core::keyring::{KeyId, Keyring, RecordId, SecretStore as _};
    use secrecy::ExposeSecret as _;
    use std::io::Write as _;

    let pg = PgServer::start()?;
    let url = pg.fresh_database()?;
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let k = keys.to_str().unwrap_or_default();
    let inv = dir.path().join("inventory.toml");
    std::fs::write(
        &inv,
        "[[servers]]\nname = \"edge-1\"\nhost = \"203.0.113.10\"\nuser = \"deploy\"\nauth = { agent = true }\n",
    )?;
    let keys_cmd = |args: &[&str]| {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--key-file", k, "--state", &url]);
        rpcc(&all, "")
    };
    assert!(rpcc(&["keys", "generate", "--key-file", k, "--id", "k1"], "").output()?.status.success());
    let records = ["server/edge-1/password", "server/edge-2/passphrase"];
    for record in records {
        let mut child = keys_cmd(&["encrypt", "--for", record]).stdin(std::process::Stdio::piped()).spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdin"))?
            .write_all(format!("value of {record}").as_bytes())?;
        let out = child.wait_with_output()?;
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(pg.psql(&db, "SELECT key_id || ':' || count(*) FROM secrets GROUP BY key_id")?, "k1:2");
    let list = keys_cmd(&["list"]).output()?;
    assert!(list.status.success() && text(&list).contains("k1: 2 secret(s)"), "{}", text(&list));

    assert!(rpcc(&["keys", "generate", "--key-file", k, "--id", "k2"], "").output()?.status.success());
    let refused = keys_cmd(&["retire", "k1"]).output()?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("still keys 2 audit entr"), "{}", text(&refused));

    let rotate = keys_cmd(&["rotate"]).output()?;
    assert!(rotate.status.success(), "{}", text(&rotate));
    assert!(text(&rotate).contains("2 secret(s) re-sealed under k2"), "{}", text(&rotate));
    assert!(text(&rotate).contains("2 audit entr(ies) re-keyed under k2"), "{}", text(&rotate));
    assert_eq!(pg.psql(&db, "SELECT key_id || ':' || count(*) FROM secrets GROUP BY key_id")?, "k2:2");

    let retired = keys_cmd(&["retire", "k1"]).output()?;
    assert!(retired.status.success(), "{}", text(&retired));
    // Only k2 is left: every secret opens to its value, and the chain verifies.
    let ring = Keyring::from_file(&keys)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = rt.block_on(rpcc::store::PgStore::open(&url))?;
    let stored = rt.block_on(store.secrets_not_under(&KeyId::parse("none").map_err(anyhow::Error::msg)?, None, 10))?;
    assert_eq!(stored.len(), 2);
    for (record, envelope) in &stored {
        assert!(records.contains(&record.as_str()), "{record}");
        let value = ring.open(&RecordId::parse(record.as_str())?, envelope)?;
        assert_eq!(value.expose_secret(), format!("value of {record}"));
    }
    let verify = rpcc(&["audit", "verify", inv.to_str().unwrap_or_default(), "--key-file", k, "--require-keyed"], &url)
        .output()?;
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("4 entries, 4 keyed"), "{}", text(&verify));
    Ok(())
}
