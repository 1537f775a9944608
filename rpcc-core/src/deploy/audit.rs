//! The audit log's chain: every entry commits to the one before it, keyed with an HMAC
//! under a keyring key that is not in the database, and the newest entry is also
//! written to a checkpoint file outside the database.
//!
//! A plain hash chain shows accidental damage, but anyone who can write the database
//! can recompute it after editing history. Keyed entries (`hmac-sha256:<key-id>:<hex>`)
//! cannot be recomputed without the key; deleting the newest entries keeps the rest
//! of the chain valid, so the checkpoint (sequence number + MAC of the newest entry,
//! next to the key file) is what shows a truncated tail. Entries written before a
//! keyring was configured stay plain SHA-256 (`unkeyed`); a plain entry *after* keyed
//! ones is a downgrade, refused on append and reported by verification.
//!
//! ```
//! use rpcc_core::deploy::{AuditAction, AuditEvent, AuditSeal, verify_chain_keyed};
//! use rpcc_core::keyring::Keyring;
//!
//! let (_, entry) = Keyring::generate_entry(None).unwrap();
//! let ring = Keyring::parse(&entry, "example").unwrap();
//! let seal = AuditSeal::new(&ring, None).unwrap();
//! let event = AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", "");
//! let first = seal.entry(&event, 1, None).unwrap();
//! let second = seal.entry(&event, 2, Some(&first.hash)).unwrap();
//! assert!(second.hash.starts_with("hmac-sha256:"));
//! assert!(verify_chain_keyed([&first, &second], Some(&ring), None).is_verified());
//!
//! // Someone with write access edits an entry and re-hashes it the plain way.
//! let mut forged = second.clone();
//! forged.event.outcome = "rolled_back".into();
//! forged.hash = forged.event.chain_hash(2, &forged.prev_hash);
//! assert!(verify_chain_keyed([&first, &forged], Some(&ring), None).broken.is_some());
//! ```
//!
//! A log rewritten *entirely* as plain entries has no keyed entry left to contradict
//! it: the checkpoint does (its hash is keyed), and `rpcc audit verify
//! --require-keyed` refuses plain entries altogether.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};

use crate::keyring::keys::KeyState;
use crate::keyring::{KeySource, Keyring, KeyringError};
use crate::store::{AuditAction, StoreError, unix_ms};

/// The hash the first audit entry chains from.
pub const AUDIT_GENESIS: &str = "rpcc-audit-genesis";

/// How keyed entry hashes start.
const KEYED_PREFIX: &str = "hmac-sha256:";

/// The environment variable naming the audit checkpoint file; without it the checkpoint
/// lives next to the key file (and nowhere when the keys come from `RPCC_KEYS`).
pub const ENV_AUDIT_CHECKPOINT: &str = "RPCC_AUDIT_CHECKPOINT";

/// An event for the audit log (the store adds sequence number and hashes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who (`user@host`).
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// Which server, if any.
    pub server: Option<String>,
    /// Which generation, if any.
    pub generation: Option<String>,
    /// Outcome (`succeeded`, `rolled_back`, `ok` …).
    pub outcome: String,
    /// Why, in words (never secrets).
    pub detail: String,
}

