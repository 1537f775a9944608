//! `rpcc keys …` as an operator runs it: key files, sealing from stdin, bad key sources,
//! rotation of 10,000 SQLite secrets killed at every batch boundary and mid-batch, legacy
//! Fernet import from Python-made tokens and a legacy SQLite database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rpcc::core::keyring::{Envelope, KeyId, Keyring, RecordId, SecretStore as _};
use rpcc::store::SqliteStore;
use secrecy::{ExposeSecret as _, SecretString};

mod common;

fn rpcc(args: &[&str]) -> Command {
    common::rpcc_cli(args)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = std::env::var("RPCC_TOOLS_VENV").unwrap_or_else(|_| format!("{home}/.cache/rpcc-tools"));
    PathBuf::from(venv).join("bin/python")
}

const INVENTORY: &str = r#"
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
auth = { password = "PW1" }

[[servers]]
name = "edge-2"
host = "203.0.113.11"
user = "deploy"
auth = { key_file = "keys/edge", passphrase = "PP2" }
"#;

fn seal(keys: &Path, record: &str, value: &str) -> anyhow::Result<String> {
    let out = common::output_with_stdin(rpcc(&["keys", "encrypt", "--for", record, "--key-file", s(keys)]), value)?;
    anyhow::ensure!(out.status.success(), "{}", text(&out));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[test]
fn keys_seal_from_stdin_and_bad_key_sources_are_distinct_errors() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let out = rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "k1"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::metadata(&keys)?.permissions().mode() & 0o777, 0o600);

    let pw = seal(&keys, "server/edge-1/password", "first-pw")?;
    let pp = seal(&keys, "server/edge-2/passphrase", "second-pp")?;
    assert!(pw.starts_with("rpcc:v1:k1:"));
    let inv = dir.path().join("inv.toml");
    std::fs::write(&inv, INVENTORY.replace("PW1", &pw).replace("PP2", &pp))?;
    let before = std::fs::read(&inv)?;

    // Configured keyring: every secret opens.
    let out = rpcc(&["validate", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    // No keyring: still valid (render does not need secrets), with a note.
    let out = rpcc(&["validate", s(&inv)]).output()?;
    assert!(out.status.success() && text(&out).contains("not opened"), "{}", text(&out));

    // Missing key file.
    let out = rpcc(&["validate", s(&inv), "--key-file", s(&dir.path().join("nope"))]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    // Loose permissions.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o640))?;
    let out = rpcc(&["keys", "rotate", s(&inv), "--key-file", s(&keys)]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("mode 0640") && text(&out).contains("chmod 600"), "{}", text(&out));
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600))?;
    // Malformed key in RPCC_KEYS (material never echoed).
    let out = rpcc(&["validate", s(&inv)]).env("RPCC_KEYS", "k1:c2VjcmV0LWJ1dC1zaG9ydA").output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not decode to 32 bytes"), "{}", text(&out));
    assert!(!text(&out).contains("c2VjcmV0LWJ1dC1zaG9ydA"));
    // Both sources at once.
    let out = rpcc(&["validate", s(&inv), "--key-file", s(&keys)]).env("RPCC_KEYS", "x:retired").output()?;
    assert!(text(&out).contains("use one key source"), "{}", text(&out));
    // An envelope from another record.
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, INVENTORY.replace("PW1", &pp).replace("PP2", &pw))?;
    let out = rpcc(&["validate", s(&moved), "--key-file", s(&keys)]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("server/edge-1/password holds an envelope made for a different record"),
        "{}",
        text(&out)
    );
    // A retired key.
    let out = rpcc(&["validate", s(&inv)])
        .env("RPCC_KEYS", "k1:retired,k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("key `k1`, which is retired"), "{}", text(&out));
    // Plain text refused with the record named; accepted with a warning when allowed.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, INVENTORY.replace("PW1", "plain-pw").replace("PP2", &pp))?;
    let out = rpcc(&["validate", s(&plain)]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("rpcc keys encrypt --for server/edge-1/password"), "{}", text(&out));
    let out = rpcc(&["validate", s(&plain), "--allow-plaintext"]).output()?;
    assert!(out.status.success() && text(&out).contains("warning"), "{}", text(&out));
    // Empty stdin and a bad record are refused.
    let out = common::output_with_stdin(
        rpcc(&["keys", "encrypt", "--for", "server/x/password", "--key-file", s(&keys)]),
        "",
    )?;
    assert!(!out.status.success() && text(&out).contains("empty"), "{}", text(&out));
    let out = common::output_with_stdin(rpcc(&["keys", "encrypt", "--for", "../etc", "--key-file", s(&keys)]), "v")?;
    assert!(!out.status.success() && text(&out).contains("record"), "{}", text(&out));

    // None of the failures touched the inventory.
    assert_eq!(std::fs::read(&inv)?, before);
    Ok(())
}

