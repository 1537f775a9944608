//! `rpcc keys rotate`: re-seal every secret under the newest key, in resumable,
//! idempotent batches that verify before they commit.
//!
//! Crash safety comes from two facts: every batch is one store transaction (or one atomic
//! file rename), and the old key stays in the keyring until `retire`, so at any instant
//! every secret is sealed by *some* listed key. A rerun selects what is still under an
//! older key and finishes the job.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::{Envelope, Keyring, KeyringError, RecordId, Secret, SecretStore, SecretSwap};
use crate::deploy::StoreError;
use crate::model::{Inventory, LoadOptions};

/// Where a rotation can be interrupted (for crash-injection tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotatePoint {
    /// A batch was read; nothing re-sealed yet.
    BatchLoaded {
        /// 1-based batch number in this run.
        batch: usize,
    },
    /// Half of the batch is re-sealed in memory.
    MidBatch {
        /// 1-based batch number in this run.
        batch: usize,
    },
    /// The batch is re-sealed and verified; the transaction is about to run.
    BeforeCommit {
        /// 1-based batch number in this run.
        batch: usize,
    },
    /// The batch is committed.
    AfterCommit {
        /// 1-based batch number in this run.
        batch: usize,
    },
    /// An inventory file's replacement is written and synced, not yet renamed.
    BeforeRename,
}

/// Called at every [`RotatePoint`]; returning `false` stops the rotation there as if the
/// process had died ([`RotateError::Interrupted`]).
pub type RotateHook<'a> = &'a (dyn Fn(RotatePoint) -> bool + Send + Sync);

/// Errors of a rotation run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// A keyring or file problem.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An inventory file could not be read or validated.
    #[error("{}: {message}", path.display())]
    Inventory {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The hook stopped the run.
    #[error("rotation interrupted at {0:?}")]
    Interrupted(RotatePoint),
}

impl RotateError {
    /// Whether rerunning may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Keyring(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Interrupted(_) => true,
            Self::Inventory { .. } => false,
        }
    }
}

/// What a store rotation did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StoreRotation {
    /// Secrets re-sealed under the active key.
    pub rotated: usize,
    /// Batches committed.
    pub batches: usize,
    /// Swaps skipped because the record changed during the run.
    pub conflicts: usize,
    /// Secrets that could not be opened (left untouched): record and reason.
    pub failed: Vec<(String, String)>,
}

/// Re-seal every stored secret that is not under the keyring's active key.
pub async fn rotate_store(
    keyring: &Keyring,
    store: &dyn SecretStore,
    batch_size: usize,
    hook: Option<RotateHook<'_>>,
) -> Result<StoreRotation, RotateError> {
    let active = keyring.active_id().ok_or(KeyringError::NoActiveKey)?.clone();
    let batch_size = batch_size.max(1);
    let stop = |p: RotatePoint| -> Result<(), RotateError> {
        match hook {
            Some(h) if !h(p) => Err(RotateError::Interrupted(p)),
            _ => Ok(()),
        }
    };
    let mut report = StoreRotation::default();
    let mut after: Option<RecordId> = None;
    loop {
        let batch = store.secrets_not_under(&active, after.as_ref(), batch_size).await?;
        let Some((last, _)) = batch.last() else { break };
        after = Some(last.clone());
        let number = report.batches + 1;
        stop(RotatePoint::BatchLoaded { batch: number })?;
        let mut swaps = Vec::with_capacity(batch.len());
        for (i, (record, old)) in batch.into_iter().enumerate() {
            if i == batch_size / 2 {
                stop(RotatePoint::MidBatch { batch: number })?;
            }
            match reseal(keyring, &record, &old) {
                Ok(new) => swaps.push(SecretSwap { record, old, new }),
                Err(e) => report.failed.push((record.to_string(), e.to_string())),
            }
        }
        stop(RotatePoint::BeforeCommit { batch: number })?;
        let applied = store.replace_secrets(&swaps).await?;
        report.rotated += applied;
        report.conflicts += swaps.len() - applied;
        report.batches += 1;
        tracing::debug!(batch = number, applied, "rotation batch committed");
        stop(RotatePoint::AfterCommit { batch: number })?;
    }
    Ok(report)
}

/// Open `old` and seal the value under the active key, then check the new envelope opens
/// to the same value.
pub fn reseal(keyring: &Keyring, record: &RecordId, old: &Envelope) -> Result<Envelope, KeyringError> {
    let value = keyring.open(record, old)?;
    let new = keyring.seal(record, &value)?;
    let check = keyring.open(record, &new)?;
    if check.expose_secret() != value.expose_secret() {
        return Err(KeyringError::Tampered { record: record.to_string(), key_id: new.key_id().to_string() });
    }
    Ok(new)
}

/// What rotating one inventory file did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileRotation {
    /// The file.
    pub path: PathBuf,
    /// Secrets re-sealed.
    pub rotated: usize,
    /// Plain-text secrets left as they are (seal them with `rpcc keys encrypt`).
    pub plaintext: usize,
    /// Rotating one environment: sealed secrets of servers outside its `[env.*]` tables
    /// (shared by every environment) left as they are.
    pub shared: usize,
}