impl AuditEvent {
    /// An event stamped now.
    pub fn now(actor: &str, action: AuditAction, server: Option<&str>, outcome: &str, detail: &str) -> Self {
        Self {
            at_ms: unix_ms(),
            actor: actor.to_owned(),
            action,
            server: server.map(str::to_owned),
            generation: None,
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// With a generation.
    pub fn with_generation(mut self, generation: &str) -> Self {
        self.generation = Some(generation.to_owned());
        self
    }

    /// Feed the previous hash, `seq` and every field, length-prefixed, to `update`.
    fn feed(&self, seq: i64, prev: &str, mut update: impl FnMut(&[u8])) {
        let mut field = |b: &[u8]| {
            update(&(b.len() as u64).to_le_bytes());
            update(b);
        };
        field(prev.as_bytes());
        field(&seq.to_le_bytes());
        field(&self.at_ms.to_le_bytes());
        field(self.actor.as_bytes());
        field(self.action.as_str().as_bytes());
        field(self.server.as_deref().unwrap_or("\0").as_bytes());
        field(self.generation.as_deref().unwrap_or("\0").as_bytes());
        field(self.outcome.as_bytes());
        field(self.detail.as_bytes());
    }

    /// The unkeyed chained hash of this event as entry `seq` after an entry hashed
    /// `prev`: SHA-256 over the previous hash and every field, length-prefixed, hex.
    pub fn chain_hash(&self, seq: i64, prev: &str) -> String {
        let mut h = Sha256::new();
        self.feed(seq, prev, |b| h.update(b));
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// 1, 2, 3 … without gaps.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
    /// Previous entry's hash (or [`AUDIT_GENESIS`]).
    pub prev_hash: String,
    /// This entry's hash: `hmac-sha256:<key-id>:<hex>` when keyed, else SHA-256 hex.
    pub hash: String,
}

impl AuditRecord {
    /// Whether this entry is keyed (an HMAC under a keyring key).
    pub fn is_keyed(&self) -> bool {
        hash_key_id(&self.hash).is_some()
    }
}

/// The key id a keyed entry hash names (`None` for a plain SHA-256 hash).
pub fn hash_key_id(hash: &str) -> Option<&str> {
    hash.strip_prefix(KEYED_PREFIX).and_then(|rest| rest.split(':').next())
}

/// The HMAC key of the audit chain for one keyring key: derived from it (HMAC-SHA256
/// of a fixed label), so the encryption key itself never MACs anything.
fn mac_key(material: &[u8; 32]) -> Option<Hmac<Sha256>> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(material).ok()?;
    derive.update(b"rpcc audit chain v1");
    let key = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()
}

fn keyed_hash(mac: Hmac<Sha256>, key_id: &str, event: &AuditEvent, seq: i64, prev: &str) -> String {
    let mut mac = mac;
    event.feed(seq, prev, |b| mac.update(b));
    format!("{KEYED_PREFIX}{key_id}:{}", hex(&mac.finalize().into_bytes()))
}

/// What a store needs to append keyed entries: the keyring's active key (derived for
/// MACs only) and where the checkpoint of the newest entry is kept.
pub struct AuditSeal {
    key_id: String,
    material: SecretBox<[u8; 32]>,
    checkpoint: Option<PathBuf>,
}

impl std::fmt::Debug for AuditSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSeal").field("key_id", &self.key_id).field("checkpoint", &self.checkpoint).finish()
    }
}

impl AuditSeal {
    /// Seal under `keyring`'s active key, keeping the checkpoint at `checkpoint`.
    pub fn new(keyring: &Keyring, checkpoint: Option<PathBuf>) -> Result<Self, KeyringError> {
        let (id, material) = keyring.active()?;
        Ok(Self {
            key_id: id.as_str().to_owned(),
            material: SecretBox::new(Box::new(*material.expose_secret())),
            checkpoint,
        })
    }

    /// Seal under `keyring` with its default checkpoint ([`default_checkpoint`]):
    /// [`ENV_AUDIT_CHECKPOINT`] when set, else `<key file>.audit-head` next to a key
    /// file, else none.
    pub fn for_keyring(keyring: &Keyring) -> Result<Self, KeyringError> {
        Self::new(keyring, default_checkpoint(keyring))
    }

    /// The key id entries are sealed under.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The checkpoint file, when there is one.
    pub fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// Entry `seq` for `event` after `prev` (`None` for the first entry).
    pub fn entry(&self, event: &AuditEvent, seq: i64, prev: Option<&str>) -> Result<AuditRecord, StoreError> {
        let prev = prev.unwrap_or(AUDIT_GENESIS).to_owned();
        let hash = next_hash(Some(self), event, seq, &prev)?;
        Ok(AuditRecord { seq, event: event.clone(), prev_hash: prev, hash })
    }

