//! The step sequence of one server's deploy: inspect → local lock → lock → recover →
//! stage → validate → activate (switch, reload, verify) → probe → commit, one method
//! per step. A failure after the switch restores the last good generation through the
//! same verified activation; a simulated crash (a [`StepHook`](super::StepHook)) stops
//! on the spot with no clean-up, as a killed control plane would.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt as _;

use super::audit::AuditEvent;
use super::engine::{
    DeployError, DeployOptions, DeploySource, DeployStep, Deployer, HookDecision, ProgressEvent, ServerReport,
    StepTiming,
};
use super::holder::holder_is_dead_here;
use super::probe::HealthProbe;
use super::remote::{Activation, RemoteCommands, RemoteExit, RemoteState, ServerClock, stage_archive};
use crate::generation::{Generation, Sha256Digest};
use crate::model::{NginxValidation, Server, Site};
use crate::store::{AuditAction, DeploymentState, LocalLock, NewDeployment};
use crate::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError};

/// What a step ends the sequence with (`Err`), or its result (`Ok`).
type Step<T> = Result<T, Outcome>;

/// A failure that leaves the server on what it ran.
fn failed(e: impl Into<DeployError>) -> Outcome {
    Outcome::Failed(DeploymentState::Failed, e.into())
}

/// Result of the step sequence: a final state and detail, or an error to classify.
pub(super) enum Outcome {
    Done(DeploymentState, String),
    Failed(DeploymentState, DeployError),
    Crashed(DeployStep),
}

/// One server's deploy in progress.
pub(super) struct Run<'a> {
    d: &'a Deployer,
    t: &'a dyn Transport,
    server: &'a Server,
    cmds: RemoteCommands,
    report: ServerReport,
    deployment: Option<i64>,
    /// The store's lock on the server (this machine's, or every control plane's on a
    /// shared store), held until the outcome is recorded and the remote lock released,
    /// so the next holder's deployment starts after this one's has finished.
    store_lock: Option<LocalLock>,
    locked: bool,
    /// Whether the last activate call got as far as flipping `current`.
    flipped: bool,
    /// The helper's answer when the master refused a single-parse activation.
    rejected_at_activation: Option<Output>,
    /// When each step started.
    marks: Vec<(DeployStep, Instant)>,
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

impl<'a> Run<'a> {
    pub(super) fn new(
        d: &'a Deployer,
        t: &'a dyn Transport,
        server: &'a Server,
        action: AuditAction,
        id: &str,
    ) -> Self {
        let name = server.name.to_string();
        Run {
            d,
            t,
            server,
            cmds: RemoteCommands::for_server(server)
                .with_timeout(d.options.command_timeout)
                .with_signer(d.signer.clone()),
            report: ServerReport::new(&name, action, id, DeploymentState::Running, String::new()),
            deployment: None,
            store_lock: None,
            locked: false,
            flipped: false,
            rejected_at_activation: None,
            marks: Vec::new(),
        }
    }

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

    /// Mark the start of `step`; a simulated crash stops the sequence.
    fn enter(&mut self, step: DeployStep) -> Step<()> {
        if self.step(step) { Ok(()) } else { Err(Outcome::Crashed(step)) }
    }

    /// The step sequence; every step returns early with its outcome.
    pub(super) async fn go(&mut self, sites: &[&Site], source: &DeploySource) -> Outcome {
        self.steps(sites, source).await.unwrap_or_else(|outcome| outcome)
    }

    async fn steps(&mut self, sites: &[&Site], source: &DeploySource) -> Step<Outcome> {
        let id = source.id().to_owned();
        let runs_it = |s: &RemoteState| {
            s.current.as_deref() == Some(&id) && s.committed.as_deref() == Some(&id) && s.unverified.is_none()
        };
        let up_to_date = || Outcome::Done(DeploymentState::NoOp, format!("already runs generation {id}"));

        self.enter(DeployStep::Inspect)?;
        let inspected = self.inspect().await?;
        if runs_it(&inspected) {
            return Ok(up_to_date());
        }
        self.enter(DeployStep::LocalLock)?;
        self.store_lock = Some(self.local_lock(&id).await?);
        self.enter(DeployStep::Lock)?;
        let mut state = self.lock(inspected).await?;
        self.recover(&mut state).await?;
        self.report.previous = state.committed.clone().or_else(|| state.current.clone());
        if runs_it(&state) {
            return Ok(up_to_date());
        }
        let staged_now = !state.generations.contains(&id);
        // `nginx -t` rides on the stage command when there is one (one round trip less).
        let mut tested = None;
        if staged_now {
            self.enter(DeployStep::Stage)?;
            tested = self.stage_source(source, &state).await?;
        }
        let check = self.validate(sites, source, staged_now, tested).await?;
        self.enter(DeployStep::Activate)?;
        // What a failure from here on restores (the hand-made config when none).
        let good = state.committed.clone().unwrap_or_else(|| "0".into());
        self.switch(sites, source, check, &good).await?;
        self.probe(sites, &good).await?;
        self.enter(DeployStep::Commit)?;
        self.commit(&id).await
    }

