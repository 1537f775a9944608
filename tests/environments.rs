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

/// Seal `value` for `record` with the keyring file `keys` (in `dir`).
fn seal(dir: &std::path::Path, keys: &str, record: &str, value: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = rpcc(dir, &["keys", "encrypt", "--for", record, "--key-file", keys])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?.write_all(value.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "{}", text(&out));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `rpcc keys rotate`/`retire` on an inventory with environments, one environment at a
/// time with its own keyring: its servers' secrets move to its new key; another
/// environment's secrets and the base's shared ones stay as they are (the base one is
/// reported, and keeps the old key from being retired); another keyring or no choice is
/// refused with the file untouched. Nothing connects anywhere (documentation addresses).
#[test]
fn keys_rotate_and_retire_one_environment_at_a_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for (file, id) in [("staging.keys", "stg1"), ("production.keys", "prd1")] {
        let out = rpcc(d, &["keys", "generate", "--key-file", file, "--id", id]).output()?;
        assert!(out.status.success(), "{}", text(&out));
    }
    let stg = seal(d, "staging.keys", "server/stg-1/password", "staging secret")?;
    let prd = seal(d, "production.keys", "server/prd-1/password", "production secret")?;
    let base = seal(d, "staging.keys", "server/jump-1/password", "base secret")?;
    let server = |name: &str, host: u8, envelope: &str| {
        format!(
            "name = \"{name}\"\nhost = \"203.0.113.{host}\"\nuser = \"deploy\"\nauth = {{ password = \"{envelope}\" }}\n\n"
        )
    };
    let inventory = format!(
        "[[servers]]\n{}[env.staging]\nkey_file = \"staging.keys\"\n\n[[env.staging.servers]]\n{}\
         [env.production]\nkey_file = \"production.keys\"\n\n[[env.production.servers]]\n{}",
        server("jump-1", 1, &base),
        server("stg-1", 2, &stg),
        server("prd-1", 3, &prd),
    );
    let inv = d.join("inventory.toml");
    std::fs::write(&inv, &inventory)?;
    let out = rpcc(d, &["keys", "generate", "--key-file", "staging.keys", "--id", "stg2"]).output()?;
    assert!(out.status.success(), "{}", text(&out));

    // No environment, or another environment's keyring: refused, nothing rewritten.
    let out = rpcc(d, &["keys", "rotate", "inventory.toml", "--key-file", "staging.keys"]).output()?;
    assert!(!out.status.success() && text(&out).contains("choose one with --env"), "{}", text(&out));
    let out =
        rpcc(d, &["keys", "rotate", "inventory.toml", "--env", "staging", "--key-file", "production.keys"]).output()?;
    assert!(!out.status.success() && text(&out).contains("would mix keys"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&inv)?, inventory);

    // Staging: its own server's secret only; the base's is reported, production's untouched.
    let out = rpcc(d, &["keys", "rotate", "inventory.toml", "--env", "staging"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 secret(s) re-sealed under stg2, 1 shared by every environment left as is"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(&inv)?;
    assert!(!after.contains(&stg) && after.contains("rpcc:v1:stg2:"), "{after}");
    assert!(after.contains(&prd) && after.contains(&base), "{after}");
    // The rewritten secret opens to the same value under staging's keyring alone.
    let ring = rpcc::core::keyring::Keyring::from_file(&d.join("staging.keys"))?;
    let inv_loaded = rpcc::core::model::Inventory::from_toml_file_with(
        &inv,
        &rpcc::core::LoadOptions::allow_plaintext(false).with_environment(Some("staging")),
    )?;
    let secret = inv_loaded.secrets().into_iter().find(|s| s.record().as_str() == "server/stg-1/password");
    let value = secret.ok_or_else(|| anyhow::anyhow!("stg-1's secret"))?.open(Some(&ring))?;
    assert_eq!(secrecy::ExposeSecret::expose_secret(&value), "staging secret");

    // stg1 still seals the shared secret: retiring it is refused and names it.
    let out = rpcc(d, &["keys", "retire", "stg1", "inventory.toml", "--env", "staging"]).output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("server/jump-1/password"), "{}", text(&out));
    assert!(!text(&out).contains("server/prd-1"), "{}", text(&out));
    Ok(())
}
