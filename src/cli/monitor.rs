//! `rpcc check` (one monitoring round, a table or JSON) and `rpcc watch` (rounds on an
//! interval with jitter, alerts to the inventory's notifiers, clean shutdown).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rpcc::watch::{Alerting, Monitor, Watch, state_text};
use rpcc_core::keyring::Keyring;
use rpcc_core::model::Inventory;
use rpcc_monitor::{MetricsState, NotifierSet, NotifierSettings};

use super::fleet::{EXIT_FAILED, fail};
use super::secrets::SecretArgs;
use super::{EXIT_INVALID, runtime};

/// Arguments of `rpcc check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// Arguments of `rpcc watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The inventory file (TOML); `[monitor]` sets the interval and notifiers.
    inventory: PathBuf,
    /// Where samples and alerts are recorded (default as for `apply`). Watch processes
    /// on one `postgres://` state (or one SQLite file) split the fleet between them.
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// This process's name among the watch processes sharing the state (unique per
    /// process). Default: `<hostname>:<pid>`.
    #[arg(long, env = "RPCC_WATCH_MEMBER")]
    member: Option<String>,
    /// Serve `/metrics` (Prometheus text) and `/healthz` on this address (e.g.
    /// 127.0.0.1:9810). Loopback only (it needs no credentials: put a proxy in front),
    /// unless `--metrics-public`.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Allow a `--listen` address that is not loopback (the endpoint answers anyone).
    #[arg(long, requires = "listen")]
    metrics_public: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

fn load(
    inventory: &std::path::Path,
    secrets: &SecretArgs,
    err: &mut impl Write,
) -> Result<(Inventory, Option<Keyring>), ExitCode> {
    let inv = secrets.load(inventory, err)?;
    let keyring = secrets.keyring_for(&inv, err)?;
    Ok((inv, keyring))
}