    /// Read the server's state (and the live generation's hashes).
    async fn inspect(&mut self) -> Step<RemoteState> {
        let out = self.exec(self.cmds.inspect(true)).await.map_err(failed)?;
        if !out.success() {
            return Err(failed(Self::remote_error(DeployStep::Inspect, &out)));
        }
        let state = RemoteState::parse(&out.stdout);
        // An installed helper works only with its root-owned configuration: it must be
        // the one the inventory describes (the rendered tree names those paths).
        if let Some(why) = self.cmds.conf_mismatch(&state) {
            return Err(failed(DeployError::HelperConfig(why)));
        }
        // Every later change carries a deadline on the server's clock that passes before
        // this side gives up on it: a helper delayed by a stalled connection never
        // switches, reloads or commits after the outcome has been reported.
        let clock = ServerClock { now: state.now, received: Instant::now() };
        self.cmds = self.cmds.clone().with_server_clock(Some(clock));
        self.report.previous = state.committed.clone().or_else(|| state.current.clone());
        Ok(state)
    }

    /// This machine's lock for the server (two rpcc processes here take turns), and the
    /// deployment recorded as running.
    async fn local_lock(&mut self, id: &str) -> Step<LocalLock> {
        let (holder, wait) = (&self.d.holder, self.d.options.local_lock_wait);
        let local = self.d.store.lock_server(self.name(), holder, wait).await.map_err(failed)?;
        let abandoned = self.d.store.abandon_running(self.name()).await.map_err(failed)?;
        if abandoned > 0 {
            let detail = format!("{abandoned} unfinished deployment(s) marked abandoned");
            self.audit(AuditAction::Recover, "abandoned", &detail, None).await;
        }
        let new = NewDeployment {
            server: self.name().to_owned(),
            action: self.report.action,
            generation: id.to_owned(),
            previous: self.report.previous.clone(),
            actor: self.d.actor.clone(),
        };
        self.deployment = Some(self.d.store.start_deployment(&new).await.map_err(failed)?);
        Ok(local)
    }

