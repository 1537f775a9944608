//! The keyed audit log as an operator and as an attacker with write access to the state
//! database see it: `rpcc audit verify` catches an edited entry (even one re-hashed the
//! old way, or MAC'd under a look-alike key with the same id), deleted newest entries
//! (the checkpoint next to the key file), and a plain entry appended after keyed ones;
//! `rpcc keys rotate` re-keys the log so the old key can be retired; `rpcc audit list`
//! filters by server and time.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rpcc::core::deploy::{AuditAction, AuditEvent, AuditSeal, StateStore as _, StoreError};
use rpcc::core::keyring::Keyring;
use rpcc::store::SqliteStore;

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

/// Run SQL against the state database as an attacker would (Python's sqlite3).
fn sql(db: &Path, statement: &str, params: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2], sys.argv[3:]); c.commit()",
        ])
        .arg(db)
        .arg(statement)
        .args(params)
        .output()?;
    anyhow::ensure!(out.status.success(), "sql failed: {}", text(&out));
    Ok(())
}

struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> anyhow::Result<Self> {
        let bed = Self { dir: tempfile::tempdir()? };
        std::fs::write(
            bed.inv(),
            "[[servers]]\nname = \"edge-1\"\nhost = \"203.0.113.10\"\nuser = \"deploy\"\nauth = { agent = true }\n",
        )?;
        let out = rpcc(&["keys", "generate", "--key-file", s(&bed.keys()), "--id", "k1"]).output()?;
        anyhow::ensure!(out.status.success(), "{}", text(&out));
        Ok(bed)
    }
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
    fn inv(&self) -> std::path::PathBuf {
        self.path("inv.toml")
    }
    fn keys(&self) -> std::path::PathBuf {
        self.path("keys")
    }
    fn db(&self) -> std::path::PathBuf {
        self.path("state.db")
    }
    fn checkpoint(&self) -> std::path::PathBuf {
        self.path("keys.audit-head")
    }
    /// `rpcc audit verify` with the key file.
    fn verify(&self) -> anyhow::Result<Output> {
        Ok(rpcc(&["audit", "verify", s(&self.inv()), "--state", s(&self.db()), "--key-file", s(&self.keys())])
            .output()?)
    }
    /// Append `n` keyed entries about `server` through the store, as the engine does.
    fn append(&self, rt: &tokio::runtime::Runtime, server: &str, n: usize) -> anyhow::Result<()> {
        rt.block_on(async {
            let ring = Keyring::from_file(&self.keys())?;
            let store = SqliteStore::open(&self.db()).await?.with_audit_seal(AuditSeal::for_keyring(&ring)?);
            for i in 0..n {
                let e = AuditEvent::now("ops@cp", AuditAction::Deploy, Some(server), "succeeded", &format!("run {i}"));
                store.append_audit(&e.with_generation("abc123")).await?;
            }
            Ok(())
        })
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

#[test]
fn keyed_audit_log_detects_edits_forgeries_and_deleted_tails() -> anyhow::Result<()> {
    let bed = Bed::new()?;
    let rt = runtime()?;
    // Entries from the CLI (a sealed secret stored in the state) and from the engine's store.
    let mut enc = rpcc(&["keys", "encrypt", "--for", "server/edge-1/password", "--key-file", s(&bed.keys())]);
    enc.args(["--state", s(&bed.db())]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = enc.spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"pw")?;
    assert!(child.wait_with_output()?.status.success());
    bed.append(&rt, "edge-1", 5)?;

    let ok = bed.verify()?;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("6 entries, 6 keyed (MAC verified), 0 unkeyed"), "{}", text(&ok));
    assert!(text(&ok).contains("checkpoint: entry 6 matches"), "{}", text(&ok));
    let head = std::fs::read_to_string(bed.checkpoint())?;
    assert!(head.starts_with("rpcc-audit-checkpoint v1 6 hmac-sha256:k1:"), "{head}");

    // 1. Edit an outcome: the MAC no longer matches.
    sql(&bed.db(), "UPDATE audit_log SET outcome = 'rolled_back' WHERE seq = 3", &[])?;
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("TAMPERED: entry 3: its MAC does not match"), "{}", text(&v));
    sql(&bed.db(), "UPDATE audit_log SET outcome = 'succeeded' WHERE seq = 3", &[])?;
    assert!(bed.verify()?.status.success());

    // 2. Rewrite history with a chain MAC'd under an attacker's key that has the same id.
    let log = rt.block_on(async { SqliteStore::open(&bed.db()).await?.audit_log().await })?;
    let (_, fake_entry) = Keyring::generate_entry(Some(rpcc::core::keyring::KeyId::parse("k1").expect("id")))?;
    let fake = AuditSeal::new(&Keyring::parse(&fake_entry, "attacker")?, None)?;
    let mut prev: Option<String> = None;
    for r in &log {
        let mut event = r.event.clone();
        if r.seq == 4 {
            event.outcome = "rolled_back".into();
        }
        let forged = fake.entry(&event, r.seq, prev.as_deref())?;
        sql(
            &bed.db(),
            "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            &[&forged.event.outcome, &forged.prev_hash, &forged.hash, &r.seq.to_string()],
        )?;
        prev = Some(forged.hash);
    }
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("TAMPERED: entry 1: its MAC does not match"), "{}", text(&v));
    // Put the real chain back.
    for r in &log {
        sql(
            &bed.db(),
            "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            &[&r.event.outcome, &r.prev_hash, &r.hash, &r.seq.to_string()],
        )?;
    }
    assert!(bed.verify()?.status.success());

    // 3. Rewrite the whole log as a plain (unkeyed) chain: no keyed entry is left to
    //    contradict it, but the checkpoint is, and --require-keyed refuses it anyway.
    let mut prev = rpcc::core::deploy::AUDIT_GENESIS.to_owned();
    for r in &log {
        let hash = r.event.chain_hash(r.seq, &prev);
        sql(
            &bed.db(),
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
            &[&prev, &hash, &r.seq.to_string()],
        )?;
        prev = hash;
    }
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("entry 6: differs from the checkpoint"), "{}", text(&v));
    let strict = rpcc(&["audit", "verify", s(&bed.inv()), "--state", s(&bed.db()), "--key-file", s(&bed.keys())])
        .args(["--checkpoint", s(&bed.path("no-such-checkpoint")), "--require-keyed"])
        .output()?;
    assert_eq!(strict.status.code(), Some(3), "{}", text(&strict));
    assert!(text(&strict).contains("6 plain-hash entries (--require-keyed)"), "{}", text(&strict));
    for r in &log {
        sql(
            &bed.db(),
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
            &[&r.prev_hash, &r.hash, &r.seq.to_string()],
        )?;
    }
    assert!(bed.verify()?.status.success());

    // 4. Delete the newest two entries: the chain left is valid, the checkpoint is not.
    sql(&bed.db(), "DELETE FROM audit_log WHERE seq > 4", &[])?;
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("checkpoint outside the database names entry 6"), "{}", text(&v));
    // …and deleting the checkpoint too is noticed.
    std::fs::remove_file(bed.checkpoint())?;
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("checkpoint") && text(&v).contains("missing"), "{}", text(&v));
    assert!(
        text(&v).contains("truncating the tail of the log") && text(&v).contains("--no-checkpoint"),
        "{}",
        text(&v)
    );
    // Only `--no-checkpoint` accepts that (and says what it cannot see).
    let v = rpcc(&[
        "audit",
        "verify",
        s(&bed.inv()),
        "--state",
        s(&bed.db()),
        "--key-file",
        s(&bed.keys()),
        "--no-checkpoint",
    ])
    .output()?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("without a checkpoint (--no-checkpoint)"), "{}", text(&v));
    // Keys from RPCC_KEYS and no RPCC_AUDIT_CHECKPOINT: no checkpoint anywhere, refused too.
    let keys_text = std::fs::read_to_string(bed.keys())?;
    let v = rpcc(&["audit", "verify", s(&bed.inv()), "--state", s(&bed.db())])
        .env("RPCC_KEYS", keys_text.trim())
        .output()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("no checkpoint") && text(&v).contains("RPCC_AUDIT_CHECKPOINT"), "{}", text(&v));

    // 5. Without the keyring nothing keyed can be checked: not verified, exit 3.
    let v = rpcc(&["audit", "verify", s(&bed.inv()), "--state", s(&bed.db())]).output()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("NOT VERIFIED: 4 keyed entries"), "{}", text(&v));
    Ok(())
}

