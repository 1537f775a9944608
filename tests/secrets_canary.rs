//! The canary test: one unique secret placed in every secret field (SSH password,
//! key passphrase, a stored notifier token, a legacy Fernet token), then every CLI
//! command, successful and failing, run with `RUST_LOG=trace -vvv` against a real
//! loopback fleet. Its stdout, stderr, the SQLite files, the inventory, rendered output
//! and `Debug` output are searched: the canary must appear nowhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::site;
use rpcc::core::LoadOptions;
use rpcc::core::keyring::{Keyring, RecordId};
use rpcc::core::model::Inventory;
use rpcc_testkit::Fleet;
use secrecy::SecretString;

const CANARY: &str = "canary-Xq93-zz7-pa55";

fn rpcc(args: &[&str], keys: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpcc"));
    c.arg("-vvv")
        .args(args)
        .env_remove("RPCC_KEYS")
        .env_remove("RPCC_STATE")
        .env_remove("RPCC_FAULT_INJECT")
        .env("RPCC_KEY_FILE", keys)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null());
    c
}

fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(std::env::var("RPCC_TOOLS_VENV").unwrap_or_else(|_| format!("{home}/.cache/rpcc-tools")))
        .join("bin/python")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { files_under(&p, out) } else { out.push(p) }
        }
    }
}

