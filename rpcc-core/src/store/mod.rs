//! Where rpcc keeps what it did and what it holds, as roles: [`StateStore`]
//! (generations, deployments, the audit log, this machine's per-server locks) and
//! [`SecretStore`] (sealed secrets, envelopes only), their [`StoreError`], and
//! [`MemoryStore`], an in-memory store for tests and dry runs. `rpcc-store` implements
//! both roles on SQLite.

mod memory;
mod secrets;
mod state;

pub use memory::MemoryStore;

pub use secrets::{SecretStore, SecretSwap};
pub use state::{
    AuditAction, DeploymentRecord, DeploymentState, LocalLock, NewDeployment, StateStore, StoreError, unix_ms,
};

/// Everything an engine keeps in one place: deploy state and the audit log, sealed
/// secrets (ACME accounts, imported passwords) and certificates. `rpcc-store`'s SQLite
/// store implements it; another backend implements the three roles and this.
#[async_trait::async_trait]
pub trait EngineStore: StateStore + SecretStore + crate::certs::CertificateStore + std::fmt::Debug {
    /// Where it lives, for messages (a file path, a URL without credentials).
    fn location(&self) -> String;

    /// Whether new audit entries are keyed (HMAC under the keyring).
    fn audit_keyed(&self) -> bool;

    /// Re-key the audit chain under this store's seal (after a key rotation, so the old
    /// key can be retired): the whole chain is verified with `keyring` first, then every
    /// keyed entry's MAC and link is rewritten at once, serialized with appends, and the
    /// checkpoint moves to the new head. Returns how many entries changed; `Ok(0)` for
    /// a store without a seal. A chain that does not verify is left as it is
    /// ([`StoreError::Corrupt`]).
    async fn rekey_audit(&self, keyring: &crate::keyring::Keyring) -> Result<u64, StoreError>;

    /// The last audit entry's sequence number and hash (`None`: empty log).
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self.audit_log().await?.last().map(|r| (r.seq, r.hash.clone())))
    }
}