    fn hash(&self, event: &AuditEvent, seq: i64, prev: &str) -> Result<String, StoreError> {
        let mac = mac_key(self.material.expose_secret())
            .ok_or_else(|| StoreError::Corrupt { reason: "audit key cannot key an HMAC".into() })?;
        Ok(keyed_hash(mac, &self.key_id, event, seq, prev))
    }

    /// Record `record` as the newest entry in the checkpoint file (never moving it
    /// back: with several writers the highest sequence number wins). Written to a
    /// temporary file and renamed, mode 0600, under an exclusive lock.
    pub fn advance(&self, record: &AuditRecord) -> std::io::Result<()> {
        self.write_checkpoint(record, false)
    }

    /// Record `record` as the newest entry even when the checkpoint names the same or a
    /// later one (after re-keying, the head's MAC changed).
    pub fn rewrite_checkpoint(&self, record: &AuditRecord) -> std::io::Result<()> {
        self.write_checkpoint(record, true)
    }

    fn write_checkpoint(&self, record: &AuditRecord, rewrite: bool) -> std::io::Result<()> {
        let Some(path) = &self.checkpoint else { return Ok(()) };
        let lock_path = sibling(path, ".lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        lock.lock()?;
        if !rewrite && read_checkpoint(path)?.is_some_and(|c| c.seq >= record.seq) {
            return Ok(());
        }
        let tmp = sibling(path, ".tmp");
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
            writeln!(f, "rpcc-audit-checkpoint v1 {} {}", record.seq, record.hash)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Where a keyring's audit checkpoint lives by default: [`ENV_AUDIT_CHECKPOINT`] when
/// set, else `<key file>.audit-head` next to a key file, else nowhere. Every writer
/// (`rpcc apply` and the other CLI commands, `rpcc watch`, the Python engine) and
/// `rpcc audit verify` resolve it through this one function, so under the same
/// environment they share one checkpoint.
pub fn default_checkpoint(keyring: &Keyring) -> Option<PathBuf> {
    checkpoint_for(keyring.source(), std::env::var_os(ENV_AUDIT_CHECKPOINT))
}

/// [`default_checkpoint`] for a key source and the value of [`ENV_AUDIT_CHECKPOINT`].
fn checkpoint_for(source: &KeySource, env: Option<std::ffi::OsString>) -> Option<PathBuf> {
    match (env.filter(|v| !v.is_empty()), source) {
        (Some(path), _) => Some(PathBuf::from(path)),
        (None, KeySource::File(path)) => Some(sibling(path, ".audit-head")),
        (None, _) => None,
    }
}

/// The hash of entry `seq` after `prev`: keyed under `seal` when given, else the plain
/// chain. Appending a plain entry after a keyed one is refused (a downgrade: the chain
/// would stop proving anything from there on).
pub fn next_hash(seal: Option<&AuditSeal>, event: &AuditEvent, seq: i64, prev: &str) -> Result<String, StoreError> {
    match (seal, hash_key_id(prev)) {
        (Some(seal), _) => seal.hash(event, seq, prev),
        (None, Some(key_id)) => Err(StoreError::AuditKeyRequired { key_id: key_id.to_owned() }),
        (None, None) => Ok(event.chain_hash(seq, prev)),
    }
}

/// The newest entry as recorded outside the database.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditCheckpoint {
    /// Its sequence number.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// Read a checkpoint file (`None` when it does not exist).
pub fn read_checkpoint(path: &Path) -> std::io::Result<Option<AuditCheckpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a checkpoint", path.display()));
    let mut words = text.split_whitespace();
    if (words.next(), words.next()) != (Some("rpcc-audit-checkpoint"), Some("v1")) {
        return Err(bad());
    }
    let seq = words.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let hash = words.next().ok_or_else(bad)?.to_owned();
    Ok(Some(AuditCheckpoint { seq, hash }))
}

/// Result of checking the audit chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The first broken entry and why; `None` when the chain is intact.
    pub broken: Option<(i64, String)>,
    /// Entries whose HMAC was checked.
    pub keyed: u64,
    /// Plain-hash entries (before a keyring was configured): intact, but anyone who can
    /// write the database could have recomputed them.
    pub unkeyed: u64,
    /// Keyed entries whose key is not in the keyring given (retired, or no keyring):
    /// their links were checked, their MACs could not be.
    pub unverifiable: u64,
    /// The checkpoint's sequence number, when a checkpoint was compared.
    pub checkpoint: Option<i64>,
}

impl AuditVerification {
    /// Why a chain that does not verify is not re-keyed (nothing was written).
    pub fn rekey_refusal(&self) -> StoreError {
        let (seq, why) =
            self.broken.clone().unwrap_or((0, format!("{} entries under keys not in the keyring", self.unverifiable)));
        StoreError::Corrupt { reason: format!("audit log does not verify (entry {seq}: {why}); nothing re-keyed") }
    }

