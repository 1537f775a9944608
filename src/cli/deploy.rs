//! `rpcc plan | apply | rollback | status | drift | history | audit verify`.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rpcc::certs::CertificateOptions;
use rpcc::engine::{ApplyOptions, ApplyReport, ServerOutcome};
use rpcc_core::deploy::{
    ChangeKind, DeployOptions, DeploymentState, DriftState, FleetReport, ProgressEvent, ProgressFn, RolloutOverrides,
    ServerReport,
};
use rpcc_core::model::RolloutStrategy;

use super::EXIT_INVALID;
use super::fleet::{AbortBefore, EXIT_FAILED, FleetArgs, Session, fail, state_path};
use super::secrets::SecretArgs;

pub(crate) fn print_json(value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn short(id: Option<&str>) -> &str {
    id.map_or("-", |s| &s[..s.len().min(16)])
}

// ---------------------------------------------------------------- plan

#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Only list changed files, no diffs.
    #[arg(long)]
    stat: bool,
}

pub(crate) fn plan(args: &PlanArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(&args.fleet, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let results = match fleet.runtime.block_on(fleet.engine.plan(&args.fleet.selection())) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let mut failed = false;
    if args.fleet.json {
        print_json(&results);
        failed = results.iter().any(ServerOutcome::is_err);
    } else {
        let mut out = std::io::stdout().lock();
        for outcome in &results {
            let s = &outcome.server;
            match &outcome.result {
                Err(e) => {
                    failed = true;
                    let _ = writeln!(out, "{s}: cannot plan: {e}");
                }
                Ok(p) if p.is_noop() => {
                    let _ = writeln!(out, "{s}: up to date (generation {})", p.next);
                }
                Ok(p) => {
                    let count = |k| p.changes.iter().filter(|c| c.kind == k).count();
                    let _ = writeln!(
                        out,
                        "{s}: {} → {}: {} added, {} changed, {} removed, {} unchanged",
                        short(p.current.as_deref()),
                        p.next,
                        count(ChangeKind::Added),
                        count(ChangeKind::Changed),
                        count(ChangeKind::Removed),
                        p.unchanged
                    );
                    if let Some(t) = &p.takes_over {
                        let _ = writeln!(out, "  takes over {t}");
                    }
                    for c in &p.changes {
                        let kind = match c.kind {
                            ChangeKind::Added => "+",
                            ChangeKind::Changed => "~",
                            ChangeKind::Removed => "-",
                        };
                        let _ = writeln!(out, "  {kind} {}", c.path);
                        if !args.stat {
                            for line in c.diff.lines() {
                                let _ = writeln!(out, "    {line}");
                            }
                        }
                    }
                }
            }
        }
    }
    if failed { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

// ---------------------------------------------------------------- apply

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Strategy {
    /// Every server at once (bounded by --concurrency).
    All,
    /// One canary server, then batches.
    Canary,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Override the groups' rollout strategy.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Servers per batch after the canary.
    #[arg(long)]
    batch: Option<usize>,
    /// Servers deploying at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Stop once more than this many servers failed.
    #[arg(long)]
    max_failed: Option<u32>,
    /// On stop, roll back the servers this run already changed.
    #[arg(long)]
    rollback_on_failure: bool,
    /// Generations kept per server.
    #[arg(long, default_value_t = 5)]
    keep: u32,
    /// Seconds nginx may take to start new workers after the reload signal.
    #[arg(long, default_value_t = 15)]
    reload_timeout: u64,
    /// Skip the HTTP health probe of each site after the reload.
    #[arg(long)]
    no_probe: bool,
    /// Deploy with the certificates already stored; obtain or generate none.
    #[arg(long)]
    no_certificates: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

fn rollout_overrides(args: &ApplyArgs) -> RolloutOverrides {
    RolloutOverrides {
        strategy: args.strategy.map(|s| match s {
            Strategy::All => RolloutStrategy::All,
            Strategy::Canary => RolloutStrategy::Canary,
        }),
        batch: args.batch,
        concurrency: args.concurrency,
        max_failed: args.max_failed,
        rollback_on_failure: args.rollback_on_failure.then_some(true),
    }
}

fn progress_bar(total: usize) -> Option<Arc<indicatif::ProgressBar>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(Arc::new(bar))
}

fn progress(bar: Arc<indicatif::ProgressBar>) -> Arc<ProgressFn> {
    Arc::new(move |e: &ProgressEvent| match e {
        ProgressEvent::Step { server, step } => bar.set_message(format!("{server}: {step}")),
        ProgressEvent::Finished { server, state, .. } => {
            bar.inc(1);
            bar.println(format!("{server}: {state}"));
        }
        ProgressEvent::Stopped { reason } => bar.println(format!("stopped: {reason}")),
        _ => {}
    })
}

pub(crate) fn print_report(out: &mut impl Write, r: &ServerReport) {
    let _ = writeln!(
        out,
        "{:<12} {:<14} {} → {}  {} round trips, {} files sent ({} bytes), {} linked, {:.2} s",
        r.server,
        r.state.as_str(),
        short(r.previous.as_deref()),
        r.generation,
        r.round_trips,
        r.uploaded_files,
        r.uploaded_bytes,
        r.linked_files,
        r.elapsed.as_secs_f64()
    );
    if let Some(rec) = &r.recovered {
        let _ = writeln!(out, "  recovered first: a crashed run had left generation {rec} active");
    }
    if r.state != DeploymentState::Succeeded && r.state != DeploymentState::NoOp {
        for line in r.detail.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
}

fn finish_fleet(report: &ApplyReport, json: bool) -> ExitCode {
    if json {
        print_json(report);
    } else {
        let mut out = std::io::stdout().lock();
        for r in report.all() {
            print_report(&mut out, r);
        }
        if let Some(why) = &report.fleet.stopped {
            let _ = writeln!(out, "rollout stopped: {why}");
        }
        for r in &report.fleet.rolled_back {
            let _ = writeln!(out, "rolled back after the stop:");
            print_report(&mut out, r);
        }
        super::certs::print_outcomes(&mut out, &report.certificates);
        if let Some(tls) = &report.tls_phase {
            let _ = writeln!(out, "new certificates in service:");
            for r in &tls.servers {
                print_report(&mut out, r);
            }
        }
    }
    if report.failed() { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

pub(crate) fn confirm(err: &mut impl Write, what: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        let _ = writeln!(err, "error: {what}: not a terminal; pass --yes to go ahead without asking");
        return false;
    }
    let _ = write!(err, "{what}? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

pub(crate) fn apply(args: &ApplyArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(&args.fleet, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let count = fleet.engine.selected(&args.fleet.selection()).len();
    if !args.yes && !confirm(&mut err, &format!("deploy to {count} server(s)")) {
        return ExitCode::from(EXIT_INVALID);
    }
    let bar = if args.fleet.json { None } else { progress_bar(count) };
    let options = ApplyOptions {
        deploy: DeployOptions::default().keep(args.keep).reload_timeout(Duration::from_secs(args.reload_timeout)),
        rollout: rollout_overrides(args),
        skip_probe: args.no_probe,
        progress: bar.clone().map(progress),
        hook: AbortBefore::from_env(),
        skip_certificates: args.no_certificates,
        certificates: CertificateOptions::default(),
    };
    let report = match fleet.runtime.block_on(fleet.engine.apply(&args.fleet.selection(), options)) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    finish_fleet(&report, args.fleet.json)
}

// ---------------------------------------------------------------- rollback

#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// The server to roll back.
    server: String,
    /// The generation to activate (default: the one before the last successful deploy).
    #[arg(long)]
    to: Option<String>,
    /// The state database (default as for `apply`).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

pub(crate) fn rollback(args: &RollbackArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fa = FleetArgs {
        inventory: args.inventory.clone(),
        state: args.state.clone(),
        servers: vec![args.server.clone()],
        groups: vec![],
        json: args.json,
        secrets: args.secrets.clone(),
    };
    let fleet = match Session::load(&fa, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let Some(server) = fleet.inv().server(&args.server) else {
        return fail(&mut err, format!("server {:?} is not in the inventory", args.server), EXIT_INVALID);
    };
    if let Some(to) = &args.to
        && (to.is_empty() || !to.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return fail(
            &mut err,
            format!("--to {to:?} is not a generation id (hex digits, or 0 for the original config)"),
            EXIT_INVALID,
        );
    }
    let target = match &args.to {
        Some(t) => t.clone(),
        None => match fleet.runtime.block_on(fleet.engine.rollback_target(server)) {
            Ok(Some(g)) => g,
            Ok(None) => {
                return fail(
                    &mut err,
                    format!("{}: no earlier generation recorded; name one with --to", server.name),
                    EXIT_INVALID,
                );
            }
            Err(e) => return fail(&mut err, e, EXIT_FAILED),
        },
    };
    if !args.yes && !confirm(&mut err, &format!("roll {} back to generation {target}", server.name)) {
        return ExitCode::from(EXIT_INVALID);
    }
    let r = match fleet.runtime.block_on(fleet.engine.rollback(&args.server, Some(&target))) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_FAILED),
    };
    let report = ApplyReport {
        fleet: FleetReport { servers: vec![r], stopped: None, rolled_back: vec![] },
        unreachable: vec![],
        certificates: vec![],
        tls_phase: None,
        notification_failures: vec![],
    };
    finish_fleet(&report, args.json)
}

// ---------------------------------------------------------------- status / drift

pub(crate) fn status(args: &FleetArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(args, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let statuses = match fleet.runtime.block_on(fleet.engine.status(&args.selection())) {
        Ok(s) => s,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    if args.json {
        print_json(&statuses);
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{:<12} {:<18} {:<14} {:<24} WHEN / NOTE", "SERVER", "GENERATION", "LAST", "BY");
        for s in &statuses {
            let last = s.last.as_ref();
            let when = last.map(|d| format_ms(d.finished_ms.unwrap_or(d.started_ms))).unwrap_or_default();
            let mut note = when;
            if let Some(e) = &s.error {
                note = format!("unreachable: {e}");
            } else if s.current != s.committed {
                note = format!(
                    "{note} (current ≠ committed {}: the next apply restores it)",
                    short(s.committed.as_deref())
                );
            }
            if let Some((h, _)) = &s.lock {
                note = format!("{note} [locked by {h}]");
            }
            let _ = writeln!(
                out,
                "{:<12} {:<18} {:<14} {:<24} {}",
                s.server,
                short(s.current.as_deref()),
                last.map_or("-", |d| d.state.as_str()),
                last.map_or("-", |d| d.actor.as_str()),
                note
            );
        }
    }
    if statuses.iter().any(|s| s.error.is_some()) { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

/// `2026-11-23 12:00:00 UTC` from Unix milliseconds.
pub(crate) fn format_ms(ms: i64) -> String {
    let (y, m, d, hh, mm, ss) = rpcc_core::time::civil_utc(ms.div_euclid(1000));
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

pub(crate) fn drift(args: &FleetArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(args, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let results = match fleet.runtime.block_on(fleet.engine.drift(&args.selection())) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let mut bad = false;
    let mut out = std::io::stdout().lock();
    for outcome in &results {
        let name = &outcome.server;
        match &outcome.result {
            Err(e) => {
                bad = true;
                if !args.json {
                    let _ = writeln!(out, "{name}: cannot check: {e}");
                }
            }
            Ok(d) => {
                bad |= matches!(d.drift, DriftState::Drifted { .. } | DriftState::Unknown);
                if args.json {
                    continue;
                }
                let live = short(d.live.as_deref());
                let _ = match &d.drift {
                    DriftState::Clean => writeln!(out, "{}: clean (generation {live})", name),
                    DriftState::NotDeployed => writeln!(out, "{}: nothing deployed yet", name),
                    DriftState::Unknown => {
                        writeln!(out, "{}: runs generation {live}, which this state database never recorded", name)
                    }
                    DriftState::Drifted { modified, added, removed } => {
                        let _ = writeln!(out, "{}: DRIFT in generation {live} (edited on the server)", name);
                        for p in modified {
                            let _ = writeln!(out, "  ~ {p}");
                        }
                        for p in added {
                            let _ = writeln!(out, "  + {p}");
                        }
                        for p in removed {
                            let _ = writeln!(out, "  - {p}");
                        }
                        Ok(())
                    }
                };
                if d.recorded.is_some() && d.recorded != d.live {
                    let _ = writeln!(
                        out,
                        "  note: the last recorded deploy was generation {}",
                        short(d.recorded.as_deref())
                    );
                }
            }
        }
    }
    if args.json {
        print_json(&results);
    }
    if bad { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

// ---------------------------------------------------------------- history

#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// The server.
    server: String,
    /// The state database (default as for `apply`).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// At most this many entries.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Open the state for reading (history, audit): a SQLite file that must exist, or a
/// `postgres://` URL.
pub(crate) fn open_store(
    state: Option<&std::path::Path>,
    inventory: &std::path::Path,
    err: &mut impl Write,
) -> Result<(tokio::runtime::Runtime, std::sync::Arc<dyn rpcc_core::store::EngineStore>), ExitCode> {
    let rt = super::runtime(err)?;
    let path = state_path(state, inventory);
    let location = path.to_string_lossy();
    if !location.contains("://") && !path.exists() {
        return Err(fail(err, format!("no state database at {}", path.display()), EXIT_INVALID));
    }
    let store = rt
        .block_on(rpcc_store::open_url(&location, None, rpcc_store::EnvironmentClaim::Any))
        .map_err(|e| fail(err, format!("state {}: {e}", rpcc_store::redacted_url(&location)), EXIT_INVALID))?;
    Ok((rt, store))
}

pub(crate) fn history(args: &HistoryArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let (rt, store) = match open_store(args.state.as_deref(), &args.inventory, &mut err) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let rows = match rt.block_on(store.deployments(Some(&args.server), args.limit)) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_FAILED),
    };
    if args.json {
        print_json(&rows);
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stdout().lock();
    for d in &rows {
        let _ = writeln!(
            out,
            "#{:<5} {}  {:<8} {:<14} {} → {}  by {}",
            d.id,
            format_ms(d.started_ms),
            d.action.as_str(),
            d.state.as_str(),
            short(d.previous.as_deref()),
            d.generation,
            d.actor
        );
        if let Some(first) = d.detail.lines().next().filter(|_| d.state != DeploymentState::Succeeded) {
            let _ = writeln!(out, "       {first}");
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "no deployments recorded for {}", args.server);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::format_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_ms(1_795_435_200_000), "2026-11-23 12:00:00 UTC");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