pub(crate) fn check(args: &CheckArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let (inv, keyring) = match load(&args.inventory, &args.secrets, &mut err) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let rt = match runtime(&mut err) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let monitor = match rt.block_on(Monitor::new(inv, keyring.as_ref())) {
        Ok(m) => m,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let round = rt.block_on(monitor.round());
    let bad = round.failed();
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &round);
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "{:<14} {:>6} {:>6} {:>6} {:>10}  STATE", "SERVER", "CPU", "MEM", "LOAD", "DISK MAX");
        for m in &round.metrics {
            match &m.state {
                MetricsState::Ok { metrics } => {
                    let disk = metrics.fs.iter().map(|f| f.percent).fold(0.0_f64, f64::max);
                    let _ = writeln!(
                        out,
                        "{:<14} {:>5.0}% {:>5.0}% {:>6.2} {:>9.0}%  ok",
                        m.server, metrics.cpu_percent, metrics.mem_percent, metrics.load[0], disk
                    );
                }
                other => {
                    let _ = writeln!(
                        out,
                        "{:<14} {:>6} {:>6} {:>6} {:>10}  {}",
                        m.server,
                        "-",
                        "-",
                        "-",
                        "-",
                        state_text(other)
                    );
                }
            }
        }
        let _ = writeln!(out, "\n{:<32} {:<12} {:>5} {:>9}  CERTIFICATE", "SITE", "SERVER", "HTTP", "LATENCY");
        for s in &round.sites {
            let (status, latency) = match &s.http {
                Ok(h) => (h.status.to_string(), format!("{:.0} ms", h.latency_ms)),
                Err(e) => ("-".into(), e.clone()),
            };
            let cert = match &s.cert {
                None => "-".to_owned(),
                Some(Ok(c)) => format!(
                    "{:.0} days left{}{}",
                    c.days_left,
                    if c.name_matches { "" } else { ", WRONG NAME" },
                    if c.untrusted.is_some() { ", untrusted" } else { "" }
                ),
                Some(Err(e)) => e.clone(),
            };
            let _ = writeln!(out, "{:<32} {:<12} {:>5} {:>9}  {cert}", s.site, s.server, status, latency);
        }
        if !round.dns.is_empty() {
            let _ = writeln!(out, "\n{:<32} DNS", "SITE");
            for d in &round.dns {
                let _ = writeln!(out, "{:<32} {}", d.site, d.problem.as_deref().unwrap_or("ok"));
            }
        }
        if !round.plugins.is_empty() {
            let _ = writeln!(out, "\n{:<32} {:<12} {:<18} {:<6} MESSAGE", "SITE", "SERVER", "PLUGIN", "STATUS");
            for p in &round.plugins {
                let _ = writeln!(out, "{:<32} {:<12} {:<18} {:<6} {}", p.site, p.server, p.plugin, p.status, p.message);
            }
        }
    }
    if bad { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

/// The notifier settings of the CLI: in builds with the `testing-hooks` feature,
/// `RPCC_TELEGRAM_API` points the Telegram notifier at another Bot API base (a local
/// fake in tests).
pub(crate) fn notifier_settings() -> NotifierSettings {
    NotifierSettings { telegram_api: super::hooks::telegram_api(), ..NotifierSettings::default() }
}

pub(crate) fn watch(args: &WatchArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let (inv, keyring) = match load(&args.inventory, &args.secrets, &mut err) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let alerting = match Alerting::new(&inv) {
        Ok(a) => a,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let sinks = match NotifierSet::from_inventory(&inv, keyring.as_ref(), &notifier_settings()) {
        Ok(n) => n,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let rt = match runtime(&mut err) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let state = match super::fleet::state_for(args.state.as_deref(), &args.inventory, &inv) {
        Ok(s) => s,
        Err(why) => return fail(&mut err, why, EXIT_INVALID),
    };
    let seal = keyring.as_ref().and_then(|k| rpcc_core::deploy::AuditSeal::for_keyring(k).ok());
    let environment = rpcc_store::EnvironmentClaim::For(inv.environment.as_ref().map(|e| e.name.as_str()));
    let store = match rt.block_on(rpcc_store::open_watch_url(&state, seal, environment)) {
        Ok(s) => s,
        Err(e) => return fail(&mut err, format!("state {}: {e}", rpcc_store::redacted_url(&state)), EXIT_INVALID),
    };
    let interval = inv.monitor.interval.as_duration();
    // Certificate renewal runs on its own schedule, through an engine of its own (its
    // keyring loaded again: keys are never copied in memory).
    let renewals = match args.secrets.keyring_for(&inv, &mut err) {
        Ok(k) => rt
            .block_on(rpcc::engine::Engine::open_url(inv.clone(), &state, k))
            .map_err(|e| tracing::warn!(error = %e, "certificate renewal disabled"))
            .ok(),
        Err(_) => None,
    };
    let monitor = match rt.block_on(Monitor::new(inv, keyring.as_ref())) {
        Ok(m) => m,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let _ = writeln!(
        err,
        "rpcc watch: {} server(s) with Glances, {} site check(s), every {:?}; stop with Ctrl-C",
        monitor.glances_servers(),
        monitor.site_checks(),
        interval
    );
    if let Some(addr) = args.listen
        && let Err(why) = super::endpoint::check_listen(addr, args.metrics_public)
    {
        return fail(&mut err, why, EXIT_INVALID);
    }
    let listener = match args.listen.map(std::net::TcpListener::bind).transpose() {
        Ok(l) => l,
        Err(e) => return fail(&mut err, format!("--listen: {e}"), EXIT_INVALID),
    };
    let stats = std::sync::Arc::new(rpcc::watch::WatchStats::default());
    let sd = super::sd_notify::SdNotify::from_env();
    if let Some(period) = super::sd_notify::SdNotify::watchdog()
        && period < interval.min(std::time::Duration::from_secs(50))
    {
        tracing::warn!(watchdog = ?period, "the service watchdog is shorter than a heartbeat can promise; raise WatchdogSec");
    }
    let alive = || sd.send("WATCHDOG=1");
    let member = args.member.clone().unwrap_or_else(rpcc::watch::member_name);
    let watch = Watch {
        monitor: &monitor,
        notifiers: &sinks,
        store: &*store,
        alerting,
        renewals: renewals.as_ref(),
        member,
        stats: Some(&stats),
        alive: Some(&alive),
    };
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        if let Some(listener) = listener {
            let endpoint = super::endpoint::Endpoint {
                stats: std::sync::Arc::clone(&stats),
                store: std::sync::Arc::clone(&store),
                started: std::time::Instant::now(),
                interval,
                max_connections: super::endpoint::MAX_CONNECTIONS,
                refresh: super::endpoint::COUNTS_REFRESH,
            };
            tokio::spawn(endpoint.serve(listener));
        }
        sd.send("READY=1");
        watch
            .run(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            })
            .await;
    });
    sd.send("STOPPING=1");
    let _ = writeln!(err, "rpcc watch: stopped");
    ExitCode::SUCCESS
}