    /// Intact, and every keyed entry's MAC checked.
    pub fn is_verified(&self) -> bool {
        self.broken.is_none() && self.unverifiable == 0
    }
}

/// Check a chain of records in sequence order without keys (keyed entries count as
/// unverifiable).
pub fn verify_chain<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> AuditVerification {
    verify_chain_keyed(records, None, None)
}

/// Check a chain: sequence without gaps, every link, every MAC whose key `keyring`
/// holds, no plain entry after a keyed one, and the newest entries against
/// `checkpoint` (a tail deleted or rewritten since it was written is broken).
pub fn verify_chain_keyed<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    keyring: Option<&Keyring>,
    checkpoint: Option<&AuditCheckpoint>,
) -> AuditVerification {
    let mut v = AuditVerification::default();
    let mut prev = AUDIT_GENESIS.to_owned();
    let mut seen_keyed = false;
    for (expected_seq, r) in (1..).zip(records) {
        v.entries += 1;
        let fail = |mut v: AuditVerification, why: String| {
            v.broken = Some((r.seq, why));
            v
        };
        if r.seq != expected_seq {
            return fail(v, format!("entry {expected_seq} is missing (found {} next)", r.seq));
        }
        if r.prev_hash != prev {
            return fail(v, "does not chain to the entry before it (an entry was removed or replaced)".into());
        }
        if let Some(key_id) = hash_key_id(&r.hash) {
            seen_keyed = true;
            match keyring.and_then(|k| k.entry(key_id)).map(|e| &e.state) {
                Some(KeyState::Active(material)) => {
                    let Some(mac) = mac_key(material.expose_secret()) else {
                        return fail(v, "its key cannot key an HMAC".into());
                    };
                    if keyed_hash(mac, key_id, &r.event, r.seq, &prev) != r.hash {
                        return fail(v, "its MAC does not match its contents (the entry was edited or forged)".into());
                    }
                    v.keyed += 1;
                }
                _ => v.unverifiable += 1,
            }
        } else if seen_keyed {
            return fail(v, "a plain-hash entry after keyed ones (forged, or written without the keyring)".into());
        } else if r.event.chain_hash(r.seq, &prev) != r.hash {
            return fail(v, "its contents do not match its hash (the entry was edited)".into());
        } else {
            v.unkeyed += 1;
        }
        if let Some(c) = checkpoint
            && c.seq == r.seq
        {
            if c.hash != r.hash {
                return fail(v, "differs from the checkpoint kept outside the database (history was rewritten)".into());
            }
            v.checkpoint = Some(c.seq);
        }
        prev.clone_from(&r.hash);
    }
    if let Some(c) = checkpoint
        && v.checkpoint.is_none()
    {
        let last = i64::try_from(v.entries).unwrap_or(i64::MAX);
        v.broken = Some((
            last + 1,
            format!(
                "the log ends at entry {last}, but the checkpoint outside the database names entry {} (newest entries were deleted)",
                c.seq
            ),
        ));
    }
    v
}

