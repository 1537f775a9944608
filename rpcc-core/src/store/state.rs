//! The `StateStore` role: generations, deployments, the hash-chained audit log and
//! per-server local locks. rpcc-store implements it on SQLite; `MemoryStore` is the
//! in-process one for unit tests and dry runs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::deploy::{AuditEvent, AuditRecord, AuditVerification, verify_chain};
use crate::generation::Manifest;

/// How a deployment (or rollback, or recovery) ended. A state machine, never a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentState {
    /// Started and not finished (a crash leaves this; the next run marks it abandoned).
    Running,
    /// The server already ran this generation; nothing changed.
    NoOp,
    /// Activated, reloaded, verified, healthy, committed.
    Succeeded,
    /// nginx rejected the staged tree (`nginx -t`); the server was not touched.
    Rejected,
    /// Failed before activation (unreachable, lock held, upload failed); not touched.
    Failed,
    /// Activated, then failed (reload, health) and restored to the last good generation.
    RolledBack,
    /// Activated, failed, and the restore failed too: needs an operator.
    RestoreFailed,
    /// The control plane stopped mid-way (crash); recovered by a later run.
    Abandoned,
    /// Not attempted (the rollout stopped before this server).
    Skipped,
}

impl DeploymentState {
    /// Every state, for parsing and tests.
    pub const ALL: [DeploymentState; 9] = [
        Self::Running,
        Self::NoOp,
        Self::Succeeded,
        Self::Rejected,
        Self::Failed,
        Self::RolledBack,
        Self::RestoreFailed,
        Self::Abandoned,
        Self::Skipped,
    ];

    /// The stored name (`succeeded`, `rolled_back` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::NoOp => "no_op",
            Self::Succeeded => "succeeded",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::RestoreFailed => "restore_failed",
            Self::Abandoned => "abandoned",
            Self::Skipped => "skipped",
        }
    }

    /// Counts against a rollout's `max_failed`.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Rejected | Self::Failed | Self::RolledBack | Self::RestoreFailed | Self::Abandoned)
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt { reason: format!("unknown deployment state {s:?}") })
    }
}

/// What a deployment row or audit event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// Deploy a newly rendered generation.
    Deploy,
    /// Activate an older generation on request.
    Rollback,
    /// Restore the last committed generation left by a crashed run.
    Recover,
    /// A stale remote lock was broken.
    BreakLock,
    /// A drift check.
    Drift,
    /// A host key was recorded.
    Enroll,
    /// A secret was sealed into the store (`rpcc keys encrypt --state`).
    SecretStore,
    /// Secrets were re-sealed under the newest key.
    KeyRotate,
    /// A key was retired.
    KeyRetire,
    /// Legacy Fernet tokens were imported.
    SecretImport,
    /// A monitoring alert fired or recovered.
    Alert,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 11] = [
        Self::Deploy,
        Self::Rollback,
        Self::Recover,
        Self::BreakLock,
        Self::Drift,
        Self::Enroll,
        Self::SecretStore,
        Self::KeyRotate,
        Self::KeyRetire,
        Self::SecretImport,
        Self::Alert,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::Recover => "recover",
            Self::BreakLock => "break_lock",
            Self::Drift => "drift",
            Self::Enroll => "enroll",
            Self::SecretStore => "secret_store",
            Self::KeyRotate => "key_rotate",
            Self::KeyRetire => "key_retire",
            Self::SecretImport => "secret_import",
            Self::Alert => "alert",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt { reason: format!("unknown audit action {s:?}") })
    }
}

/// A deployment about to start.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    /// Server name.
    pub server: String,
    /// Deploy, rollback or recover.
    pub action: AuditAction,
    /// The generation being activated.
    pub generation: String,
    /// The generation the server ran before (if known).
    pub previous: Option<String>,
    /// Who (`user@host`).
    pub actor: String,
}

