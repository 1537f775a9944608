//! Known answers, tamper cases, key sources and crash-interrupted rotation.

use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::{ExposeSecret, SecretString};

use super::rotate::{RotatePoint, rotate_store};
use super::*;
use crate::deploy::MemoryStore;

/// Key 00 01 … 1f as an `RPCC_KEYS` entry.
const KAT_KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// Computed independently with PyNaCl (libsodium) by `tests/python/envelope_reference.py
/// seal AAECAw…Hh8 k1 server/edge-1/password a0a1…af` over "correct horse battery staple".
const KAT_ENVELOPE: &str =
    "rpcc:v1:k1:-9WeeWoI9BagoaKjpKWmp6ipqqusra6vN8VOx5XMaZ2zBJE31mkkZubbuSF3Jmkp_Z2hkFSCrsGkhHzDc7nERr4YHUM";
const KAT_VALUE: &str = "correct horse battery staple";

fn record(s: &str) -> RecordId {
    RecordId::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn ring(text: &str) -> Keyring {
    Keyring::parse(text, "test").unwrap_or_else(|e| panic!("{e}"))
}

fn random_part() -> [u8; 16] {
    let mut r = [0u8; 16];
    for (i, b) in r.iter_mut().enumerate() {
        *b = 0xa0 + u8::try_from(i).unwrap_or(0);
    }
    r
}

#[test]
fn sealing_matches_the_independent_reference() {
    let ring = ring(KAT_KEYS);
    let r = record("server/edge-1/password");
    let env = ring.seal_with(&r, KAT_VALUE.as_bytes(), random_part()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.as_str(), KAT_ENVELOPE);
    let opened = ring.open_str(&r, KAT_ENVELOPE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opened.expose_secret(), KAT_VALUE);
}

#[test]
fn each_kind_of_damage_has_its_own_error() {
    let ring = ring(&format!("{KAT_KEYS}\nold:retired"));
    let r = record("server/edge-1/password");
    let payload = KAT_ENVELOPE.trim_start_matches("rpcc:v1:k1:");

    // A flipped byte inside the ciphertext.
    let mut chars: Vec<char> = KAT_ENVELOPE.chars().collect();
    let at = chars.len() - 10;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    assert!(matches!(ring.open_str(&r, &flipped), Err(KeyringError::Tampered { .. })));

    // The same envelope presented as another record's secret.
    let other = record("server/edge-2/password");
    let e = ring.open_str(&other, KAT_ENVELOPE).unwrap_err();
    assert!(matches!(e, KeyringError::WrongRecord { .. }), "{e}");
    assert!(e.to_string().contains("server/edge-2/password"));

    // Truncated payload.
    let short = format!("rpcc:v1:k1:{}", &payload[..20]);
    assert!(matches!(
        ring.open_str(&r, &short),
        Err(KeyringError::Envelope { problem: EnvelopeSyntax::Truncated(_), .. })
    ));
    // Unknown key id, retired key id, unknown version, not base64, not an envelope.
    let unknown = KAT_ENVELOPE.replace(":k1:", ":k9:");
    assert!(matches!(ring.open_str(&r, &unknown), Err(KeyringError::UnknownKey { .. })));
    let retired = KAT_ENVELOPE.replace(":k1:", ":old:");
    assert!(matches!(ring.open_str(&r, &retired), Err(KeyringError::RetiredKey { .. })));
    let v2 = KAT_ENVELOPE.replace("rpcc:v1:", "rpcc:v2:");
    assert!(matches!(
        ring.open_str(&r, &v2),
        Err(KeyringError::Envelope { problem: EnvelopeSyntax::UnknownVersion(_), .. })
    ));
    let bad64 = format!("rpcc:v1:k1:{}!!", &payload[..60]);
    assert!(matches!(
        ring.open_str(&r, &bad64),
        Err(KeyringError::Envelope { problem: EnvelopeSyntax::Malformed(_), .. })
    ));
    assert!(matches!(
        ring.open_str(&r, "hunter2"),
        Err(KeyringError::Envelope { problem: EnvelopeSyntax::NotAnEnvelope, .. })
    ));
    // Every message names the record and never contains the value.
    for text in [&flipped, &short, &unknown, &retired, &v2, &bad64] {
        let msg = ring.open_str(&r, text).unwrap_err().to_string();
        assert!(msg.contains("server/edge-1/password"), "{msg}");
        assert!(!msg.contains(KAT_VALUE), "{msg}");
    }
}

#[test]
fn newest_active_key_encrypts_and_every_listed_key_decrypts() {
    let (_, a) = Keyring::generate_entry(KeyId::parse("a").ok()).unwrap_or_else(|e| panic!("{e}"));
    let (_, b) = Keyring::generate_entry(KeyId::parse("b").ok()).unwrap_or_else(|e| panic!("{e}"));
    let old = ring(&a);
    let both = ring(&format!("{}, {}", a.as_str(), b.as_str()));
    let r = record("notifier/ops/token");
    let v = SecretString::from("t0ken");
    let sealed_old = old.seal(&r, &v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sealed_old.key_id().as_str(), "a");
    assert_eq!(both.active_id().map(KeyId::as_str), Some("b"));
    assert_eq!(both.open(&r, &sealed_old).map(|s| s.expose_secret().to_owned()).ok().as_deref(), Some("t0ken"));
    let sealed_new = both.seal(&r, &v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sealed_new.key_id().as_str(), "b");
    // Two seals of one value differ (random nonce).
    assert_ne!(both.seal(&r, &v).ok(), Some(sealed_new));
}

#[test]
fn key_lists_are_checked_without_showing_material() {
    let (_, entry) = Keyring::generate_entry(None).unwrap_or_else(|e| panic!("{e}"));
    let material = entry.split(':').nth(1).unwrap_or_default().to_owned();
    let short = format!("k1:{}", &material[..20]);
    let e = Keyring::parse(&short, "RPCC_KEYS").unwrap_err();
    assert!(matches!(e, KeyringError::MalformedKey { entry: 1, .. }), "{e}");
    assert!(!e.to_string().contains(&material[..20]));
    assert!(matches!(Keyring::parse("no-colon", "x"), Err(KeyringError::MalformedKey { .. })));
    assert!(matches!(
        Keyring::parse(&format!("{}\n{}", entry.as_str(), entry.as_str()), "x"),
        Err(KeyringError::DuplicateKeyId { .. })
    ));
    assert!(matches!(Keyring::parse("# nothing\n", "x"), Err(KeyringError::NoKeys)));
    assert!(matches!(Keyring::parse("bad:id:retired", "x"), Err(KeyringError::MalformedKey { .. })));
    let retired_only = ring("a:retired");
    assert!(matches!(retired_only.seal(&record("a/b"), &SecretString::from("x")), Err(KeyringError::NoActiveKey)));
    let debug = format!("{:?}", ring(&entry));
    assert!(!debug.contains(&material), "{debug}");
}

#[test]
fn key_files_must_be_private_and_retiring_erases_material() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("keys");
    assert!(matches!(Keyring::from_file(&path), Err(KeyringError::KeyFileMissing { .. })));
    let first = Keyring::add_to_file(&path, KeyId::parse("one").ok()).unwrap_or_else(|e| panic!("{e}"));
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    assert_eq!(mode, 0o600);
    Keyring::add_to_file(&path, KeyId::parse("two").ok()).unwrap_or_else(|e| panic!("{e}"));
    let loaded = Keyring::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.active_id().map(KeyId::as_str), Some("two"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    let e = Keyring::from_file(&path).unwrap_err();
    assert!(matches!(e, KeyringError::KeyFilePermissions { mode: 0o644, .. }), "{e}");
    assert!(e.to_string().contains("chmod 600"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));

    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let material =
        before.lines().find(|l| l.starts_with("one:")).and_then(|l| l.split(':').nth(1)).unwrap_or("").to_owned();
    assert!(!material.is_empty());
    Keyring::retire_in_file(&path, &first).unwrap_or_else(|e| panic!("{e}"));
    let after = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(after.contains("one:retired") && !after.contains(&material), "{after}");
    let loaded = Keyring::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!loaded.is_active(&first));
}