/// The chain re-keyed under `seal` (after a key rotation, so the old key can be
/// retired): verified first with `keyring` (every keyed MAC must check), then every
/// keyed entry's MAC recomputed under the new key, links included. Unkeyed entries
/// stay unkeyed. Returns only the entries that change; an error names the entry that
/// failed verification and nothing is to be written.
pub fn rekey_chain(
    records: &[AuditRecord],
    keyring: &Keyring,
    seal: &AuditSeal,
) -> Result<Vec<AuditRecord>, AuditVerification> {
    let v = verify_chain_keyed(records, Some(keyring), None);
    if !v.is_verified() {
        return Err(v);
    }
    let mut changed = Vec::new();
    let mut prev = AUDIT_GENESIS.to_owned();
    for r in records {
        if r.is_keyed() {
            let hash = seal
                .hash(&r.event, r.seq, &prev)
                .map_err(|e| AuditVerification { broken: Some((r.seq, e.to_string())), ..v.clone() })?;
            if hash != r.hash || prev != r.prev_hash {
                changed.push(AuditRecord { seq: r.seq, event: r.event.clone(), prev_hash: prev, hash: hash.clone() });
            }
            prev = hash;
        } else {
            prev.clone_from(&r.hash);
        }
    }
    Ok(changed)
}