#[test]
fn rotating_an_inventory_and_retiring_the_old_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    assert!(rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "old"]).output()?.status.success());
    let pw = seal(&keys, "server/edge-1/password", "first-pw")?;
    let pp = seal(&keys, "server/edge-2/passphrase", "second-pp")?;
    let inv = dir.path().join("inv.toml");
    std::fs::write(&inv, format!("# operator comment kept\n{}", INVENTORY.replace("PW1", &pw).replace("PP2", &pp)))?;
    assert!(rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "new"]).output()?.status.success());

    // Retiring while in use is refused, listing where.
    let out = rpcc(&["keys", "retire", "old", s(&inv), "--key-file", s(&keys)]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("server/edge-1/password") && text(&out).contains("server/edge-2/passphrase"));

    // A crash before the rename leaves the file as it was.
    let before = std::fs::read_to_string(&inv)?;
    let out = rpcc(&["keys", "rotate", s(&inv), "--key-file", s(&keys)])
        .env("RPCC_FAULT_INJECT", "rotate-abort:before-rename:1")
        .output()?;
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&inv)?, before);

    let out = rpcc(&["keys", "rotate", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::read_to_string(&inv)?;
    assert!(
        after.starts_with("# operator comment kept")
            && !after.contains(":old:")
            && after.matches("rpcc:v1:new:").count() == 2
    );
    // Idempotent.
    let out = rpcc(&["keys", "rotate", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(text(&out).contains("0 secret(s) re-sealed"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&inv)?, after);

    let out = rpcc(&["keys", "retire", "old", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&keys)?.contains("old:retired"));
    let out = rpcc(&["validate", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    // The active key cannot be retired.
    let out = rpcc(&["keys", "retire", "new", s(&inv), "--key-file", s(&keys)]).output()?;
    assert!(text(&out).contains("the key that encrypts"), "{}", text(&out));
    Ok(())
}

fn record(i: usize) -> RecordId {
    RecordId::parse(&format!("server/s{i:05}/password")).unwrap_or_else(|e| panic!("{e}"))
}

async fn fill_store(state: &Path, keys: &Path, n: usize) -> anyhow::Result<()> {
    let ring = Keyring::from_file(keys)?;
    let store = SqliteStore::open(state).await?;
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        items.push((record(i), ring.seal(&record(i), &SecretString::from(format!("value-{i}")))?));
    }
    store.put_secrets(&items).await?;
    Ok(())
}

/// Every secret opens with the keyring to its value; returns how many are under `key`.
async fn check_store(state: &Path, keys: &Path, n: usize, key: &str) -> anyhow::Result<usize> {
    let ring = Keyring::from_file(keys)?;
    let store = SqliteStore::open(state).await?;
    // Everything in one query: no key is called `none`.
    let all: std::collections::HashMap<RecordId, Envelope> = store
        .secrets_not_under(&KeyId::parse("none").map_err(anyhow::Error::msg)?, None, usize::MAX)
        .await?
        .into_iter()
        .collect();
    anyhow::ensure!(all.len() == n, "{} secrets stored, {n} expected", all.len());
    let mut under = 0;
    for i in 0..n {
        let env = all.get(&record(i)).ok_or_else(|| anyhow::anyhow!("{} lost", record(i)))?;
        let v = ring.open(&record(i), env)?;
        anyhow::ensure!(v.expose_secret() == format!("value-{i}"), "{} changed value", record(i));
        under += usize::from(env.key_id().as_str() == key);
    }
    Ok(under)
}

/// `n` secrets in a fresh SQLite store sealed under key `a`, then key `b` added (the
/// active one): the starting point of every rotation test.
fn store_sealed_under_a_then_add_b(
    n: usize,
) -> anyhow::Result<(tempfile::TempDir, PathBuf, PathBuf, tokio::runtime::Runtime)> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    let state = dir.path().join("state.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    assert!(rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "a"]).output()?.status.success());
    rt.block_on(fill_store(&state, &keys, n))?;
    assert!(rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "b"]).output()?.status.success());
    Ok((dir, keys, state, rt))
}

#[test]
fn rotation_of_10000_secrets_survives_a_crash_at_every_batch_boundary_and_mid_batch() -> anyhow::Result<()> {
    let n = 10_000;
    let (_dir, keys, state, rt) = store_sealed_under_a_then_add_b(n)?;

    let rotate = |fault: Option<&str>| -> anyhow::Result<Output> {
        let mut c = rpcc(&["keys", "rotate", "--state", s(&state), "--batch", "500", "--key-file", s(&keys)]);
        if let Some(f) = fault {
            c.env("RPCC_FAULT_INJECT", f);
        }
        Ok(c.output()?)
    };
    // Each round kills the process at every point of its first batch in turn; only
    // the last (after the commit) makes progress. 20 batches x 4 points = 80 crashes.
    let mut crashes = 0;
    let mut decrypt_failures = 0;
    let mut done = rt.block_on(check_store(&state, &keys, n, "b"))?;
    while done < n {
        for point in ["loaded", "mid", "before-commit", "after-commit"] {
            let out = rotate(Some(&format!("rotate-abort:{point}:1")))?;
            assert!(!out.status.success(), "the injected crash did not happen: {}", text(&out));
            crashes += 1;
            match rt.block_on(check_store(&state, &keys, n, "b")) {
                Ok(now) => {
                    let expected = if point == "after-commit" { (done + 500).min(n) } else { done };
                    assert_eq!(now, expected, "after a crash at {point}");
                    if point == "after-commit" {
                        done = now;
                    }
                }
                Err(e) => {
                    decrypt_failures += 1;
                    eprintln!("after a crash at {point}: {e}");
                }
            }
        }
    }
    assert_eq!(decrypt_failures, 0);
    assert_eq!(crashes, 80);
    // A clean rerun has nothing left; then `a` can be retired.
    let out = rotate(None)?;
    assert!(out.status.success() && text(&out).contains("0 secret(s) re-sealed"), "{}", text(&out));
    let out = rpcc(&["keys", "retire", "a", "--state", s(&state), "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    // Both are in the hash-chained audit log, with key ids and counts only.
    let log = rt.block_on(async {
        use rpcc::core::deploy::StateStore as _;
        SqliteStore::open(&state).await?.audit_log().await
    })?;
    let actions: Vec<String> = log.iter().map(|r| format!("{} {}", r.event.action, r.event.outcome)).collect();
    assert!(
        actions.contains(&"key_rotate ok".to_owned()) && actions.contains(&"key_retire ok".to_owned()),
        "{actions:?}"
    );
    assert!(log.iter().all(|r| !r.event.detail.contains("value-")));
    Ok(())
}

#[test]
fn a_rotation_killed_at_random_moments_loses_nothing() -> anyhow::Result<()> {
    let n = 3_000;
    let (_dir, keys, state, rt) = store_sealed_under_a_then_add_b(n)?;
    let mut seed: u64 = 0x5eed_0fc0_ffee;
    for _ in 0..12 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = std::time::Duration::from_millis(5 + (seed >> 33) % 80);
        let mut child = rpcc(&["keys", "rotate", "--state", s(&state), "--batch", "40", "--key-file", s(&keys)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL, wherever it is (maybe inside a transaction)
        let _ = child.wait();
        rt.block_on(check_store(&state, &keys, n, "b"))?;
    }
    let out = rpcc(&["keys", "rotate", "--state", s(&state), "--batch", "40", "--key-file", s(&keys)]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rt.block_on(check_store(&state, &keys, n, "b"))?, n);
    Ok(())
}

#[test]
fn legacy_fernet_tokens_from_python_are_imported_from_a_file_and_a_legacy_database() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    assert!(rpcc(&["keys", "generate", "--key-file", s(&keys), "--id", "k1"]).output()?.status.success());
    // The legacy panel's side, made by Python's `cryptography` with a known key.
    let legacy_key = "ZmVybmV0LWxlZ2FjeS1rZXktZm9yLXRoZS10ZXN0cyE=";
    let script = r##"
import sqlite3, sys
from cryptography.fernet import Fernet
f = Fernet(sys.argv[1].encode())
with open(sys.argv[2], "w") as out:
    out.write("# record<TAB>token\n")
    out.write("notifier/ops/token\t" + f.encrypt("tg-bot:AAH-legacy".encode()).decode() + "\n")
    out.write("server/edge-9/password\t" + f.encrypt("pässwörd with spaces".encode()).decode() + "\n")
db = sqlite3.connect(sys.argv[3])
db.execute("CREATE TABLE server (id INTEGER PRIMARY KEY, name TEXT, ssh_password TEXT)")
db.execute("INSERT INTO server (name, ssh_password) VALUES (?, ?)", ("edge-1", f.encrypt(b"db-pw-1").decode()))
db.execute("INSERT INTO server (name, ssh_password) VALUES (?, ?)", ("edge-2", f.encrypt(b"db-pw-2").decode()))
db.execute("INSERT INTO server (name, ssh_password) VALUES (?, ?)", ("edge-3", None))
db.commit()
"##;
    let tokens = dir.path().join("tokens.tsv");
    let legacy_db = dir.path().join("panel.db");
    let out = Command::new(python()).arg("-c").arg(script).arg(legacy_key).arg(&tokens).arg(&legacy_db).output()?;
    assert!(out.status.success(), "python: {}", text(&out));

    let state = dir.path().join("state.db");
    let import = |key: &str| {
        rpcc(&[
            "keys",
            "import-fernet",
            "--legacy-key-env",
            "LEGACY_FERNET_KEY",
            "--tokens",
            s(&tokens),
            "--legacy-db",
            s(&legacy_db),
            "--state",
            s(&state),
            "--key-file",
            s(&keys),
        ])
        .env("LEGACY_FERNET_KEY", key)
        .output()
    };
    // The wrong legacy key: every token fails, nothing is stored.
    let out = import("d3JvbmctbGVnYWN5LWtleS1mb3ItdGhlLXRlc3RzISE=")?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was imported") && text(&out).contains("HMAC"), "{}", text(&out));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = rt.block_on(SqliteStore::open(&state))?;
    assert!(rt.block_on(store.secret_counts())?.is_empty());

    let out = import(legacy_key)?;
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8(out.stdout)?.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let ring = Keyring::from_file(&keys)?;
    let expected = [
        ("notifier/ops/token", "tg-bot:AAH-legacy"),
        ("server/edge-9/password", "pässwörd with spaces"),
        ("server/edge-1/password", "db-pw-1"),
        ("server/edge-2/password", "db-pw-2"),
    ];
    for (rec, value) in expected {
        let r = RecordId::parse(rec)?;
        let line = lines.iter().find(|l| l.starts_with(&format!("{rec}\t"))).ok_or_else(|| anyhow::anyhow!("{rec}"))?;
        let printed = line.split('\t').nth(1).unwrap_or_default();
        assert_eq!(ring.open_str(&r, printed)?.expose_secret(), value);
        let stored = rt.block_on(store.secret(&r))?.ok_or_else(|| anyhow::anyhow!("{rec} not stored"))?;
        assert_eq!(ring.open(&r, &stored)?.expose_secret(), value);
        assert!(
            !text(&Output { status: out.status, stdout: line.clone().into_bytes(), stderr: vec![] }).contains(value)
        );
    }
    Ok(())
}