/// One deployment as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentRecord {
    /// Store id.
    pub id: i64,
    /// Server name.
    pub server: String,
    /// Deploy, rollback or recover.
    pub action: AuditAction,
    /// Target generation.
    pub generation: String,
    /// The generation before.
    pub previous: Option<String>,
    /// Outcome so far.
    pub state: DeploymentState,
    /// Who.
    pub actor: String,
    /// Start, Unix milliseconds.
    pub started_ms: i64,
    /// End, Unix milliseconds.
    pub finished_ms: Option<i64>,
    /// Why it ended this way.
    pub detail: String,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("state store: {reason}")]
    Backend {
        /// What failed.
        reason: String,
        /// Busy/locked/connection errors may be retried.
        retryable: bool,
    },
    /// Another rpcc process (on this machine, or another control plane on a shared
    /// state) holds the server's lock.
    #[error("server {server} is locked by another rpcc process ({holder}); waited {waited:?}")]
    LockTimeout {
        /// Server.
        server: String,
        /// Who holds it.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The audit log is keyed and this store has no key to extend it with.
    #[error(
        "the audit log is keyed under key {key_id}; configure the keyring (RPCC_KEYS, --key-file or RPCC_KEY_FILE) to append to it"
    )]
    AuditKeyRequired {
        /// The key the newest entry is sealed under.
        key_id: String,
    },
    /// Stored data does not parse.
    #[error("state store holds invalid data: {reason}")]
    Corrupt {
        /// What.
        reason: String,
    },
    /// The state belongs to another environment (`[env.<name>]`): environments never
    /// share a state.
    #[error(
        "this state belongs to environment {recorded:?}, not {wanted:?}; environments never share a state (choose the matching --env or that environment's state)"
    )]
    WrongEnvironment {
        /// The environment the state was first used for (`""`: none).
        recorded: String,
        /// The environment now asking (`""`: none).
        wanted: String,
    },
}

impl StoreError {
    /// Busy databases and lock timeouts may be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Backend { retryable, .. } => *retryable,
            Self::LockTimeout { .. } => true,
            Self::Corrupt { .. } | Self::AuditKeyRequired { .. } | Self::WrongEnvironment { .. } => false,
        }
    }
}

/// Held while a server is deployed by this process; released on drop (and by the OS
/// if the process dies).
pub struct LocalLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl LocalLock {
    /// Wrap whatever releases the lock when dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self(Box::new(guard))
    }
}

impl fmt::Debug for LocalLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalLock")
    }
}

/// Where rpcc keeps what it did: generations, deployments, audit log, local locks.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// Remember a generation's manifest (idempotent).
    async fn record_generation(&self, server: &str, manifest: &Manifest) -> Result<(), StoreError>;
    /// A recorded manifest.
    async fn generation(&self, server: &str, id: &str) -> Result<Option<Manifest>, StoreError>;
    /// Insert a `Running` deployment; returns its id.
    async fn start_deployment(&self, deployment: &NewDeployment) -> Result<i64, StoreError>;
    /// Set a deployment's final state.
    async fn finish_deployment(&self, id: i64, state: DeploymentState, detail: &str) -> Result<(), StoreError>;
    /// Mark a server's `Running` deployments (left by a crash) `Abandoned`; returns how many.
    async fn abandon_running(&self, server: &str) -> Result<u64, StoreError>;
    /// Newest first; `server = None` for all servers.
    async fn deployments(&self, server: Option<&str>, limit: u32) -> Result<Vec<DeploymentRecord>, StoreError>;
    /// The newest deployment of each of `servers` that has one (a fleet's status in one
    /// query where the backend can; the default asks per server).
    async fn last_deployments(&self, servers: &[&str]) -> Result<Vec<DeploymentRecord>, StoreError> {
        let mut out = Vec::with_capacity(servers.len());
        for s in servers {
            out.extend(self.deployments(Some(s), 1).await?);
        }
        Ok(out)
    }
    /// Append to the audit chain (keyed when the store was given an [`AuditSeal`]).
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError>;
    /// The audit log in sequence order.
    async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError>;
    /// Check the whole chain without keys (see [`crate::deploy::verify_chain_keyed`] for MACs
    /// and the checkpoint).
    async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        Ok(verify_chain(&self.audit_log().await?))
    }
    /// Take this machine's lock for `server`, waiting up to `wait`.
    async fn lock_server(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError>;
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn audit_chain_detects_edits_removals_and_reorders() {
        let store = MemoryStore::new();
        for i in 0..5 {
            let e = AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", &format!("run {i}"));
            store.append_audit(&e).await.unwrap();
        }
        let log = store.audit_log().await.unwrap();
        assert_eq!(verify_chain(&log), AuditVerification { entries: 5, unkeyed: 5, ..Default::default() });

        let mut edited = log.clone();
        edited[2].event.outcome = "rolled_back".into();
        assert_eq!(verify_chain(&edited).broken.map(|b| b.0), Some(3));

        let mut removed = log.clone();
        removed.remove(1);
        assert_eq!(verify_chain(&removed).broken.map(|b| b.0), Some(3));

        // Re-hashing an edited entry does not help: the next entry no longer chains.
        let mut rehashed = log.clone();
        rehashed[1].event.detail = "forged".into();
        rehashed[1].hash = rehashed[1].event.chain_hash(2, &rehashed[1].prev_hash);
        assert_eq!(verify_chain(&rehashed).broken.map(|b| b.0), Some(3));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in DeploymentState::ALL {
            assert_eq!(s.as_str().parse::<DeploymentState>().unwrap(), s);
        }
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), a);
        }
        assert!("done".parse::<DeploymentState>().is_err());
    }
}
