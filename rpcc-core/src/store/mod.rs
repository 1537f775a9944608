//! Where rpcc keeps what it did and what it holds, as roles: [`StateStore`]
//! (generations, deployments, the audit log, this machine's per-server locks) and
//! [`SecretStore`] (sealed secrets, envelopes only), their [`StoreError`], and
//! [`MemoryStore`], an in-memory store for tests and dry runs. `rpcc-store` implements
//! both roles on SQLite.

mod secrets;
mod state;

pub use secrets::{SecretStore, SecretSwap};
pub use state::{
    AuditAction, DeploymentRecord, DeploymentState, LocalLock, MemoryStore, NewDeployment, StateStore, StoreError,
    unix_ms,
};