#[tokio::test]
async fn rotation_interrupted_anywhere_loses_nothing_and_a_rerun_finishes() {
    let (_, a) = Keyring::generate_entry(KeyId::parse("a").ok()).unwrap_or_else(|e| panic!("{e}"));
    let (_, b) = Keyring::generate_entry(KeyId::parse("b").ok()).unwrap_or_else(|e| panic!("{e}"));
    let old = ring(&a);
    let new = ring(&format!("{}\n{}", a.as_str(), b.as_str()));
    let store = MemoryStore::new();
    let n = 95;
    for i in 0..n {
        let r = record(&format!("server/s{i:03}/password"));
        let env = old.seal(&r, &SecretString::from(format!("pw-{i}"))).unwrap_or_else(|e| panic!("{e}"));
        store.put_secret(&r, &env).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let check = |store: MemoryStore| {
        let new = &new;
        async move {
            for i in 0..n {
                let r = record(&format!("server/s{i:03}/password"));
                let env = store.secret(&r).await.ok().flatten().unwrap_or_else(|| panic!("{r} lost"));
                let v = new.open(&r, &env).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(v.expose_secret(), format!("pw-{i}"));
            }
        }
    };
    // Stop at every point of every batch in turn (batches of 10: 10 batches).
    let mut runs = 0;
    loop {
        let calls = AtomicUsize::new(0);
        let target = runs;
        let hook = move |_p: RotatePoint| calls.fetch_add(1, Ordering::SeqCst) != target;
        runs += 1;
        match rotate_store(&new, &store, 10, Some(&hook)).await {
            Err(super::rotate::RotateError::Interrupted(_)) => check(store.clone()).await,
            Ok(report) => {
                assert!(report.failed.is_empty());
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(runs < 1000, "rotation never finished");
    }
    check(store.clone()).await;
    let counts = store.secret_counts().await.unwrap_or_default();
    assert_eq!(counts, vec![("b".to_owned(), u64::try_from(n).unwrap_or(0))]);
    // Idempotent: nothing left to do.
    let again = rotate_store(&new, &store, 10, None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.rotated, again.batches), (0, 0));
}

#[test]
fn fernet_tokens_decrypt_and_damage_is_reported() {
    // Made by Python's `cryptography` 44.0.2: Fernet(key 00…1f).encrypt(b"legacy-pw").
    const TOKEN: &str =
        "gAAAAABrBE9VlXQMc9IfPiC7rZ5Wa4y1S360tG0Yz14fl7vIzPdu-tIgDY2TVWk3YRwfGQVKAvMUK2Yev3cWlemwowVYYyw8lQ==";
    let key =
        FernetKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "$LEGACY").unwrap_or_else(|e| panic!("{e}"));
    let r = record("server/old/password");
    assert_eq!(key.decrypt(&r, TOKEN).map(|s| s.expose_secret().to_owned()).ok().as_deref(), Some("legacy-pw"));
    // A flipped byte fails the MAC; another key fails the MAC.
    let flipped = TOKEN.replacen("VlXQ", "VlXR", 1);
    let e = key.decrypt(&r, &flipped).unwrap_err().to_string();
    assert!(e.contains("HMAC") && e.contains("server/old/password"), "{e}");
    let other =
        FernetKey::parse("AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "$LEGACY").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(other.decrypt(&r, TOKEN), Err(KeyringError::Fernet { .. })));
    assert!(matches!(key.decrypt(&r, "not base64!"), Err(KeyringError::Fernet { .. })));
    assert!(matches!(key.decrypt(&r, "gAAAAA"), Err(KeyringError::Fernet { .. })));
    assert!(matches!(FernetKey::parse("short", "$LEGACY"), Err(KeyringError::LegacyKey { .. })));
}

#[test]
fn key_files_of_another_owner_are_refused_on_the_open_handle() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("keys");
    Keyring::add_to_file(&path, KeyId::parse("one").ok()).unwrap_or_else(|e| panic!("{e}"));
    let owner = std::fs::metadata(&path).map(|m| m.uid()).unwrap_or_else(|e| panic!("{e}"));
    // As root, hand the file to another uid and load it; as anyone else, check it as if
    // another (non-root) user were loading it.
    let (meta, euid) = if owner == 0 {
        std::os::unix::fs::chown(&path, Some(54_321), None).unwrap_or_else(|e| panic!("{e}"));
        let e = Keyring::from_file(&path).unwrap_err();
        assert!(matches!(e, KeyringError::KeyFileOwner { owner: 54_321, user: 0, .. }), "{e}");
        assert!(e.to_string().contains("owned by uid 54321"), "{e}");
        (std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}")), 0)
    } else {
        (std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}")), owner + 1)
    };
    let e = super::keys::check_key_file_meta(&path, &meta, Some(euid)).unwrap_err();
    assert!(matches!(e, KeyringError::KeyFileOwner { .. }), "{e}");
    // A directory or a FIFO in its place is refused before anything is read.
    let e = Keyring::from_file(dir.path()).unwrap_err();
    assert!(matches!(e, KeyringError::KeyFileNotRegular { .. }), "{e}");
}
