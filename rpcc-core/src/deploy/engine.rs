//! The per-server deploy: inspect → lock → recover → stage → validate → activate
//! (flip, reload, verify) → probe → commit, restoring the last good generation on any
//! failure after activation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use super::audit::AuditEvent;
use super::probe::HealthProbe;
use super::remote::{Activation, RemoteCommands, RemoteExit, RemoteState};
use super::state::{AuditAction, DeploymentState, NewDeployment, StateStore, StoreError};
use crate::generation::{Generation, Sha256Digest};
use crate::model::{NginxValidation, Server, Site};
use crate::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError, TreeFile, tar_archive};

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
    store: Arc<dyn StateStore>,
    probe: Option<Arc<dyn HealthProbe>>,
    options: DeployOptions,
    actor: String,
    holder: String,
    hook: Option<Arc<dyn StepHook>>,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for Deployer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployer").field("actor", &self.actor).field("options", &self.options).finish_non_exhaustive()
    }
}

/// `user@host` of this process, for audit entries.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{}", user.trim(), host.trim())
}

/// The name of this process's real uid, from `/proc/self/status` and `/etc/passwd`.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Lock holder names travel as shell arguments and live in a lock file: keep them to
/// `A-Z a-z 0-9 . _ : @ -`.
fn holder_name(actor: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let clean: String = actor
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._:@-".contains(c) { c } else { '_' })
        .take(64)
        .collect();
    format!("{clean}:{}:{nonce:08x}", std::process::id())
}

/// Whether lock holder `other` was an rpcc process on this machine that has exited.
/// Holder names are `<user>@<host>:<pid>:<nonce>`; `me` is ours.
fn holder_is_dead_here(other: &str, me: &str) -> bool {
    fn split(h: &str) -> Option<(&str, &str)> {
        let mut parts = h.rsplitn(3, ':');
        let _nonce = parts.next()?;
        let pid = parts.next()?;
        let actor = parts.next()?;
        Some((actor.rsplit_once('@').map_or(actor, |(_, host)| host), pid))
    }
    let (Some((other_host, pid)), Some((my_host, _))) = (split(other), split(me)) else { return false };
    other_host == my_host
        && !pid.is_empty()
        && pid.chars().all(|c| c.is_ascii_digit())
        && pid != std::process::id().to_string()
        && !std::path::Path::new("/proc").join(pid).exists()
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
        }
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
        let mut run = Run {
            d: self,
            t: transport,
            server,
            cmds: RemoteCommands::for_server(server).with_timeout(self.options.command_timeout),
            report: ServerReport::new(&name, action, source.id(), DeploymentState::Running, String::new()),
            deployment: None,
            locked: false,
            flipped: false,
            rejected_at_activation: None,
            marks: Vec::new(),
        };
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

/// Result of the step sequence: a final state and detail, or an error to classify.
enum Outcome {
    Done(DeploymentState, String),
    Failed(DeploymentState, DeployError),
    Crashed(DeployStep),
}

struct Run<'a> {
    d: &'a Deployer,
    t: &'a dyn Transport,
    server: &'a Server,
    cmds: RemoteCommands,
    report: ServerReport,
    deployment: Option<i64>,
    locked: bool,
    /// Whether the last activate call got as far as flipping `current`.
    flipped: bool,
    /// The helper's answer when the master refused a single-parse activation.
    rejected_at_activation: Option<Output>,
    /// When each step started.
    marks: Vec<(DeployStep, Instant)>,
}

/// Stop the step sequence on a simulated crash.
macro_rules! step {
    ($run:expr, $step:expr) => {
        if !$run.step($step) {
            return Outcome::Crashed($step);
        }
    };
}

fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stdout = stdout.trim();
    if !stdout.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(stdout);
    }
    // Drop the helper's own progress lines (`activated=<id>` …); keep messages.
    s.lines()
        .filter(|l| !is_status_line(l))
        .map(|l| l.trim_start_matches("rpcc-error: "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_status_line(line: &str) -> bool {
    line.split_once('=').is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
}

fn exit_code(out: &Output) -> i32 {
    match &out.status {
        ExitStatus::Code(c) => *c,
        ExitStatus::Signal(_) => -1,
    }
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.report.server
    }

    /// Progress + hook; false when the hook simulates a crash.
    fn step(&mut self, step: DeployStep) -> bool {
        self.marks.push((step, Instant::now()));
        self.d.emit(ProgressEvent::Step { server: self.name().to_owned(), step });
        tracing::debug!(server = self.name(), %step, "deploy step");
        match &self.d.hook {
            Some(h) => h.before(self.name(), step) == HookDecision::Continue,
            None => true,
        }
    }

    async fn exec(&mut self, req: Result<ExecRequest, TransportError>) -> Result<Output, DeployError> {
        self.report.round_trips += 1;
        Ok(self.t.exec(req?).await?)
    }

    fn remote_error(step: DeployStep, out: &Output) -> DeployError {
        DeployError::Remote { step, code: exit_code(out), message: text(out) }
    }

    async fn audit(&self, action: AuditAction, outcome: &str, detail: &str, generation: Option<&str>) {
        let mut e = AuditEvent::now(&self.d.actor, action, Some(self.name()), outcome, detail);
        e.generation = generation.map(str::to_owned);
        if let Err(err) = self.d.store.append_audit(&e).await {
            tracing::error!(server = self.name(), error = %err, "cannot append to the audit log");
        }
    }

    async fn go(&mut self, sites: &[&Site], source: &DeploySource) -> Outcome {
        let id = source.id().to_owned();
        let opts = self.d.options.clone();
        let holder = self.d.holder.clone();

        step!(self, DeployStep::Inspect);
        let out = match self.exec(self.cmds.inspect(true)).await {
            Ok(o) if o.success() => o,
            Ok(o) => return Outcome::Failed(DeploymentState::Failed, Self::remote_error(DeployStep::Inspect, &o)),
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e),
        };
        let state = RemoteState::parse(&out.stdout);
        self.report.previous = state.committed.clone().or_else(|| state.current.clone());
        let runs_it = |s: &RemoteState| {
            s.current.as_deref() == Some(&id) && s.committed.as_deref() == Some(&id) && s.unverified.is_none()
        };
        if runs_it(&state) {
            return Outcome::Done(DeploymentState::NoOp, format!("already runs generation {id}"));
        }

        step!(self, DeployStep::LocalLock);
        let _local = match self.d.store.lock_server(self.name(), &holder, opts.local_lock_wait).await {
            Ok(l) => l,
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e.into()),
        };
        match self.d.store.abandon_running(self.name()).await {
            Ok(0) => {}
            Ok(n) => {
                self.audit(
                    AuditAction::Recover,
                    "abandoned",
                    &format!("{n} unfinished deployment(s) marked abandoned"),
                    None,
                )
                .await
            }
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e.into()),
        }
        let new = NewDeployment {
            server: self.name().to_owned(),
            action: self.report.action,
            generation: id.clone(),
            previous: self.report.previous.clone(),
            actor: self.d.actor.clone(),
        };
        match self.d.store.start_deployment(&new).await {
            Ok(dep) => self.deployment = Some(dep),
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e.into()),
        }

        step!(self, DeployStep::Lock);
        let mut out = match self.exec(self.cmds.lock(&holder, opts.lock_ttl, None)).await {
            Ok(o) => o,
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e),
        };
        if RemoteExit::from_code(exit_code(&out)) == RemoteExit::LockHeld
            && let Some((other, _, _)) = RemoteState::parse(&out.stdout).held_by
            && holder_is_dead_here(&other, &holder)
        {
            // Held by an rpcc process of this machine that no longer exists (we hold
            // this machine's lock for the server, so no live local process can be
            // deploying it): break exactly that lock.
            tracing::warn!(server = self.name(), holder = %other, "lock holder process is gone; breaking its lock");
            out = match self.exec(self.cmds.lock(&holder, opts.lock_ttl, Some(&other))).await {
                Ok(o) => o,
                Err(e) => return Outcome::Failed(DeploymentState::Failed, e),
            };
        }
        let inspected = state;
        let mut state = RemoteState::parse(&out.stdout);
        if state.current == inspected.current {
            // The live generation's hashes, read before the lock, still apply.
            state.manifest = inspected.manifest;
        }
        if RemoteExit::from_code(exit_code(&out)) == RemoteExit::LockHeld {
            let (holder, expires, _) = state.held_by.unwrap_or_default();
            return Outcome::Failed(DeploymentState::Failed, DeployError::LockHeld { holder, expires });
        }
        if !out.success() {
            return Outcome::Failed(DeploymentState::Failed, Self::remote_error(DeployStep::Lock, &out));
        }
        self.locked = true;
        if let Some((old, exp, _)) = &state.broke_stale {
            let detail = format!("broke a stale lock held by {old} (expired at {exp})");
            tracing::warn!(server = self.name(), "{detail}");
            self.audit(AuditAction::BreakLock, "ok", &detail, None).await;
        }
        if !state.cleaned.is_empty() {
            tracing::info!(server = self.name(), cleaned = ?state.cleaned, "removed half-staged generations");
        }

        // A crashed run may have left `current` on an unverified generation, or an
        // activation (a restore too) may never have been verified.
        if let (Some(cur), Some(good)) = (state.current.clone(), state.committed.clone())
            && (cur != good || state.unverified.is_some())
        {
            step!(self, DeployStep::Recover);
            let left = if cur == good { state.unverified.clone().unwrap_or_else(|| cur.clone()) } else { cur.clone() };
            match self.activate(&good, Activation::Tested).await {
                Ok(()) => {
                    let detail = if cur == good {
                        format!("re-activated committed generation {good} (an activation of {left} was never verified)")
                    } else {
                        format!("restored committed generation {good} (a crashed run had left {cur} active)")
                    };
                    tracing::warn!(server = self.name(), "{detail}");
                    self.audit(AuditAction::Recover, "succeeded", &detail, Some(&good)).await;
                    self.report.recovered = Some(left);
                    state.current = Some(good);
                    state.unverified = None;
                }
                Err(e) => {
                    self.audit(AuditAction::Recover, "failed", &e.to_string(), Some(&good)).await;
                    return Outcome::Failed(DeploymentState::RestoreFailed, e);
                }
            }
        }
        self.report.previous = state.committed.clone().or_else(|| state.current.clone());
        if runs_it(&state) {
            return Outcome::Done(DeploymentState::NoOp, format!("already runs generation {id}"));
        }

        let staged_now = !state.generations.contains(&id);
        if staged_now {
            step!(self, DeployStep::Stage);
            let DeploySource::Generation(generation) = source else {
                return Outcome::Failed(DeploymentState::Failed, DeployError::MissingGeneration(id));
            };
            let linkable = if opts.link_unchanged { state.current.as_deref() } else { None };
            let mut result = self.stage(generation, linkable, &state.manifest).await;
            if linkable.is_some() && matches!(&result, Err(DeployError::Remote { code: 12 | 16, .. })) {
                // The previous generation was edited on the server: send every file.
                tracing::warn!(server = self.name(), "linked files did not verify; uploading the whole tree");
                result = self.stage(generation, None, &BTreeMap::new()).await;
            }
            if let Err(e) = result {
                return Outcome::Failed(DeploymentState::Failed, e);
            }
        }

        // Single parse (`nginx.validate = "master"`): no separate `nginx -t`; the
        // activation itself is the validation.
        let check = match self.server.nginx.validate {
            NginxValidation::Test => {
                step!(self, DeployStep::Validate);
                let out = match self.exec(self.cmds.validate(&id, !staged_now, opts.command_timeout)).await {
                    Ok(o) => o,
                    Err(e) => return Outcome::Failed(DeploymentState::Failed, e),
                };
                match RemoteExit::from_code(exit_code(&out)) {
                    RemoteExit::Ok => {}
                    RemoteExit::Rejected => return Self::rejected(&out, sites),
                    _ => {
                        return Outcome::Failed(
                            DeploymentState::Failed,
                            Self::remote_error(DeployStep::Validate, &out),
                        );
                    }
                }
                if let Err(e) = self.record(source).await {
                    return Outcome::Failed(DeploymentState::Failed, e);
                }
                Activation::Tested
            }
            NginxValidation::Master => Activation::SingleParse { verify: !staged_now },
        };

        step!(self, DeployStep::Activate);
        let good = state.committed.clone();
        if let Err(e) = self.activate(&id, check).await {
            if let Some(rejected) = self.rejected_at_activation.take() {
                // The master refused the tree and `current` is back: nothing changed.
                return Self::rejected(&rejected, sites);
            }
            if !self.flipped {
                // Refused before the switch (nginx not running, lock lost): untouched.
                return Outcome::Failed(DeploymentState::Failed, e);
            }
            return self.restore(good.or_else(|| Some("0".into())), e).await;
        }
        if check != Activation::Tested
            && let Err(e) = self.record(source).await
        {
            return Outcome::Failed(DeploymentState::Failed, e);
        }

        if let Some(probe) = self.d.probe.clone()
            && !sites.is_empty()
        {
            step!(self, DeployStep::Probe);
            let failures = probe_sites(&*probe, self.server, sites, &opts).await;
            if !failures.is_empty() {
                return self.restore(good.or_else(|| Some("0".into())), DeployError::Unhealthy { failures }).await;
            }
        }

        step!(self, DeployStep::Commit);
        let out = match self.exec(self.cmds.commit(&holder, opts.lock_ttl, &id, opts.keep)).await {
            Ok(o) => o,
            Err(e) => return Outcome::Failed(DeploymentState::Failed, e),
        };
        if !out.success() {
            return Outcome::Failed(DeploymentState::Failed, Self::remote_error(DeployStep::Commit, &out));
        }
        self.locked = false;
        let pruned = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("pruned=")).count();
        let verb = if self.report.action == AuditAction::Rollback { "rolled back to" } else { "activated" };
        Outcome::Done(
            DeploymentState::Succeeded,
            format!(
                "{verb} generation {id} (previous {}), {} file(s) sent, {} linked, {pruned} old generation(s) pruned",
                self.report.previous.as_deref().unwrap_or("none"),
                self.report.uploaded_files,
                self.report.linked_files
            ),
        )
    }

    async fn stage(
        &mut self,
        generation: &Generation,
        linkable: Option<&str>,
        live: &BTreeMap<String, Sha256Digest>,
    ) -> Result<(), DeployError> {
        let (tar, sent, linked) = stage_archive(generation, linkable.map(|_| live))?;
        self.report.uploaded_files = sent;
        self.report.linked_files = linked;
        self.report.uploaded_bytes = tar.len();
        let opts = &self.d.options;
        let req = self.cmds.stage(
            &self.d.holder,
            opts.lock_ttl,
            generation.id(),
            if linked > 0 { linkable } else { None },
            tar,
            opts.command_timeout,
        );
        let out = self.exec(req).await?;
        if out.success() { Ok(()) } else { Err(Self::remote_error(DeployStep::Stage, &out)) }
    }

    /// Record a validated generation's manifest in the state store.
    async fn record(&self, source: &DeploySource) -> Result<(), DeployError> {
        match source {
            DeploySource::Generation(g) => Ok(self.d.store.record_generation(self.name(), &g.manifest()).await?),
            DeploySource::Existing(_) => Ok(()),
        }
    }

    /// nginx refused the tree (`nginx -t`, or the master's parse, switched back).
    fn rejected(out: &Output, sites: &[&Site]) -> Outcome {
        let message = crate::certs::explain_missing_certificates(&text(out), sites);
        Outcome::Failed(DeploymentState::Rejected, DeployError::Rejected { message })
    }

    /// Flip + reload + verify through the helper.
    async fn activate(&mut self, id: &str, check: Activation) -> Result<(), DeployError> {
        let o = &self.d.options;
        let req = self.cmds.activate(&self.d.holder, o.lock_ttl, id, o.reload_timeout, check);
        // A transport error leaves it unknown whether the flip happened: assume it did.
        self.flipped = true;
        let out = self.exec(req).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let switched_back = stdout.lines().any(|l| l.starts_with("switched-back="));
        // `switching=` comes before the switch: a helper killed after it may have moved
        // `current` without saying so.
        self.flipped = !switched_back && stdout.lines().any(|l| l.starts_with("switching="));
        match RemoteExit::from_code(exit_code(&out)) {
            RemoteExit::Ok => Ok(()),
            RemoteExit::Rejected if switched_back => {
                let e = DeployError::Rejected { message: text(&out) };
                self.rejected_at_activation = Some(out);
                Err(e)
            }
            RemoteExit::ReloadFailed | RemoteExit::NotRunning => Err(DeployError::ReloadFailed { message: text(&out) }),
            _ => Err(Self::remote_error(DeployStep::Activate, &out)),
        }
    }

    /// Put `good` back after `why`; the outcome says whether that worked.
    async fn restore(&mut self, good: Option<String>, why: DeployError) -> Outcome {
        if !self.step(DeployStep::Restore) {
            return Outcome::Crashed(DeployStep::Restore);
        }
        let Some(good) = good else {
            return Outcome::Failed(DeploymentState::RestoreFailed, why);
        };
        match self.activate(&good, Activation::Tested).await {
            Ok(()) => {
                // Verified like any activation (new workers on the restored config). It
                // is not probed again: the failed generation's sites and listen
                // addresses, which a probe would use, may not be the restored one's.
                self.report.detail = format!("restored generation {good}");
                Outcome::Failed(DeploymentState::RolledBack, why)
            }
            Err(e) => {
                tracing::error!(server = self.name(), error = %e, "restore failed");
                self.report.detail = format!("restoring generation {good} failed too: {e}");
                Outcome::Failed(DeploymentState::RestoreFailed, why)
            }
        }
    }

    async fn finish(mut self, outcome: Outcome) -> ServerReport {
        let end = Instant::now();
        self.report.steps = self
            .marks
            .iter()
            .enumerate()
            .map(|(i, (step, at))| StepTiming {
                step: *step,
                took: self.marks.get(i + 1).map_or(end, |(_, next)| *next).saturating_duration_since(*at),
            })
            .collect();
        let (state, detail) = match outcome {
            Outcome::Crashed(step) => {
                // A crash leaves everything as it is: no unlock, no store update.
                self.report.state = DeploymentState::Abandoned;
                self.report.detail = format!("stopped before {step} (simulated crash)");
                self.report.error = Some(DeployError::Crashed(step));
                return self.report;
            }
            Outcome::Done(state, detail) => (state, detail),
            Outcome::Failed(state, err) => {
                let mut detail = err.to_string();
                if !self.report.detail.is_empty() {
                    detail = format!("{detail}\n{}", self.report.detail);
                }
                self.report.error = Some(err);
                (state, detail)
            }
        };
        if self.locked {
            match self.exec(self.cmds.unlock(&self.d.holder)).await {
                Ok(o) if o.success() => {}
                Ok(o) => tracing::warn!(server = self.name(), "cannot release the lock: {}", text(&o)),
                Err(e) => tracing::warn!(server = self.name(), error = %e, "cannot release the lock"),
            }
        }
        if let Some(dep) = self.deployment
            && let Err(e) = self.d.store.finish_deployment(dep, state, &detail).await
        {
            tracing::error!(server = self.name(), error = %e, "cannot record the deployment outcome");
        }
        let id = self.report.generation.clone();
        self.audit(self.report.action, state.as_str(), &detail, Some(&id)).await;
        self.report.state = state;
        self.report.detail = detail;
        self.report
    }
}