/// How many entries are keyed under `key_id`.
pub fn keyed_under<'a>(records: impl IntoIterator<Item = &'a AuditRecord>, key_id: &str) -> usize {
    records.into_iter().filter(|r| hash_key_id(&r.hash) == Some(key_id)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{MemoryStore, StateStore as _};

    fn ring(entries: &[&str]) -> Keyring {
        Keyring::parse(&entries.join("\n"), "test").unwrap_or_else(|e| panic!("{e}"))
    }

    fn entry(id: &str) -> String {
        let (_, e) = Keyring::generate_entry(crate::keyring::KeyId::parse(id).ok()).unwrap_or_else(|e| panic!("{e}"));
        e.to_string()
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", &format!("run {i}"))
    }

    #[tokio::test]
    async fn plain_then_keyed_then_rekeyed_under_a_new_key() {
        let (k1, k2) = (entry("k1"), entry("k2"));
        let plain = MemoryStore::new();
        plain.append_audit(&event(0)).await.unwrap_or_else(|e| panic!("{e}"));
        // The same store, now keyed: the plain prefix stays, new entries are keyed.
        let old = ring(&[&k1]);
        let keyed = plain.clone().with_audit_seal(AuditSeal::new(&old, None).unwrap_or_else(|e| panic!("{e}")));
        for i in 1..4 {
            keyed.append_audit(&event(i)).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let log = keyed.audit_log().await.unwrap_or_else(|e| panic!("{e}"));
        let v = verify_chain_keyed(&log, Some(&old), None);
        assert_eq!((v.keyed, v.unkeyed, v.unverifiable, v.broken.clone()), (3, 1, 0, None), "{v:?}");
        // Without the key nothing keyed can be checked; a plain append is refused.
        assert_eq!(verify_chain_keyed(&log, None, None).unverifiable, 3);
        let err = plain.append_audit(&event(9)).await.unwrap_err();
        assert!(matches!(err, StoreError::AuditKeyRequired { ref key_id } if key_id == "k1"), "{err}");

        // Rotation: k2 becomes active, the chain is re-keyed, then k1 can go.
        let both = ring(&[&k1, &k2]);
        let seal = AuditSeal::new(&both, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seal.key_id(), "k2");
        let changed = rekey_chain(&log, &both, &seal).unwrap_or_else(|v| panic!("{v:?}"));
        assert_eq!(changed.len(), 3, "the keyed entries, not the plain one");
        let rekeyed: Vec<AuditRecord> =
            log.iter().map(|r| changed.iter().find(|c| c.seq == r.seq).unwrap_or(r).clone()).collect();
        assert_eq!(keyed_under(&rekeyed, "k1"), 0);
        assert_eq!(keyed_under(&rekeyed, "k2"), 3);
        let only_new = ring(&[&k2]);
        assert!(verify_chain_keyed(&rekeyed, Some(&only_new), None).is_verified());
        // A chain that does not verify is not re-keyed.
        let mut tampered = log.clone();
        tampered[2].event.outcome = "rolled_back".into();
        assert!(rekey_chain(&tampered, &both, &seal).is_err());

        // A store does the same in place, and a second run has nothing left to change.
        use crate::store::EngineStore as _;
        let rekeying = plain.with_audit_seal(seal);
        assert_eq!(rekeying.rekey_audit(&both).await.unwrap_or_else(|e| panic!("{e}")), 3);
        let stored = rekeying.audit_log().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, rekeyed);
        assert!(verify_chain_keyed(&stored, Some(&only_new), None).is_verified());
        assert_eq!(rekeying.rekey_audit(&both).await.unwrap_or_else(|e| panic!("{e}")), 0);
        // Without the old key the chain cannot be verified first: nothing is rewritten.
        let fresh = MemoryStore::new().with_audit_seal(AuditSeal::new(&old, None).unwrap_or_else(|e| panic!("{e}")));
        fresh.append_audit(&event(5)).await.unwrap_or_else(|e| panic!("{e}"));
        let before = fresh.audit_log().await.unwrap_or_else(|e| panic!("{e}"));
        let err = fresh.rekey_audit(&only_new).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }) && err.to_string().contains("nothing re-keyed"), "{err}");
        assert_eq!(fresh.audit_log().await.unwrap_or_else(|e| panic!("{e}")), before);
    }

    #[test]
    fn checkpoints_only_move_forward_and_name_the_head() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("keys.audit-head");
        let keys = ring(&[&entry("k1")]);
        let seal = AuditSeal::new(&keys, Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        let first = seal.entry(&event(0), 1, None).unwrap_or_else(|e| panic!("{e}"));
        let second = seal.entry(&event(1), 2, Some(&first.hash)).unwrap_or_else(|e| panic!("{e}"));
        seal.advance(&second).unwrap_or_else(|e| panic!("{e}"));
        seal.advance(&first).unwrap_or_else(|e| panic!("{e}")); // a slower writer: ignored
        let c = read_checkpoint(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("none"));
        assert_eq!((c.seq, c.hash.as_str()), (2, second.hash.as_str()));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o600);
        // Verified against the chain: whole, cut short, or rewritten.
        assert!(verify_chain_keyed([&first, &second], Some(&keys), Some(&c)).is_verified());
        let cut = verify_chain_keyed([&first], Some(&keys), Some(&c));
        assert!(cut.broken.is_some_and(|(_, why)| why.contains("newest entries were deleted")));
        std::fs::write(&path, "garbage").unwrap_or_else(|e| panic!("{e}"));
        assert!(read_checkpoint(&path).is_err());
    }

    #[test]
    fn one_checkpoint_for_every_writer_the_environment_first() {
        use std::path::PathBuf;
        let file = KeySource::File(PathBuf::from("/etc/rpcc/keys"));
        let env = || Some(std::ffi::OsString::from("/var/lib/rpcc-watch/audit-head"));
        assert_eq!(super::checkpoint_for(&file, None), Some(PathBuf::from("/etc/rpcc/keys.audit-head")));
        assert_eq!(super::checkpoint_for(&file, env()), Some(PathBuf::from("/var/lib/rpcc-watch/audit-head")));
        assert_eq!(
            super::checkpoint_for(&KeySource::Env, env()),
            Some(PathBuf::from("/var/lib/rpcc-watch/audit-head"))
        );
        assert_eq!(super::checkpoint_for(&KeySource::Env, Some("".into())), None);
        assert_eq!(super::checkpoint_for(&KeySource::Memory, None), None);
    }
}