    /// The server's lock, breaking one left by a dead process of this machine; the
    /// state as the lock found it.
    async fn lock(&mut self, inspected: RemoteState) -> Step<RemoteState> {
        let (holder, ttl) = (self.d.holder.clone(), self.d.options.lock_ttl);
        let mut out = self.exec(self.cmds.lock(&holder, ttl, None)).await.map_err(failed)?;
        if RemoteExit::from_code(exit_code(&out)) == RemoteExit::LockHeld
            && let Some((other, _, _)) = RemoteState::parse(&out.stdout).held_by
            && holder_is_dead_here(&other, &holder)
        {
            // Held by an rpcc process of this machine that no longer exists (we hold
            // this machine's lock for the server, so no live local process can be
            // deploying it): break exactly that lock.
            tracing::warn!(server = self.name(), holder = %other, "lock holder process is gone; breaking its lock");
            out = self.exec(self.cmds.lock(&holder, ttl, Some(&other))).await.map_err(failed)?;
        }
        let mut state = RemoteState::parse(&out.stdout);
        if state.current == inspected.current {
            // The live generation's hashes, read before the lock, still apply.
            state.manifest = inspected.manifest;
        }
        if RemoteExit::from_code(exit_code(&out)) == RemoteExit::LockHeld {
            let (holder, expires, _) = state.held_by.unwrap_or_default();
            return Err(failed(DeployError::LockHeld { holder, expires }));
        }
        if !out.success() {
            return Err(failed(Self::remote_error(DeployStep::Lock, &out)));
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
        Ok(state)
    }

    /// A crashed run may have left `current` on an unverified generation, or an
    /// activation (a restore too) may never have been verified: re-activate the
    /// committed generation first. A generation whose activation *was* verified (new
    /// workers run it, no `unverified` mark) but that was never committed (the run
    /// crashed before its probe or commit, or its commit was cut off) is what nginx
    /// serves: it is adopted as committed, not switched away from. Switching back first
    /// would take its sites down whenever this run then fails before its own switch
    /// (the committed generation may be the hand-made config), and would make the
    /// generation nginx serves neither `current` nor `committed` after a later crash.
    async fn recover(&mut self, state: &mut RemoteState) -> Step<()> {
        let (Some(cur), Some(good)) = (state.current.clone(), state.committed.clone()) else { return Ok(()) };
        if cur == good && state.unverified.is_none() {
            return Ok(());
        }
        self.enter(DeployStep::Recover)?;
        if state.unverified.is_none() {
            return self.adopt(state, &cur, &good).await;
        }
        let left = if cur == good { state.unverified.clone().unwrap_or_else(|| cur.clone()) } else { cur.clone() };
        if let Err(e) = self.activate(&good, Activation::Tested).await {
            self.audit(AuditAction::Recover, "failed", &e.to_string(), Some(&good)).await;
            return Err(Outcome::Failed(DeploymentState::RestoreFailed, e));
        }
        let detail = if cur == good {
            format!("re-activated committed generation {good} (an activation of {left} was never verified)")
        } else {
            format!("restored committed generation {good} (a crashed run had left {cur} active, never verified)")
        };
        tracing::warn!(server = self.name(), "{detail}");
        self.audit(AuditAction::Recover, "succeeded", &detail, Some(&good)).await;
        self.report.recovered = Some(left);
        state.current = Some(good);
        state.unverified = None;
        Ok(())
    }

    /// Commit `cur`, the verified but uncommitted generation nginx serves, then take the
    /// lock again (the commit releases it): two round trips, only in this recovery.
    async fn adopt(&mut self, state: &mut RemoteState, cur: &str, was: &str) -> Step<()> {
        let (holder, o) = (self.d.holder.clone(), &self.d.options);
        let (ttl, keep) = (o.lock_ttl, o.keep);
        let out = self.exec(self.cmds.commit(&holder, ttl, cur, keep)).await.map_err(failed)?;
        if !out.success() {
            return Err(failed(Self::remote_error(DeployStep::Recover, &out)));
        }
        self.locked = false;
        let out = self.exec(self.cmds.lock(&holder, ttl, None)).await.map_err(failed)?;
        if !out.success() {
            return Err(failed(Self::remote_error(DeployStep::Lock, &out)));
        }
        self.locked = true;
        let manifest = std::mem::take(&mut state.manifest);
        *state = RemoteState::parse(&out.stdout);
        if state.current.as_deref() == Some(cur) {
            state.manifest = manifest;
        }
        let detail = format!(
            "adopted generation {cur} as committed (previous {was}): a crashed run had activated it and nginx \
             verifiably serves it, but that run never committed it"
        );
        tracing::warn!(server = self.name(), "{detail}");
        self.audit(AuditAction::Recover, "adopted", &detail, Some(cur)).await;
        self.report.recovered = Some(cur.to_owned());
        Ok(())
    }

    /// Send the generation, linking unchanged files to the live one when it verifies; in
    /// the default mode `nginx -t` runs right after, in the same command, and its
    /// output is returned (`None`: not run, e.g. by a helper older than that).
    async fn stage_source(&mut self, source: &DeploySource, state: &RemoteState) -> Step<Option<Output>> {
        let DeploySource::Generation(generation) = source else {
            return Err(failed(DeployError::MissingGeneration(source.id().to_owned())));
        };
        let linkable = if self.d.options.link_unchanged { state.current.as_deref() } else { None };
        let mut result = self.stage(generation, linkable, &state.manifest).await;
        if linkable.is_some() && matches!(&result, Err(DeployError::Remote { code: 12 | 16, .. })) {
            // The previous generation was edited on the server: send every file.
            tracing::warn!(server = self.name(), "linked files did not verify; uploading the whole tree");
            result = self.stage(generation, None, &BTreeMap::new()).await;
        }
        let out = result.map_err(failed)?;
        let tested = String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("valid="))
            || RemoteExit::from_code(exit_code(&out)) != RemoteExit::Ok;
        Ok(tested.then_some(out))
    }

    /// `nginx -t` (recording the generation once it passes), or nothing in single-parse
    /// mode (`nginx.validate = "master"`), where the activation itself validates.
    /// `tested`: the stage command's output when `nginx -t` already ran with it.
    async fn validate(
        &mut self,
        sites: &[&Site],
        source: &DeploySource,
        staged_now: bool,
        tested: Option<Output>,
    ) -> Step<Activation> {
        if self.server.nginx.validate == NginxValidation::Master {
            return Ok(Activation::SingleParse { verify: !staged_now });
        }
        self.enter(DeployStep::Validate)?;
        let out = match tested {
            Some(out) => out,
            None => {
                let timeout = self.d.options.command_timeout;
                self.exec(self.cmds.validate(source.id(), !staged_now, timeout)).await.map_err(failed)?
            }
        };
        match RemoteExit::from_code(exit_code(&out)) {
            RemoteExit::Ok => {}
            RemoteExit::Rejected => return Err(Self::rejected(&out, sites)),
            _ => return Err(failed(Self::remote_error(DeployStep::Validate, &out))),
        }
        self.record(source).await.map_err(failed)?;
        Ok(Activation::Tested)
    }