#[test]
fn a_plain_entry_after_keyed_ones_is_refused_and_detected() -> anyhow::Result<()> {
    let bed = Bed::new()?;
    let rt = runtime()?;
    bed.append(&rt, "edge-1", 2)?;
    // A store without the keyring cannot extend a keyed chain.
    let err = rt
        .block_on(async {
            let store = SqliteStore::open(&bed.db()).await?;
            store.append_audit(&AuditEvent::now("x@y", AuditAction::Deploy, None, "ok", "")).await
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::AuditKeyRequired { ref key_id } if key_id == "k1"), "{err}");
    assert!(err.to_string().contains("RPCC_KEYS"), "{err}");
    // Written straight into the database, a plain entry is reported.
    let log = rt.block_on(async { SqliteStore::open(&bed.db()).await?.audit_log().await })?;
    let last = log.last().expect("entries");
    let event = AuditEvent::now("x@y", AuditAction::Deploy, None, "ok", "");
    let hash = event.chain_hash(3, &last.hash);
    sql(
        &bed.db(),
        "INSERT INTO audit_log (seq, at_ms, actor, action, server, generation, outcome, detail, prev_hash, hash) \
         VALUES (3, ?, 'x@y', 'deploy', NULL, NULL, 'ok', '', ?, ?)",
        &[&event.at_ms.to_string(), &last.hash, &hash],
    )?;
    let v = bed.verify()?;
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(text(&v).contains("entry 3: a plain-hash entry after keyed ones"), "{}", text(&v));
    Ok(())
}

