//! The per-server deploy's public face: [`Deployer`] (its collaborators and options),
//! the steps, hooks and progress events, errors and the [`ServerReport`]. The step
//! sequence itself (inspect → lock → recover → stage → validate → activate → probe →
//! commit, restoring the last good generation on any failure after activation) is in
//! `run.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::holder::holder_name;
use super::probe::HealthProbe;
use super::run::Run;
use crate::generation::Generation;
use crate::model::{Server, Site};
use crate::store::{AuditAction, DeploymentState, StateStore, StoreError};
use crate::transport::{Transport, TransportError};

/// Tunables of a deploy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeployOptions {
    /// Generations kept on each server (at least 2: the live one and one to roll back to).
    pub keep: u32,
    /// Remote lock lifetime; renewed at each step. A lock older than this is stale.
    pub lock_ttl: Duration,
    /// How long to wait for this machine's lock on a server (another `rpcc apply`).
    pub local_lock_wait: Duration,
    /// How long nginx may take to start new workers after the reload signal.
    pub reload_timeout: Duration,
    /// Bound on staging and `nginx -t` (large trees take seconds).
    pub command_timeout: Duration,
    /// Attempts per site for the health probe.
    pub health_attempts: u32,
    /// Pause between probe attempts.
    pub health_retry_delay: Duration,
    /// Sites probed at once per server.
    pub health_concurrency: usize,
    /// Hard-link files unchanged since the live generation instead of uploading them.
    pub link_unchanged: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            keep: 5,
            lock_ttl: Duration::from_secs(600),
            local_lock_wait: Duration::from_secs(600),
            reload_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(300),
            health_attempts: 3,
            health_retry_delay: Duration::from_millis(300),
            health_concurrency: 16,
            link_unchanged: true,
        }
    }
}

impl DeployOptions {
    /// Keep `n` generations (values below 2 become 2).
    pub fn keep(mut self, n: u32) -> Self {
        self.keep = n.max(2);
        self
    }

    /// Set the reload verification bound.
    pub fn reload_timeout(mut self, d: Duration) -> Self {
        self.reload_timeout = d;
        self
    }

    /// Set the remote lock lifetime.
    pub fn lock_ttl(mut self, d: Duration) -> Self {
        self.lock_ttl = d;
        self
    }

    /// Set the local lock wait.
    pub fn local_lock_wait(mut self, d: Duration) -> Self {
        self.local_lock_wait = d;
        self
    }

    /// Bound each remote command (staging and `nginx -t` of large trees take seconds).
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = d;
        self
    }

    /// Probe attempts per site and the pause between them.
    pub fn health_attempts(mut self, attempts: u32, delay: Duration) -> Self {
        self.health_attempts = attempts.max(1);
        self.health_retry_delay = delay;
        self
    }

    /// Upload every file, linking nothing.
    pub fn link_unchanged(mut self, on: bool) -> Self {
        self.link_unchanged = on;
        self
    }
}

/// The steps of a deploy, in order (hooks and progress events name them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployStep {
    /// Read the server's managed state.
    Inspect,
    /// Take this machine's lock for the server.
    LocalLock,
    /// Take the server's lock (cleans half-staged trees).
    Lock,
    /// Restore the committed generation left by a crashed run.
    Recover,
    /// Upload the generation into a staging directory and move it into place.
    Stage,
    /// Verify hashes and run `nginx -t` on the staged tree.
    Validate,
    /// Flip `current`, reload, verify new workers.
    Activate,
    /// Probe the sites.
    Probe,
    /// Record as good, prune, unlock.
    Commit,
    /// Put the last good generation back after a failure.
    Restore,
}

impl DeployStep {
    /// Every step, in order.
    pub const ALL: [DeployStep; 10] = [
        Self::Inspect,
        Self::LocalLock,
        Self::Lock,
        Self::Recover,
        Self::Stage,
        Self::Validate,
        Self::Activate,
        Self::Probe,
        Self::Commit,
        Self::Restore,
    ];
}

impl fmt::Display for DeployStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json_name(self);
        f.write_str(s)
    }
}

fn serde_json_name(step: &DeployStep) -> &'static str {
    match step {
        DeployStep::Inspect => "inspect",
        DeployStep::LocalLock => "local_lock",
        DeployStep::Lock => "lock",
        DeployStep::Recover => "recover",
        DeployStep::Stage => "stage",
        DeployStep::Validate => "validate",
        DeployStep::Activate => "activate",
        DeployStep::Probe => "probe",
        DeployStep::Commit => "commit",
        DeployStep::Restore => "restore",
    }
}

/// Called before every step; returning [`HookDecision::Crash`] stops the engine on
/// the spot with no clean-up at all, exactly like a killed control plane. Tests use it
/// to inject crashes between any two steps.
pub trait StepHook: Send + Sync {
    /// Decide whether `server` proceeds to `step`.
    fn before(&self, server: &str, step: DeployStep) -> HookDecision;
}