    /// Switch, reload and verify; restore `good` when that fails after the switch.
    async fn switch(&mut self, sites: &[&Site], source: &DeploySource, check: Activation, good: &str) -> Step<()> {
        if let Err(e) = self.activate(source.id(), check).await {
            if let Some(rejected) = self.rejected_at_activation.take() {
                // The master refused the tree and `current` is back: nothing changed.
                return Err(Self::rejected(&rejected, sites));
            }
            if !self.flipped {
                // Refused before the switch (nginx not running, lock lost): untouched.
                return Err(failed(e));
            }
            return Err(self.restore(good, e).await);
        }
        if check != Activation::Tested {
            self.record(source).await.map_err(failed)?;
        }
        Ok(())
    }

    /// Probe every site; restore `good` when any fails.
    async fn probe(&mut self, sites: &[&Site], good: &str) -> Step<()> {
        let Some(probe) = self.d.probe.clone() else { return Ok(()) };
        if sites.is_empty() {
            return Ok(());
        }
        self.enter(DeployStep::Probe)?;
        let failures = probe_sites(&*probe, self.server, sites, &self.d.options).await;
        if failures.is_empty() {
            return Ok(());
        }
        Err(self.restore(good, DeployError::Unhealthy { failures }).await)
    }

    /// Mark the generation good, prune old ones and release the lock.
    async fn commit(&mut self, id: &str) -> Step<Outcome> {
        let o = &self.d.options;
        let req = self.cmds.commit(&self.d.holder, o.lock_ttl, id, o.keep);
        let out = self.exec(req).await.map_err(failed)?;
        if !out.success() {
            return Err(failed(Self::remote_error(DeployStep::Commit, &out)));
        }
        self.locked = false;
        let pruned = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("pruned=")).count();
        let verb = if self.report.action == AuditAction::Rollback { "rolled back to" } else { "activated" };
        Ok(Outcome::Done(
            DeploymentState::Succeeded,
            format!(
                "{verb} generation {id} (previous {}), {} file(s) sent, {} linked, {pruned} old generation(s) pruned",
                self.report.previous.as_deref().unwrap_or("none"),
                self.report.uploaded_files,
                self.report.linked_files
            ),
        ))
    }

    async fn stage(
        &mut self,
        generation: &Generation,
        linkable: Option<&str>,
        live: &BTreeMap<String, Sha256Digest>,
    ) -> Result<Output, DeployError> {
        let (tar, sent, linked) = stage_archive(generation, linkable.map(|_| live))?;
        self.report.uploaded_files = sent;
        self.report.linked_files = linked;
        self.report.uploaded_bytes = tar.len();
        let opts = &self.d.options;
        let previous = if linked > 0 { linkable } else { None };
        let (holder, ttl, id, timeout) = (&self.d.holder, opts.lock_ttl, generation.id(), opts.command_timeout);
        let then_test = self.server.nginx.validate == NginxValidation::Test;
        let mut req = self.cmds.stage(holder, ttl, id, previous, tar, timeout);
        if then_test {
            req = req.and_then(|r| self.cmds.then_validate(r));
        }
        let out = self.exec(req).await?;
        // Staged, then refused by `nginx -t`: the validation's outcome, judged by the caller.
        let staged = String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("staged="));
        if out.success() || (then_test && staged) { Ok(out) } else { Err(Self::remote_error(DeployStep::Stage, &out)) }
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
    async fn restore(&mut self, good: &str, why: DeployError) -> Outcome {
        if !self.step(DeployStep::Restore) {
            return Outcome::Crashed(DeployStep::Restore);
        }
        match self.activate(good, Activation::Tested).await {
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

    pub(super) async fn finish(mut self, outcome: Outcome) -> ServerReport {
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
        // Only now may another holder start on this server.
        self.store_lock = None;
        self.report.state = state;
        self.report.detail = detail;
        self.report
    }
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
                    Err(e) => last = e.to_string(),
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

    #[test]
    fn helper_status_lines_are_not_part_of_messages() {
        let out = Output {
            status: ExitStatus::Code(14),
            stdout: b"backup=0\nactivated=abc\n".to_vec(),
            stderr: b"rpcc-error: nginx (pid 7) exited\n2026/11/23 [emerg] 7#7: bind() failed\n".to_vec(),
            truncated: false,
        };
        assert_eq!(text(&out), "nginx (pid 7) exited\n2026/11/23 [emerg] 7#7: bind() failed");
    }
}