/// The stage archive: changed files, `.rpcc/sha256` for every file, and `.rpcc/links`
/// naming unchanged files the server hard-links from the live generation. Returns
/// (archive, files sent, files linked).
fn stage_archive(
    generation: &Generation,
    live: Option<&BTreeMap<String, Sha256Digest>>,
) -> Result<(Vec<u8>, usize, usize), DeployError> {
    let mut sums = String::new();
    let mut links = String::new();
    let mut modes: Vec<String> = Vec::new();
    let mut files: Vec<TreeFile<'_>> = Vec::new();
    let mut linked = 0;
    for (path, file) in generation.files() {
        let digest = Sha256Digest::of(&file.bytes);
        sums.push_str(&format!("{digest}  {path}\n"));
        modes.push(format!("{:o} {path}\n", file.mode & 0o7777));
        if live.and_then(|m| m.get(path.as_str())) == Some(&digest) {
            links.push_str(&format!("{path}\n"));
            linked += 1;
        } else {
            files.push(TreeFile { path: path.as_str(), bytes: &file.bytes, mode: file.mode });
        }
    }
    // Byte order, as `LC_ALL=C sort` on the server orders `find -printf '%m %P'`.
    modes.sort_unstable();
    let modes = modes.concat();
    let sent = files.len();
    files.push(TreeFile { path: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o644 });
    files.push(TreeFile { path: ".rpcc/modes", bytes: modes.as_bytes(), mode: 0o644 });
    if linked > 0 {
        files.push(TreeFile { path: ".rpcc/links", bytes: links.as_bytes(), mode: 0o644 });
    }
    let tar = tar_archive(&files).map_err(|e| TransportError::Io { target: "local".into(), source: e })?;
    Ok((tar, sent, linked))
}