/// What a [`StepHook`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookDecision {
    /// Go on.
    Continue,
    /// Stop here as if the process died.
    Crash,
}

/// Progress of a deploy or rollout, for progress bars and callbacks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A server starts.
    Started {
        /// Server name.
        server: String,
    },
    /// A server reaches a step.
    Step {
        /// Server name.
        server: String,
        /// The step.
        step: DeployStep,
    },
    /// A server is done.
    Finished {
        /// Server name.
        server: String,
        /// Outcome.
        state: DeploymentState,
        /// Why, in words.
        detail: String,
    },
    /// The rollout stopped early.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// A progress callback.
pub type ProgressFn = dyn Fn(&ProgressEvent) + Send + Sync;

/// Why a server's deploy did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The transport failed (unreachable, host key, auth, timeout, cut).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another control plane holds the server's lock.
    #[error("server is locked by {holder} until {expires} (Unix time); not touched")]
    LockHeld {
        /// Holder identity.
        holder: String,
        /// Expiry, server clock.
        expires: u64,
    },
    /// nginx refused the staged tree.
    #[error("nginx rejected the new configuration; the server stays on its current one:\n{message}")]
    Rejected {
        /// nginx's own message.
        message: String,
    },
    /// The reload did not take effect.
    #[error("reload failed: {message}")]
    ReloadFailed {
        /// nginx's `[emerg]` lines or why verification failed.
        message: String,
    },
    /// Sites did not answer as expected after the reload.
    #[error("health probe failed: {}", failures.join("; "))]
    Unhealthy {
        /// One line per failing site.
        failures: Vec<String>,
    },
    /// The helper failed at a step.
    #[error("{step} failed (exit {code}): {message}")]
    Remote {
        /// Step.
        step: DeployStep,
        /// Exit code.
        code: i32,
        /// stderr/stdout of the helper.
        message: String,
    },
    /// The generation to activate is not on the server.
    #[error("generation {0} is not on the server")]
    MissingGeneration(String),
    /// The installed helper is too old or configured for other paths than the inventory's.
    #[error("{0}")]
    HelperConfig(String),
    /// A test hook stopped the engine (simulated crash).
    #[error("stopped before {0} (simulated crash)")]
    Crashed(DeployStep),
}

impl DeployError {
    /// A stable name for the kind of failure, for machine-readable reports (the CLI's
    /// `--json` field `error_kind`; the Python package raises the class of that name):
    /// `HostKeyError`, `AuthError`, `TimeoutError`, `KeyringError`, `TransportError`,
    /// `ConfigRejected`, `ReloadFailed` or `DeployError`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport(t) => match t {
                TransportError::HostKey { .. } => "HostKeyError",
                TransportError::Auth { .. } => "AuthError",
                TransportError::Timeout { .. } => "TimeoutError",
                TransportError::Credentials { .. } => "KeyringError",
                _ => "TransportError",
            },
            Self::Rejected { .. } => "ConfigRejected",
            Self::ReloadFailed { .. } => "ReloadFailed",
            _ => "DeployError",
        }
    }

    /// Transient failures (network, busy store, held lock) may succeed on a rerun.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::LockHeld { .. } => true,
            _ => false,
        }
    }
}

/// What a server ended with.
#[derive(Debug, serde::Serialize)]
pub struct ServerReport {
    /// Server name.
    pub server: String,
    /// Deploy or rollback.
    pub action: AuditAction,
    /// Outcome.
    pub state: DeploymentState,
    /// The generation this run meant to activate.
    pub generation: String,
    /// The generation the server ran before.
    pub previous: Option<String>,
    /// What happened, in words (nginx's message for a rejected config).
    pub detail: String,
    /// The error, when it failed (serialized as its [`DeployError::kind`], `error_kind`).
    #[serde(rename = "error_kind", serialize_with = "ser_kind")]
    pub error: Option<DeployError>,
    /// Commands sent to the server (SSH round trips).
    pub round_trips: u32,
    /// Files and bytes sent.
    pub uploaded_files: usize,
    /// Bytes sent in the stage archive.
    pub uploaded_bytes: usize,
    /// Files hard-linked on the server from the previous generation.
    pub linked_files: usize,
    /// A crashed run's generation this run restored first.
    pub recovered: Option<String>,
    /// Wall time.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
    /// Time spent in each step, in order (the last one runs to the end).
    pub steps: Vec<StepTiming>,
}

/// How long one step took.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct StepTiming {
    /// The step.
    pub step: DeployStep,
    /// Its duration.
    #[serde(serialize_with = "ser_secs")]
    pub took: Duration,
}