#[test]
fn rotation_rekeys_the_log_so_the_old_key_can_be_retired() -> anyhow::Result<()> {
    let bed = Bed::new()?;
    let rt = runtime()?;
    bed.append(&rt, "edge-1", 3)?;
    let out = rpcc(&["keys", "generate", "--key-file", s(&bed.keys()), "--id", "k2"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    let retire =
        |id: &str| rpcc(&["keys", "retire", id, "--key-file", s(&bed.keys()), "--state", s(&bed.db())]).output();
    let refused = retire("k1")?;
    assert!(!refused.status.success());
    assert!(text(&refused).contains("still keys 3 audit entr"), "{}", text(&refused));

    let rotate = rpcc(&["keys", "rotate", "--key-file", s(&bed.keys()), "--state", s(&bed.db())]).output()?;
    assert!(rotate.status.success(), "{}", text(&rotate));
    // The rotation's own entry is keyed under k2; the three before were re-keyed.
    assert!(text(&rotate).contains("3 audit entr(ies) re-keyed under k2"), "{}", text(&rotate));
    let retired = retire("k1")?;
    assert!(retired.status.success(), "{}", text(&retired));
    let v = bed.verify()?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("5 entries, 5 keyed"), "{}", text(&v));
    Ok(())
}

#[test]
fn audit_list_filters_by_server_and_time() -> anyhow::Result<()> {
    let bed = Bed::new()?;
    let rt = runtime()?;
    bed.append(&rt, "edge-1", 2)?;
    bed.append(&rt, "edge-2", 1)?;
    let (inv, db) = (bed.inv(), bed.db());
    let list = |extra: &[&str]| -> anyhow::Result<Output> {
        let mut args = vec!["audit", "list", s(&inv), "--state", s(&db)];
        args.extend_from_slice(extra);
        Ok(rpcc(&args).output()?)
    };
    let all = list(&[])?;
    assert!(all.status.success(), "{}", text(&all));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().filter(|l| l.contains("deploy")).count(), 3);

    let json = list(&["--server", "edge-2", "--json"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout)?;
    assert_eq!(rows.len(), 1, "{}", text(&json));
    assert_eq!(rows[0]["event"]["server"], "edge-2");
    assert_eq!(rows[0]["seq"], 3);
    assert!(rows[0]["hash"].as_str().is_some_and(|h| h.starts_with("hmac-sha256:k1:")));

    let recent = list(&["--since", "1h", "--json"])?;
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&recent.stdout)?.len(), 3);
    let future = list(&["--since", "2999-01-01", "--json"])?;
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&future.stdout)?.len(), 0);
    let bad = list(&["--since", "yesterday"])?;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("--since \"yesterday\""), "{}", text(&bad));
    Ok(())
}

#[test]
fn changes_are_refused_without_the_key_of_a_keyed_log() -> anyhow::Result<()> {
    let bed = Bed::new()?;
    let rt = runtime()?;
    bed.append(&rt, "edge-1", 1)?;
    // A loopback server on a closed port: nothing may be contacted before the refusal.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::fs::write(
        bed.inv(),
        format!(
            "[[servers]]\nname = \"edge-1\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"deploy\"\n\
             host_key = \"ssh-ed25519 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\nauth = {{ agent = true }}\n\
             [[groups]]\nname = \"g\"\nservers = [\"edge-1\"]\n\
             [[sites]]\ndomain = \"a.example.com\"\ngroup = \"g\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\ntls = {{ mode = \"off\" }}\n"
        ),
    )?;
    let out = rpcc(&["apply", s(&bed.inv()), "--state", s(&bed.db()), "--yes"]).output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the audit log is keyed under key k1"), "{}", text(&out));
    let log = rt.block_on(async { SqliteStore::open(&bed.db()).await?.audit_log().await })?;
    assert_eq!(log.len(), 1, "nothing was appended");
    // Read-only commands still work without the key.
    let list = rpcc(&["audit", "list", s(&bed.inv()), "--state", s(&bed.db())]).output()?;
    assert!(list.status.success(), "{}", text(&list));
    Ok(())
}
