//! Keyring benchmark, side by side in one run (`cargo bench --bench keyring`):
//!
//! - seal + open of one secret (XChaCha20-Poly1305 envelope) per second, against the
//!   legacy panel's Fernet encrypt + decrypt in Python `cryptography`;
//! - rotation of 10,000 secrets stored in SQLite to a new key (batches of 500, each
//!   verified before its transaction commits), against `MultiFernet.rotate` over the same
//!   number of rows in SQLite with the same batching. Target: ≤ 5 s.
//!
//! - appending to the audit log in SQLite, plain (SHA-256 chain) against keyed (HMAC
//!   under the keyring, plus the checkpoint file written, synced and renamed per entry),
//!   interleaved in one run.
//!
//! `RPCC_BENCH_QUICK=1` runs fewer repetitions.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use rpcc::core::deploy::{AuditAction, AuditEvent, AuditSeal, StateStore as _};
use rpcc::core::keyring::rotate::rotate_store;
use rpcc::core::keyring::{KeyId, Keyring, RecordId, SecretStore as _};
use rpcc::store::SqliteStore;
use secrecy::{ExposeSecret as _, SecretString};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn python() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/rpcc-tools/bin/python");
    let ok = Command::new(&p).args(["-c", "import cryptography"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

fn peer(py: &PathBuf, args: &[&str]) -> f64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/keyring.py");
    let out = Command::new(py).arg(script).args(args).output().expect("python peer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("seconds")
}

fn main() {
    let quick = std::env::var_os("RPCC_BENCH_QUICK").is_some();
    let runs = if quick { 3 } else { 7 };
    let py = python();
    if py.is_none() {
        println!("(Python cryptography not found in ~/.cache/rpcc-tools: peers skipped; run scripts/setup-host)");
    }

    // 1. seal + open throughput.
    let n = 50_000;
    let (_, a) = Keyring::generate_entry(KeyId::parse("a").ok()).unwrap();
    let (_, b) = Keyring::generate_entry(KeyId::parse("b").ok()).unwrap();
    let ring = Keyring::parse(&a, "bench").unwrap();
    let record = RecordId::parse("server/edge-1/password").unwrap();
    let value = SecretString::from("correct horse battery staple");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..n {
            let e = ring.seal(&record, &value).unwrap();
            let v = ring.open(&record, &e).unwrap();
            assert_eq!(v.expose_secret().len(), 28);
        }
        ours.push(start.elapsed().as_secs_f64());
        if let Some(py) = &py {
            theirs.push(peer(py, &["ops", &n.to_string()]));
        }
    }
    let ours_ops = f64::from(n) / median(ours);
    print!("seal+open: rpcc {ours_ops:>10.0} pairs/s");
    if !theirs.is_empty() {
        let their_ops = f64::from(n) / median(theirs);
        print!("   Python Fernet {their_ops:>10.0} pairs/s   ratio {:.1}x", ours_ops / their_ops);
    }
    println!();

    // 2. rotation of 10,000 secrets in SQLite.
    let count = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let old = Keyring::parse(&a, "bench").unwrap();
    let both = Keyring::parse(&format!("{}\n{}", a.as_str(), b.as_str()), "bench").unwrap();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs.min(5) {
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(SqliteStore::open(&dir.path().join("state.db"))).unwrap();
        let items: Vec<_> = (0..count)
            .map(|i| {
                let r = RecordId::parse(&format!("server/s{i:05}/password")).unwrap();
                let e = old.seal(&r, &SecretString::from(format!("value-{i}"))).unwrap();
                (r, e)
            })
            .collect();
        rt.block_on(store.put_secrets(&items)).unwrap();
        let start = Instant::now();
        let report = rt.block_on(rotate_store(&both, &store, 500, None)).unwrap();
        ours.push(start.elapsed().as_secs_f64());
        assert_eq!((report.rotated, report.batches), (count, 20));
        if let Some(py) = &py {
            theirs.push(peer(py, &["rotate", &count.to_string(), "500"]));
        }
    }
    let ours = median(ours);
    print!("rotate {count} in SQLite: rpcc {ours:>7.3} s (target <= 5 s)");
    if !theirs.is_empty() {
        let theirs = median(theirs);
        print!("   Python MultiFernet {theirs:>7.3} s   ratio {:.1}x", theirs / ours);
    }
    println!();

    // 3. audit appends, plain vs keyed (interleaved pairs).
    let appends = 1_000;
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys");
    Keyring::add_to_file(&key_file, None).unwrap();
    let file_ring = Keyring::from_file(&key_file).unwrap();
    let (mut plain, mut keyed) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(5) {
        for sealed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = rt.block_on(SqliteStore::open(&dir.path().join("state.db"))).unwrap();
            if sealed {
                store = store.with_audit_seal(AuditSeal::for_keyring(&file_ring).unwrap());
            }
            let start = Instant::now();
            for i in 0..appends {
                let e = AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", &i.to_string());
                rt.block_on(store.append_audit(&e)).unwrap();
            }
            let each = start.elapsed().as_secs_f64() / f64::from(appends) * 1e6;
            if sealed { keyed.push(each) } else { plain.push(each) }
        }
    }
    let (plain, keyed) = (median(plain), median(keyed));
    println!(
        "audit append in SQLite: plain {plain:>6.0} µs   keyed + checkpoint {keyed:>6.0} µs   ratio {:.2}x",
        keyed / plain
    );
}