/// Re-seal every envelope in an inventory file under the active key. The new text is
/// parsed and every secret opened and compared with its old value before the file is
/// replaced by an atomic rename (mode kept); nothing is written when any check fails.
///
/// An inventory with environments is rotated one environment at a time (`environment`,
/// with that environment's keyring): only the secrets of the servers in its own
/// `[[env.<name>.servers]]` move to the new key. Base servers' secrets are shared by
/// every environment and are left as they are (counted in [`FileRotation::shared`]);
/// other environments' secrets are never read.
pub fn rotate_inventory_file(
    keyring: &Keyring,
    path: &Path,
    environment: Option<&str>,
    hook: Option<RotateHook<'_>>,
) -> Result<FileRotation, RotateError> {
    let inv_err = |message: String| RotateError::Inventory { path: path.to_path_buf(), message };
    let io = |source| KeyringError::Io { path: path.to_path_buf(), source };
    let original = std::fs::read_to_string(path).map_err(io)?;
    let options = LoadOptions::allow_plaintext(true).with_environment(environment);
    let inv = Inventory::from_toml_str_with(&original, &options).map_err(|e| inv_err(e.to_string()))?;
    let own = environment.map(|env| environment_servers(&original, env));
    let active = keyring.active_id().ok_or(KeyringError::NoActiveKey)?.clone();
    let mut text = original.clone();
    let mut rotated = 0;
    let mut plaintext = 0;
    let mut shared = 0;
    for secret in inv.secrets() {
        let Some(old) = secret.envelope() else {
            plaintext += 1;
            continue;
        };
        if old.key_id() == &active {
            continue;
        }
        if let Some(own) = &own
            && !server_of(secret.record()).is_some_and(|server| own.contains(server))
        {
            shared += 1;
            continue;
        }
        let new = reseal(keyring, secret.record(), old)?;
        if text.matches(old.as_str()).count() != 1 {
            return Err(inv_err(format!(
                "the envelope of {} appears more than once; each record needs its own envelope",
                secret.record()
            )));
        }
        text = text.replacen(old.as_str(), new.as_str(), 1);
        rotated += 1;
    }
    if rotated == 0 {
        return Ok(FileRotation { path: path.to_path_buf(), rotated, plaintext, shared });
    }
    verify_same_secrets(keyring, &inv, &text, &options).map_err(inv_err)?;
    if std::fs::read_to_string(path).map_err(io)? != original {
        return Err(KeyringError::Conflict { what: path.display().to_string() }.into());
    }
    let mode = file_mode(path).map_err(io)?;
    super::write_atomically_with(path, text.as_bytes(), mode, || match hook {
        Some(h) if !h(RotatePoint::BeforeRename) => Err(RotateError::Interrupted(RotatePoint::BeforeRename)),
        _ => Ok(()),
    })?;
    Ok(FileRotation { path: path.to_path_buf(), rotated, plaintext, shared })
}

/// The names of the servers an inventory defines in `[[env.<environment>.servers]]`
/// (the text has passed the loader).
fn environment_servers(text: &str, environment: &str) -> std::collections::BTreeSet<String> {
    let Ok(root) = toml::from_str::<toml::Table>(text) else { return Default::default() };
    let servers =
        root.get("env").and_then(|e| e.get(environment)).and_then(|e| e.get("servers")).and_then(toml::Value::as_array);
    servers
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(toml::Value::as_str).map(str::to_owned))
        .collect()
}

/// The server a `server/<name>/<field>` record belongs to.
fn server_of(record: &RecordId) -> Option<&str> {
    let mut parts = record.as_str().splitn(3, '/');
    (parts.next() == Some("server")).then(|| parts.next()).flatten()
}

fn verify_same_secrets(keyring: &Keyring, before: &Inventory, text: &str, options: &LoadOptions) -> Result<(), String> {
    let after =
        Inventory::from_toml_str_with(text, options).map_err(|e| format!("rewritten file does not load: {e}"))?;
    let old: Vec<&Secret> = before.secrets();
    let new: Vec<&Secret> = after.secrets();
    if old.len() != new.len() {
        return Err("rewritten file has a different number of secrets".into());
    }
    for (o, n) in old.iter().zip(&new) {
        if o.record() != n.record() {
            return Err(format!("rewritten file moved secret {}", o.record()));
        }
        let a = o.open(Some(keyring)).map_err(|e| e.to_string())?;
        let b = n.open(Some(keyring)).map_err(|e| e.to_string())?;
        if a.expose_secret() != b.expose_secret() {
            return Err(format!("secret {} would change value", o.record()));
        }
    }
    Ok(())
}

fn file_mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// Every place a key still seals something: inventory secrets (`file: record`; of
/// `environment` and the base, for inventories with environments) and store records
/// (`store: record`), at most `limit` store records listed.
pub async fn key_usage(
    key: &super::KeyId,
    inventories: &[PathBuf],
    environment: Option<&str>,
    store: Option<&dyn SecretStore>,
    limit: usize,
) -> Result<Vec<String>, RotateError> {
    let mut places = Vec::new();
    let options = LoadOptions::allow_plaintext(true).with_environment(environment);
    for path in inventories {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io { path: path.clone(), source })?;
        let inv = Inventory::from_toml_str_with(&text, &options)
            .map_err(|e| RotateError::Inventory { path: path.clone(), message: e.to_string() })?;
        for s in inv.secrets() {
            if s.envelope().is_some_and(|e| e.key_id() == key) {
                places.push(format!("{}: {}", path.display(), s.record()));
            }
        }
    }
    if let Some(store) = store {
        for record in store.secrets_under(key, limit).await? {
            places.push(format!("store: {record}"));
        }
    }
    Ok(places)
}