impl ServerReport {
    /// A report with nothing done yet (also for servers a rollout never started:
    /// `Skipped`, or `Failed` before any command).
    pub fn new(server: &str, action: AuditAction, generation: &str, state: DeploymentState, detail: String) -> Self {
        Self {
            server: server.to_owned(),
            action,
            state,
            generation: generation.to_owned(),
            previous: None,
            detail,
            error: None,
            round_trips: 0,
            uploaded_files: 0,
            uploaded_bytes: 0,
            linked_files: 0,
            recovered: None,
            elapsed: Duration::ZERO,
            steps: Vec::new(),
        }
    }
}

fn ser_kind<S: serde::Serializer>(e: &Option<DeployError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(e.kind()),
        None => s.serialize_none(),
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What to activate.
#[derive(Clone, Debug)]
pub enum DeploySource {
    /// A freshly rendered generation (uploaded if the server lacks it).
    Generation(Arc<Generation>),
    /// A generation already on the server (rollback).
    Existing(String),
}

impl DeploySource {
    /// The generation id to activate.
    pub fn id(&self) -> &str {
        match self {
            Self::Generation(g) => g.id(),
            Self::Existing(id) => id,
        }
    }
}

/// Runs deploys. Holds only shared, read-only collaborators: one per run, cheap to
/// clone, usable for many servers at once.
#[derive(Clone)]
pub struct Deployer {
    pub(super) store: Arc<dyn StateStore>,
    pub(super) probe: Option<Arc<dyn HealthProbe>>,
    pub(super) options: DeployOptions,
    pub(super) actor: String,
    pub(super) holder: String,
    pub(super) hook: Option<Arc<dyn StepHook>>,
    pub(super) progress: Option<Arc<ProgressFn>>,
    pub(super) signer: Option<Arc<super::ArchiveSigner>>,
}

impl fmt::Debug for Deployer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployer").field("actor", &self.actor).field("options", &self.options).finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer recording into `store` as `actor`.
    pub fn new(store: Arc<dyn StateStore>, actor: &str) -> Self {
        Self {
            store,
            probe: None,
            options: DeployOptions::default(),
            actor: actor.to_owned(),
            holder: holder_name(actor),
            hook: None,
            progress: None,
            signer: None,
        }
    }

    /// Sign every staged archive with `signer` (`[deploy] signing_key`): a server whose
    /// installed helper has the public key accepts no other.
    pub fn with_signer(mut self, signer: Arc<super::ArchiveSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Set the identity written into remote locks (default `<user>@<host>:<pid>:<nonce>`;
    /// other characters than `A-Z a-z 0-9 . _ : @ -` become `_`). A lock whose holder
    /// names this machine's host and a process that no longer exists is broken.
    pub fn with_holder(mut self, holder: &str) -> Self {
        self.holder =
            holder.chars().map(|c| if c.is_ascii_alphanumeric() || "._:@-".contains(c) { c } else { '_' }).collect();
        self
    }

    /// Probe sites after each reload.
    pub fn with_probe(mut self, probe: Arc<dyn HealthProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Set options.
    pub fn with_options(mut self, options: DeployOptions) -> Self {
        self.options = options;
        self
    }

    /// Install a step hook (crash injection in tests).
    pub fn with_hook(mut self, hook: Arc<dyn StepHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Receive progress events.
    pub fn with_progress(mut self, progress: Arc<ProgressFn>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The options in use.
    pub fn options(&self) -> &DeployOptions {
        &self.options
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Who this deployer acts as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The remote lock holder identity of this process.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        if let Some(p) = &self.progress {
            p(&event);
        }
    }

    /// Deploy `generation` (rendered for `server`, serving `sites`) through the full
    /// protocol. Never panics; every outcome is in the report, the store and the audit log.
    pub async fn deploy(
        &self,
        transport: &dyn Transport,
        server: &Server,
        sites: &[&Site],
        generation: Arc<Generation>,
    ) -> ServerReport {
        self.run(transport, server, sites, DeploySource::Generation(generation), AuditAction::Deploy).await
    }

    /// Activate a generation already on the server (`to`), through the same verified path.
    pub async fn rollback(
        &self,
        transport: &dyn Transport,
        server: &Server,
        sites: &[&Site],
        to: &str,
    ) -> ServerReport {
        self.run(transport, server, sites, DeploySource::Existing(to.to_owned()), AuditAction::Rollback).await
    }

    /// Run `source` on `server`.
    pub async fn run(
        &self,
        transport: &dyn Transport,
        server: &Server,
        sites: &[&Site],
        source: DeploySource,
        action: AuditAction,
    ) -> ServerReport {
        let started = Instant::now();
        let name = server.name.to_string();
        self.emit(ProgressEvent::Started { server: name.clone() });
        let mut run = Run::new(self, transport, server, action, source.id());
        let outcome = run.go(sites, &source).await;
        let mut report = run.finish(outcome).await;
        report.elapsed = started.elapsed();
        self.emit(ProgressEvent::Finished {
            server: name,
            state: report.state,
            detail: report.detail.lines().next().unwrap_or_default().to_owned(),
        });
        report
    }
}