/// Probe every site (bounded concurrency, retries); one line per failing site.
async fn probe_sites(probe: &dyn HealthProbe, server: &Server, sites: &[&Site], opts: &DeployOptions) -> Vec<String> {
    let attempts = opts.health_attempts.max(1);
    futures_util::stream::iter(sites.iter().copied())
        .map(|site| async move {
            let mut last = String::new();
            for attempt in 0..attempts {
                match probe.probe(server, site).await {
                    Ok(()) => return None,
                    Err(e) => last = e,
                }
                if attempt + 1 < attempts {
                    tokio::time::sleep(opts.health_retry_delay).await;
                }
            }
            Some(format!("{}: {last}", site.domain))
        })
        .buffer_unordered(opts.health_concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::{GenerationFile, GenerationPath};

    fn generation(files: &[(&str, &str)]) -> Generation {
        Generation::new(
            "abc".into(),
            files
                .iter()
                .map(|(p, b)| {
                    (GenerationPath::parse(p).unwrap(), GenerationFile { bytes: Arc::from(b.as_bytes()), mode: 0o644 })
                })
                .collect(),
        )
    }

    #[test]
    fn stage_archive_links_only_files_with_the_same_hash() {
        let g = generation(&[("nginx.conf", "main"), ("sites/a.conf", "a"), ("sites/b.conf", "b2")]);
        let live: BTreeMap<String, Sha256Digest> =
            [("sites/a.conf".to_owned(), Sha256Digest::of(b"a")), ("sites/b.conf".to_owned(), Sha256Digest::of(b"b1"))]
                .into();
        let (tar, sent, linked) = stage_archive(&g, Some(&live)).unwrap();
        assert_eq!((sent, linked), (2, 1));
        let mut archive = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        let mut links = String::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            if p == ".rpcc/links" {
                std::io::Read::read_to_string(&mut e, &mut links).unwrap();
            }
            names.push(p);
        }
        assert_eq!(names, ["nginx.conf", "sites/b.conf", ".rpcc/sha256", ".rpcc/modes", ".rpcc/links"]);
        assert_eq!(links, "sites/a.conf\n");

        let (_, sent, linked) = stage_archive(&g, None).unwrap();
        assert_eq!((sent, linked), (3, 0));
    }

    #[test]
    fn only_dead_holders_of_this_machine_are_breakable() {
        let me = holder_name("ops@cp-1");
        let host = me.split(':').next().unwrap().to_owned();
        assert!(holder_is_dead_here(&format!("{host}:999999999:ab"), &me), "no such pid");
        assert!(!holder_is_dead_here(&format!("{host}:1:ab"), &me), "pid 1 is alive");
        assert!(!holder_is_dead_here("ops@cp-2:999999999:ab", &me), "another machine");
        assert!(!holder_is_dead_here(&me, &me), "ourselves");
        assert!(!holder_is_dead_here("garbage", &me));
    }

    #[test]
    fn helper_status_lines_are_not_part_of_messages() {
        let out = Output {
            status: ExitStatus::Code(14),
            stdout: b"backup=0\nactivated=abc\n".to_vec(),
            stderr: b"rpcc-error: nginx (pid 7) exited\n2026/11/23 [emerg] 7#7: bind() failed\n".to_vec(),
            truncated: false,
        };
        assert_eq!(text(&out), "nginx (pid 7) exited\n2026/11/23 [emerg] 7#7: bind() failed");
        assert!(!local_actor().starts_with("unknown@"));
    }

    #[test]
    fn holder_names_are_shell_and_lockfile_safe() {
        let h = holder_name("ops team@cp-1; rm -rf /");
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c)), "{h}");
    }
}