#[test]
fn a_canary_secret_never_leaks_from_any_command() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let state = dir.path().join("state.db");
    let s0 = fleet.servers()[0].name().to_owned();
    let s1 = fleet.servers()[1].name().to_owned();
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();

    let generated = rpcc(&["keys", "generate", "--key-file", &s(&keys), "--id", "k1"], &keys).output()?;
    assert!(generated.status.success());
    let ring = Keyring::from_file(&keys)?;
    let seal = |record: &str| -> anyhow::Result<String> {
        Ok(ring.seal(&RecordId::parse(record)?, &SecretString::from(CANARY))?.to_string())
    };
    // s0: the canary as its SSH password (wrong: sshd refuses it). s1: a key file
    // encrypted with the canary as passphrase (right: deploys work).
    let protected_key = fleet.add_client_key("ed25519", Some(CANARY))?;
    let mut toml = fleet.deploy_inventory_toml();
    let plain_auth = format!("auth = {{ key_file = \"{}\" }}", fleet.client_key().display());
    let s0_auth = format!("auth = {{ password = \"{}\" }}", seal(&format!("server/{s0}/password"))?);
    let s1_auth = format!(
        "auth = {{ key_file = \"{}\", passphrase = \"{}\" }}",
        protected_key.display(),
        seal(&format!("server/{s1}/passphrase"))?
    );
    toml = toml.replacen(&plain_auth, &s0_auth, 1).replacen(&plain_auth, &s1_auth, 1);
    // s1's Glances password, a Telegram token and a webhook secret: the canary too.
    let glances_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let glances = format!(
        "glances = {{ port = {glances_port}, insecure_http = true, user = \"mon\", password = \"{}\" }}\nnginx = {{",
        seal(&format!("server/{s1}/glances_password"))?
    );
    let at = toml.match_indices("\nnginx = {").nth(1).map(|(i, _)| i).unwrap_or(0);
    toml.replace_range(at + 1..at + "\nnginx = {".len(), &glances);
    toml.push('\n');
    toml.push_str(&site("canary.test.example", "v1"));
    toml.push_str(&format!(
        "\n[monitor]\nnotifiers = [{{ name = \"ops\", kind = \"telegram\", chat_id = \"-100123\", token = \"{}\" }}, \
         {{ name = \"pager\", kind = \"webhook\", insecure_http = true, url = \"http://127.0.0.1:9/hook\", secret = \"{}\" }}]\n",
        seal("notifier/ops/token")?,
        seal("notifier/pager/secret")?
    ));
    let inv = dir.path().join("inventory.toml");
    std::fs::write(&inv, &toml)?;
    let invs = s(&inv);

    // A stored secret and a legacy Fernet token carry the canary too.
    let legacy_key = "Y2FuYXJ5LWxlZ2FjeS1rZXktMzItYnl0ZXMtbG9uZyE=";
    let tokens = dir.path().join("tokens.tsv");
    let mk = Command::new(python())
        .arg("-c")
        .arg("import sys\nfrom cryptography.fernet import Fernet\nopen(sys.argv[3],'w').write('notifier/legacy/token\\t'+Fernet(sys.argv[1].encode()).encrypt(sys.argv[2].encode()).decode()+'\\n')")
        .args([legacy_key, CANARY, &s(&tokens)])
        .output()?;
    assert!(mk.status.success(), "{}", String::from_utf8_lossy(&mk.stderr));

    let render_dir = dir.path().join("rendered");
    let st = s(&state);
    let rd = s(&render_dir);
    let tk = s(&tokens);
    // (argv, stdin, $LEGACY, expected success: None when either outcome is right)
    type Case<'a> = (Vec<&'a str>, Option<&'a str>, Option<&'a str>, Option<bool>);
    let wrong_legacy = "d3JvbmctbGVnYWN5LWtleS1mb3ItdGhlLXRlc3RzISE=";
    let commands: Vec<Case<'_>> = vec![
        (vec!["keys", "encrypt", "--for", "notifier/ops/token", "--state", &st], Some(CANARY), None, Some(true)),
        (
            vec!["keys", "import-fernet", "--legacy-key-env", "LEGACY", "--tokens", &tk, "--state", &st],
            None,
            Some(legacy_key),
            Some(true),
        ),
        (
            vec!["keys", "import-fernet", "--legacy-key-env", "LEGACY", "--tokens", &tk],
            None,
            Some(wrong_legacy),
            Some(false),
        ),
        (vec!["keys", "list", "--state", &st], None, None, Some(true)),
        (vec!["validate", &invs], None, None, Some(true)),
        (vec!["validate", &invs, "--json"], None, None, Some(true)),
        // s1's Glances is not running: the round reports it (exit 3), with a password sent nowhere.
        (vec!["check", &invs], None, None, Some(false)),
        (vec!["check", &invs, "--json"], None, None, Some(false)),
        (vec!["render", &invs, "--out", &rd], None, None, Some(true)),
        // s0's password is wrong: every fleet command reports it as failed.
        (vec!["plan", &invs, "--state", &st], None, None, Some(false)),
        (vec!["plan", &invs, "--state", &st, "--json"], None, None, Some(false)),
        (vec!["apply", &invs, "--state", &st, "--yes"], None, None, Some(false)),
        (vec!["apply", &invs, "--state", &st, "--yes", "--json"], None, None, Some(false)),
        (vec!["status", &invs, "--state", &st], None, None, None),
        (vec!["drift", &invs, "--state", &st, "--json"], None, None, None),
        (vec!["history", &invs, &s1, "--state", &st], None, None, Some(true)),
        (vec!["plan", &invs, "--state", &st, "--server", &s1], None, None, Some(true)),
        (vec!["rollback", &invs, &s1, "--state", &st, "--yes"], None, None, None),
        (vec!["run", &invs, &s0, "--", "id"], None, None, Some(false)),
        (vec!["run", &invs, &s1, "--", "id"], None, None, Some(true)),
        (vec!["audit", "verify", &invs, "--state", &st], None, None, Some(true)),
        (vec!["keys", "retire", "k1", &invs, "--state", &st], None, None, Some(false)),
        (vec!["keys", "generate", "--id", "k2"], None, None, Some(true)),
        (vec!["keys", "rotate", &invs, "--state", &st], None, None, Some(true)),
        (vec!["validate", &invs], None, None, Some(true)),
        (vec!["keys", "retire", "k1", &invs, "--state", &st], None, None, Some(true)),
    ];
    for (args, stdin, legacy, expect) in &commands {
        let mut cmd = rpcc(args, &keys);
        if let Some(l) = legacy {
            cmd.env("LEGACY", l);
        }
        let out = common::output_with_stdin(cmd, stdin.unwrap_or(""))?;
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(CANARY), "`rpcc {}` leaked the canary:\n{all}", args.join(" "));
        if let Some(ok) = expect {
            let quiet: Vec<&str> = all.lines().filter(|l| !l.contains("TRACE") && !l.contains("DEBUG")).collect();
            assert_eq!(out.status.success(), *ok, "`rpcc {}`:\n{}", args.join(" "), quiet.join("\n"));
        }
    }
    // s1 (its key's passphrase opened from an envelope) really was deployed.
    let served = common::get(fleet.servers()[1].http_port(), "canary.test.example", "/healthz");
    assert_eq!(served.map(|(status, _)| status), Some(200));
    // With a wrong keyring and with plain text, errors still never show the value.
    let other = dir.path().join("other-keys");
    assert!(rpcc(&["keys", "generate", "--key-file", &s(&other)], &other).output()?.status.success());
    let out = rpcc(&["apply", &invs, "--state", &st, "--yes"], &other).output()?;
    assert!(!out.status.success());
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, toml.replacen(&s0_auth, &format!("auth = {{ password = \"{CANARY}\" }}"), 1))?;
    let plain_s = s(&plain);
    for args in
        [vec!["validate", plain_s.as_str()], vec!["plan", plain_s.as_str(), "--state", &st, "--allow-plaintext"]]
    {
        let out = rpcc(&args, &keys).output()?;
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(CANARY), "{args:?} leaked:\n{all}");
    }

    // Files at rest: the state database (with WAL), the inventory, rendered configs.
    let mut files = vec![inv.clone()];
    files_under(dir.path(), &mut files);
    let mut searched = 0;
    for f in files.iter().filter(|f| !f.ends_with("plain.toml") && !f.ends_with("tokens.tsv")) {
        let bytes = std::fs::read(f)?;
        searched += 1;
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{} holds the canary", f.display());
    }
    assert!(searched >= 5, "only {searched} files searched");

    // Debug of everything that holds the secrets in-process.
    let loaded = Inventory::from_toml_file(&inv)?;
    let ring = Keyring::from_file(&keys)?;
    let debug = format!("{loaded:?} {:?} {ring:?} {:?}", loaded.secrets(), loaded.servers);
    assert!(!debug.contains(CANARY));
    let plain_inv = Inventory::from_toml_file_with(&plain, &LoadOptions::allow_plaintext(true))?;
    assert!(!format!("{plain_inv:?}").contains(CANARY));
    Ok(())
}
