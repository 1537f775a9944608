//! One inventory, two environments (`[env.staging]`, `[env.production]`) over a real
//! loopback fleet: `--env`/`RPCC_ENV` picks the servers, the state and the keyring; no
//! command mixes them (another environment's state or keyring is refused, and without a
//! choice nothing runs).

mod common;

use std::process::{Command, Output};

use common::{current_generation, get, site};
use rpcc_testkit::Fleet;

fn rpcc(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpcc"));
    c.args(args)
        .current_dir(dir)
        .env_remove("RPCC_STATE")
        .env_remove("RPCC_ENV")
        .env_remove("RPCC_KEY_FILE")
        .env_remove("RPCC_KEYS")
        .env("RUST_LOG", "warn");
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The fleet's two servers as one environment each.
fn inventory(fleet: &Fleet) -> String {
    let base = fleet.deploy_inventory_toml();
    let servers: Vec<&str> =
        base.split("[[servers]]").skip(1).map(|c| c.split("[[groups]]").next().unwrap_or(c)).collect();
    let mut out = site("a.test.example", "shared");
    for (env, server, name) in [("staging", servers[0], "s0"), ("production", servers[1], "s1")] {
        out.push_str(&format!(
            "[env.{env}]\nstate = \"{env}.db\"\nkey_file = \"{env}.keys\"\n\n[[env.{env}.servers]]{server}\n\
             [[env.{env}.groups]]\nname = \"all\"\nservers = [\"{name}\"]\n\n"
        ));
    }
    out
}

#[test]
fn each_environment_deploys_its_own_servers_with_its_own_state_and_keys() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("inventory.toml"), inventory(&fleet))?;
    for env in ["staging", "production"] {
        let out = rpcc(d, &["keys", "generate", "--key-file", &format!("{env}.keys"), "--id", env]).output()?;
        assert!(out.status.success(), "{}", text(&out));
    }

    // No environment chosen: nothing runs, and the message says how to choose.
    let out = rpcc(d, &["apply", "inventory.toml", "--yes"]).output()?;
    assert!(!out.status.success() && text(&out).contains("choose one with --env"), "{}", text(&out));

    // Staging: its server only, its state file, keyed with its keyring.
    let out = rpcc(d, &["apply", "inventory.toml", "--env", "staging", "--yes"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let (s0, s1) = (&fleet.servers()[0], &fleet.servers()[1]);
    assert_eq!(get(s0.http_port(), "a.test.example", "/healthz").map(|r| r.0), Some(200));
    assert!(current_generation(&s1.managed_root()).is_none(), "production untouched");
    assert!(d.join("staging.db").exists() && !d.join("production.db").exists());
    assert!(d.join("staging.keys.audit-head").exists(), "the audit log is keyed with staging's keyring");

    // Production through RPCC_ENV.
    let out = rpcc(d, &["apply", "inventory.toml", "--yes"]).env("RPCC_ENV", "production").output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(current_generation(&s1.managed_root()).is_some());
    let status = rpcc(d, &["status", "inventory.toml", "--env", "production", "--json"]).output()?;
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    let servers: Vec<&str> = rows.as_array().into_iter().flatten().filter_map(|r| r["server"].as_str()).collect();
    assert_eq!(servers, ["s1"], "{rows}");

    // Mixing is refused: another environment's state, another keyring.
    let out = rpcc(d, &["status", "inventory.toml", "--env", "production", "--state", "staging.db"]).output()?;
    assert!(!out.status.success() && text(&out).contains("would mix environments"), "{}", text(&out));
    let out =
        rpcc(d, &["apply", "inventory.toml", "--env", "production", "--key-file", "staging.keys", "--yes"]).output()?;
    assert!(!out.status.success() && text(&out).contains("would mix keys"), "{}", text(&out));
    let out = rpcc(d, &["apply", "inventory.toml", "--env", "production", "--yes"])
        .env("RPCC_KEY_FILE", d.join("staging.keys"))
        .output()?;
    assert!(!out.status.success() && text(&out).contains("would mix keys"), "{}", text(&out));
    Ok(())
}

/// `rpcc validate` checks every environment of an inventory that defines several (or
/// the one `--env` names); one broken environment fails the whole file.
#[test]
fn validate_checks_every_environment() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let body = inventory(&fleet);
    std::fs::write(d.join("inventory.toml"), &body)?;
    let out = rpcc(d, &["validate", "inventory.toml"]).output()?;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("[env staging]: valid: 1 servers") && all.contains("[env production]: valid: 1 servers"),
        "{all}"
    );

    // Production's group names a server it does not have: only production fails.
    std::fs::write(d.join("inventory.toml"), body.replace("servers = [\"s1\"]", "servers = [\"s9\"]"))?;
    let out = rpcc(d, &["validate", "inventory.toml", "--json"]).output()?;
    assert!(!out.status.success());
    let docs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let verdict: Vec<(String, bool)> = docs
        .iter()
        .map(|d| (d["environment"].as_str().unwrap_or_default().to_owned(), d["valid"].as_bool().unwrap_or(true)))
        .collect();
    assert_eq!(verdict, [("staging".to_owned(), true), ("production".to_owned(), false)], "{docs:?}");
    let one = rpcc(d, &["validate", "inventory.toml", "--env", "staging"]).output()?;
    assert!(one.status.success() && !text(&one).contains("production"), "{}", text(&one));
    Ok(())
}
