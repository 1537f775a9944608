//! The deploy engine: per-server protocol, fleet rollout, plan, drift, status, and the
//! `StateStore` and `HealthProbe` roles it records into and checks with.
//!
//! Per server, with a constant number of round trips whatever the number of sites:
//!
//! 1. **inspect** — what the server runs; the same generation → no-op;
//! 2. **lock** — this machine's lock (another `rpcc apply` waits), then the server's
//!    lock (holder, expiry; a stale lock is broken and audited; half-staged trees of a
//!    crashed run are removed);
//! 3. **recover** — a crashed run left `current` on an unverified generation: restore
//!    the committed one first;
//! 4. **stage** — one tar stream into `generations/.staging-<id>`, unchanged files
//!    hard-linked from the live generation, every hash verified, renamed into place;
//! 5. **validate** — `nginx -t` on the staged tree, as nginx will load it;
//! 6. **activate** — flip `current` by rename, signal nginx, wait for new workers
//!    (nginx silently keeps the old config when a reload fails; an `[emerg]` in the
//!    error log since the signal fails the step with nginx's message);
//! 7. **probe** — every site answers on the server with its `Host`;
//! 8. **commit** — record the generation as good, prune to the last N, unlock.
//!
//! A failure after the flip restores the last committed generation through the same
//! verified activation. A crash at any point leaves `current` on a complete tree (old
//! or new); the next run restores the committed one if they differ.
//!
//! ```
//! use std::sync::Arc;
//! use rpcc_core::deploy::{Deployer, MemoryStore, RolloutPolicy};
//! let deployer = Deployer::new(Arc::new(MemoryStore::new()), "ops@cp-1");
//! assert_eq!(deployer.options().keep, 5);
//! assert_eq!(RolloutPolicy::default().waves(3), vec![vec![0, 1, 2]]);
//! ```

mod audit;
mod engine;
mod holder;
mod ops;
mod probe;
pub mod remote;
mod rollout;
mod run;
mod signing;

pub use audit::{
    AUDIT_GENESIS, AuditCheckpoint, AuditEvent, AuditRecord, AuditSeal, AuditVerification, ENV_AUDIT_CHECKPOINT,
    default_checkpoint, hash_key_id, keyed_under, next_hash, read_checkpoint, rekey_chain, verify_chain,
    verify_chain_keyed,
};
pub use engine::{
    DeployError, DeployOptions, DeploySource, DeployStep, Deployer, HookDecision, ProgressEvent, ProgressFn,
    ServerReport, StepHook, StepTiming,
};
pub use holder::local_actor;
pub use ops::{
    ChangeKind, DriftReport, DriftState, FileChange, ServerPlan, ServerStatus, drift, last_good, plan,
    previous_generation, status, status_with_last,
};
pub use probe::{HealthProbe, ProbeError};
pub use rollout::{FleetReport, FleetTarget, RolloutOverrides, RolloutPolicy};
pub use signing::{ArchiveSigner, SigningKeyError};
// The store roles live in `crate::store`; the deploy engine's users find them here too.
pub use crate::store::{
    AuditAction, DeploymentRecord, DeploymentState, LocalLock, MemoryStore, NewDeployment, StateStore, StoreError,
    unix_ms,
};
