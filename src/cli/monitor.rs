//! `rpcc check` (one monitoring round, a table or JSON) and `rpcc watch` (rounds on an
//! interval with jitter, alerts to the inventory's notifiers, clean shutdown).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rpcc_core::deploy::{AuditAction, AuditEvent, StateStore as _, unix_ms};
use rpcc_core::keyring::Keyring;
use std::net::IpAddr;

use rpcc_core::model::{AlertRuleSettings, DnsResolver, Inventory};
use rpcc_monitor::{
    AlertEngine, AlertEvent, AlertRulesConfig, DnsProber, DnsReport, GlancesSource, MetricsReport, MetricsState,
    Notification, NotifierSet, NotifierSettings, Reading, SiteProber, SiteReport, SiteTarget, Subject, collect_all,
};
use rpcc_store::SqliteStore;

use super::fleet::{EXIT_FAILED, fail, state_path};
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
    /// Where alerts are recorded (default as for `apply`).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// A check plugin's verdict on a site on a server.
#[derive(Debug, serde::Serialize)]
struct PluginCheckRow {
    site: String,
    server: String,
    plugin: String,
    status: String,
    message: String,
}

/// A check plugin's `http-get`: one site on one server, through the monitor's prober.
struct ProberHttp {
    prober: Arc<SiteProber>,
    target: SiteTarget,
    runtime: tokio::runtime::Handle,
}

impl rpcc_wasm_plugins::SiteHttp for ProberHttp {
    fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<rpcc_wasm_plugins::HttpResponse, rpcc_wasm_plugins::SiteHttpError> {
        let fetch = self.prober.fetch(&self.target, path, 64 * 1024);
        match self.runtime.block_on(tokio::time::timeout(timeout, fetch)) {
            Ok(Ok(r)) => Ok(rpcc_wasm_plugins::HttpResponse { status: r.status, headers: r.headers, body: r.body }),
            Ok(Err(e)) => Err(rpcc_wasm_plugins::SiteHttpError::Failed(e)),
            Err(_) => Err(rpcc_wasm_plugins::SiteHttpError::Timeout(timeout)),
        }
    }
}

struct Round {
    metrics: Vec<MetricsReport>,
    sites: Vec<SiteReport>,
    dns: Vec<DnsReport>,
    plugins: Vec<PluginCheckRow>,
}

/// A site's DNS check: its names (wildcards left out) and its servers' addresses.
struct DnsTarget {
    site: String,
    names: Vec<String>,
    expected: Vec<IpAddr>,
}

struct Monitor {
    inv: Arc<Inventory>,
    sources: Vec<Arc<GlancesSource>>,
    targets: Vec<SiteTarget>,
    prober: Arc<SiteProber>,
    plugins: Option<Arc<rpcc_wasm_plugins::PluginSet>>,
    concurrency: usize,
    dns: Option<(DnsProber, Vec<DnsTarget>)>,
}

impl Monitor {
    async fn new(inv: Inventory, keyring: Option<&Keyring>) -> Result<Self, String> {
        let timeout = inv.monitor.timeout.as_duration();
        let http = GlancesSource::client(timeout).map_err(|e| e.to_string())?;
        let mut sources = Vec::new();
        for s in &inv.servers {
            if let Some(src) = GlancesSource::for_server(s, keyring, http.clone()).map_err(|e| e.to_string())? {
                sources.push(Arc::new(src));
            }
        }
        let mut targets = Vec::new();
        for server in &inv.servers {
            for site in inv.sites_for_server(server.name.as_str()) {
                if let Some(t) = SiteTarget::for_site(server, site).await {
                    targets.push(t);
                }
            }
        }
        let concurrency = usize::try_from(inv.monitor.concurrency).unwrap_or(32);
        let dns = match &inv.monitor.dns {
            None => None,
            Some(r) => {
                let prober = match r {
                    DnsResolver::Server(addr) => DnsProber::with_nameserver(*addr, timeout)?,
                    _ => DnsProber::system(timeout)?,
                };
                let mut checks = Vec::new();
                for site in &inv.sites {
                    let mut expected = Vec::new();
                    for server in inv
                        .servers
                        .iter()
                        .filter(|s| inv.sites_for_server(s.name.as_str()).any(|x| x.domain == site.domain))
                    {
                        match server.host.to_string().parse::<IpAddr>() {
                            Ok(ip) => expected.push(ip),
                            Err(_) => {
                                if let Ok(found) = tokio::net::lookup_host((server.host.to_string(), 0)).await {
                                    expected.extend(found.map(|a| a.ip()));
                                }
                            }
                        }
                    }
                    let names = std::iter::once(site.domain.to_string())
                        .chain(site.aliases.iter().map(ToString::to_string))
                        .filter(|n| !n.starts_with('*'))
                        .collect();
                    checks.push(DnsTarget { site: site.domain.to_string(), names, expected });
                }
                Some((prober, checks))
            }
        };
        let plugins = rpcc::engine::load_plugins(&inv).map_err(|e| e.to_string())?;
        Ok(Self {
            inv: Arc::new(inv),
            sources,
            targets,
            prober: Arc::new(SiteProber::new(timeout)),
            plugins,
            concurrency,
            dns,
        })
    }

    async fn round(&self) -> Round {
        let metrics = collect_all(&self.sources, self.concurrency);
        let sites = futures_util::stream::iter(self.targets.iter().map(|t| self.prober.probe(t)))
            .buffered(self.concurrency)
            .collect::<Vec<_>>();
        let dns = async {
            match &self.dns {
                None => Vec::new(),
                Some((prober, checks)) => {
                    futures_util::stream::iter(checks.iter().map(|c| prober.check(&c.site, &c.names, &c.expected)))
                        .buffered(self.concurrency)
                        .collect::<Vec<_>>()
                        .await
                }
            }
        };
        let (metrics, sites, dns, plugins) = tokio::join!(metrics, sites, dns, self.plugin_checks());
        Round { metrics, sites, dns, plugins }
    }

    /// Check plugins of every (site, server), each on a blocking thread (plugins are
    /// synchronous; their `http-get` goes through the prober on this runtime).
    async fn plugin_checks(&self) -> Vec<PluginCheckRow> {
        let Some(set) = &self.plugins else { return Vec::new() };
        let runtime = tokio::runtime::Handle::current();
        let jobs = self.targets.iter().filter_map(|t| {
            let site = self.inv.sites.iter().find(|s| s.domain.as_str() == t.domain)?;
            if !set.has_checks(&self.inv, site) {
                return None;
            }
            let (inv, set, target) = (Arc::clone(&self.inv), Arc::clone(set), t.clone());
            let http: Arc<dyn rpcc_wasm_plugins::SiteHttp> =
                Arc::new(ProberHttp { prober: Arc::clone(&self.prober), target: t.clone(), runtime: runtime.clone() });
            Some(tokio::task::spawn_blocking(move || {
                let (Some(server), Some(site)) =
                    (inv.server(&target.server), inv.sites.iter().find(|s| s.domain.as_str() == target.domain))
                else {
                    return Vec::new();
                };
                set.checks(&inv, server, site, &http)
                    .into_iter()
                    .map(|(plugin, r)| {
                        let (status, message) = match r {
                            Ok(o) => (format!("{:?}", o.status).to_lowercase(), o.message),
                            Err(e) => ("error".to_owned(), e.to_string()),
                        };
                        PluginCheckRow {
                            site: target.domain.clone(),
                            server: target.server.clone(),
                            plugin,
                            status,
                            message,
                        }
                    })
                    .collect::<Vec<_>>()
            }))
        });
        let done = futures_util::stream::iter(jobs).buffered(self.concurrency.min(8)).collect::<Vec<_>>().await;
        done.into_iter().filter_map(Result::ok).flatten().collect()
    }

    /// The groups an alert subject belongs to (for notifier routing).
    fn groups_of(&self, subject: &Subject) -> Vec<String> {
        let server = match subject {
            Subject::Cpu { server }
            | Subject::Memory { server }
            | Subject::Disk { server, .. }
            | Subject::Metrics { server } => Some(server.as_str()),
            _ => None,
        };
        let site = match subject {
            Subject::Site { site, .. }
            | Subject::Certificate { site, .. }
            | Subject::Dns { site }
            | Subject::Plugin { site, .. } => Some(site.as_str()),
            _ => None,
        };
        self.inv
            .groups
            .iter()
            .filter(|g| {
                server.is_some_and(|s| g.servers.iter().any(|m| m.as_str() == s))
                    || site.is_some_and(|d| self.inv.sites.iter().any(|x| x.domain.as_str() == d && x.group == g.name))
            })
            .map(|g| g.name.to_string())
            .collect()
    }
}

/// Every (subject, reading) of a round.
fn observations(round: &Round) -> Vec<(Subject, Reading)> {
    let mut out = Vec::new();
    for m in &round.metrics {
        let server = m.server.clone();
        match &m.state {
            MetricsState::Ok { metrics } => {
                out.push((Subject::Metrics { server: server.clone() }, Reading::Ok));
                out.push((Subject::Cpu { server: server.clone() }, Reading::Percent(metrics.cpu_percent)));
                out.push((Subject::Memory { server: server.clone() }, Reading::Percent(metrics.mem_percent)));
                for fs in &metrics.fs {
                    out.push((
                        Subject::Disk { server: server.clone(), mount: fs.mount.clone() },
                        Reading::Percent(fs.percent),
                    ));
                }
            }
            other => out.push((Subject::Metrics { server }, Reading::Failed(state_text(other)))),
        }
    }
    for s in &round.sites {
        let site = Subject::Site { site: s.site.clone(), server: s.server.clone() };
        out.push(match &s.http {
            Ok(h) if h.status < 500 => (site, Reading::Ok),
            Ok(h) => (site, Reading::Failed(format!("HTTP {}", h.status))),
            Err(e) => (site, Reading::Failed(e.clone())),
        });
        if let Some(cert) = &s.cert {
            let subject = Subject::Certificate { site: s.site.clone(), server: s.server.clone() };
            out.push(match cert {
                Ok(c) if !c.name_matches => {
                    (subject, Reading::Failed(format!("certificate names {:?} do not cover the site", c.names)))
                }
                Ok(c) => (subject, Reading::DaysLeft(c.days_left)),
                Err(e) => (subject, Reading::Failed(e.clone())),
            });
        }
    }
    for p in &round.plugins {
        let subject = Subject::Plugin { plugin: p.plugin.clone(), site: p.site.clone(), server: p.server.clone() };
        let reading = match p.status.as_str() {
            "fail" | "error" => Reading::Failed(p.message.clone()),
            _ => Reading::Ok,
        };
        out.push((subject, reading));
    }
    for d in &round.dns {
        let subject = Subject::Dns { site: d.site.clone() };
        out.push(match &d.problem {
            None => (subject, Reading::Ok),
            Some(p) => (subject, Reading::Failed(p.clone())),
        });
    }
    out
}

fn state_text(s: &MetricsState) -> String {
    match s {
        MetricsState::Ok { .. } => "ok".into(),
        MetricsState::Unreachable { reason } => format!("glances unreachable: {reason}"),
        MetricsState::Unauthorized { status } => format!("glances refused the credentials (HTTP {status})"),
        MetricsState::Malformed { endpoint, reason } => format!("glances answered badly on {endpoint}: {reason}"),
        _ => "unknown".into(),
    }
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
    let bad = round.metrics.iter().any(|m| !matches!(m.state, MetricsState::Ok { .. }))
        || round.dns.iter().any(|d| d.problem.is_some())
        || round
            .sites
            .iter()
            .any(|s| s.http.as_ref().map_or(true, |h| h.status >= 500) || matches!(s.cert, Some(Err(_))))
        || round.plugins.iter().any(|p| p.status == "fail" || p.status == "error");
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "servers": round.metrics,
                "sites": round.sites,
                "dns": round.dns,
                "plugins": round.plugins,
            }),
        );
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

/// The alert thresholds of `settings` over the built-in defaults.
fn alert_config(settings: &AlertRuleSettings) -> AlertRulesConfig {
    let d = AlertRulesConfig::default();
    let secs = |v: Option<rpcc_core::value::DurationValue>, def: u64| v.map_or(def, |v| v.as_duration().as_secs());
    let mut c = d.clone();
    c.cpu_above = settings.cpu_above.map_or(d.cpu_above, f64::from);
    c.cpu_for_secs = secs(settings.cpu_for, d.cpu_for_secs);
    c.memory_above = settings.memory_above.map_or(d.memory_above, f64::from);
    c.memory_for_secs = secs(settings.memory_for, d.memory_for_secs);
    c.disk_above = settings.disk_above.map_or(d.disk_above, f64::from);
    c.cert_days = settings.cert_days.map_or(d.cert_days, f64::from);
    c.site_down_checks = settings.site_down_checks.unwrap_or(d.site_down_checks);
    c.dns_mismatch_checks = settings.dns_mismatch_checks.unwrap_or(d.dns_mismatch_checks);
    c.metrics_down_checks = settings.metrics_down_checks.unwrap_or(d.metrics_down_checks);
    c.clear_for_secs = secs(settings.clear_for, d.clear_for_secs);
    c
}

/// Alert engines: the inventory's rules, and one per group with overrides.
struct Alerting {
    default: AlertEngine,
    groups: Vec<(String, AlertEngine)>,
}

impl Alerting {
    fn new(inv: &Inventory) -> Result<Self, String> {
        let base = &inv.monitor.rules;
        let default = AlertEngine::new(alert_config(base).build().map_err(|e| format!("[monitor.rules]: {e}"))?);
        let mut groups = Vec::new();
        for (i, g) in inv.monitor.group_rules.iter().enumerate() {
            let rules = alert_config(&base.overlaid(&g.rules))
                .build()
                .map_err(|e| format!("monitor.group_rules[{i}] ({}): {e}", g.group))?;
            groups.push((g.group.to_string(), AlertEngine::new(rules)));
        }
        Ok(Self { default, groups })
    }

    /// The engine for a subject in `groups`: the first group with its own rules.
    fn engine_for(&mut self, groups: &[String]) -> &mut AlertEngine {
        match self.groups.iter().position(|(g, _)| groups.contains(g)) {
            Some(i) => &mut self.groups[i].1,
            None => &mut self.default,
        }
    }
}

/// Metric samples of a round (servers whose Glances answered).
fn samples(round: &Round, at_ms: i64) -> Vec<rpcc_store::MetricSample> {
    round
        .metrics
        .iter()
        .filter_map(|m| match &m.state {
            MetricsState::Ok { metrics } => Some(rpcc_store::MetricSample {
                server: m.server.clone(),
                at_ms,
                cpu: metrics.cpu_percent,
                mem: metrics.mem_percent,
                load1: metrics.load[0],
                disk_max: metrics.fs.iter().map(|f| f.percent).fold(0.0_f64, f64::max),
            }),
            _ => None,
        })
        .collect()
}

/// Send `note` to every notifier whose groups (if any) include one of `groups`.
/// The notifier settings of the CLI: `RPCC_TELEGRAM_API` points the Telegram notifier at
/// another Bot API base (a local fake in tests).
pub(crate) fn notifier_settings() -> NotifierSettings {
    NotifierSettings { telegram_api: std::env::var("RPCC_TELEGRAM_API").ok(), ..NotifierSettings::default() }
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
    let retention = inv.monitor.retention.as_duration();
    let sinks = match NotifierSet::from_inventory(&inv, keyring.as_ref(), &notifier_settings()) {
        Ok(n) => n,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let rt = match runtime(&mut err) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let state = state_path(args.state.as_deref(), &args.inventory);
    let mut store = match rt.block_on(SqliteStore::open(&state)) {
        Ok(s) => s,
        Err(e) => return fail(&mut err, format!("state {}: {e}", state.display()), EXIT_INVALID),
    };
    if let Some(seal) = keyring.as_ref().and_then(|k| rpcc_core::deploy::AuditSeal::for_keyring(k).ok()) {
        store = store.with_audit_seal(seal);
    }
    let interval = inv.monitor.interval.as_duration();
    // Certificate renewal runs on its own schedule, through an engine of its own (its
    // keyring loaded again: keys are never copied in memory).
    let renewals = match args.secrets.keyring_for(&inv, &mut err) {
        Ok(k) => rt
            .block_on(rpcc::engine::Engine::open(inv.clone(), &state, k))
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
        monitor.sources.len(),
        monitor.targets.len(),
        interval
    );
    rt.block_on(run_watch(&monitor, &sinks, &store, alerting, (interval, retention), renewals.as_ref()));
    let _ = writeln!(err, "rpcc watch: stopped");
    ExitCode::SUCCESS
}

async fn run_watch(
    monitor: &Monitor,
    sinks: &NotifierSet,
    store: &SqliteStore,
    mut alerting: Alerting,
    (interval, retention): (Duration, Duration),
    renewals: Option<&rpcc::engine::Engine>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    // Jitter: start at a random offset within the first tenth of the interval, so many
    // watchers do not hit the same servers at the same moment.
    let jitter = interval.mul_f64(f64::from(u32::from(std::process::id() as u16 % 100)) / 1000.0);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + jitter, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let every = rpcc::certs::RenewalWatch::EVERY;
    let mut renew_ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + rpcc::certs::RenewalWatch::first_delay(), every);
    renew_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut renewal = rpcc::certs::RenewalWatch::default();
    loop {
        tokio::select! {
            _ = int.recv() => return,
            _ = term.recv() => return,
            _ = ticks.tick() => {}
            _ = renew_ticks.tick(), if renewals.is_some() => {
                if let Some(engine) = renewals {
                    tokio::select! {
                        _ = int.recv() => return,
                        _ = term.recv() => return,
                        () = renew_certificates(engine, &mut renewal, sinks) => {}
                    }
                }
                continue;
            }
        }
        let started = Instant::now();
        let round = tokio::select! {
            _ = int.recv() => return,
            _ = term.recv() => return,
            r = monitor.round() => r,
        };
        let took = started.elapsed();
        if took > interval {
            tracing::warn!(took = ?took, interval = ?interval, "round took longer than the interval; the overlapping round was skipped");
        }
        let now_ms = unix_ms();
        if let Err(e) = store.record_samples(&samples(&round, now_ms)).await {
            tracing::warn!(error = %e, "metric samples not recorded");
        }
        let horizon = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match store.prune_samples(horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "old metric samples pruned"),
            Err(e) => tracing::warn!(error = %e, "metric samples not pruned"),
        }
        let now = now_ms.max(0).unsigned_abs();
        let events: Vec<AlertEvent> = observations(&round)
            .iter()
            .filter_map(|(s, r)| alerting.engine_for(&monitor.groups_of(s)).observe(s, r, now))
            .collect();
        for event in events {
            let groups = monitor.groups_of(&event.subject);
            let outcome = match event.kind {
                rpcc_monitor::AlertKind::Fired => "fired",
                rpcc_monitor::AlertKind::Recovered => "recovered",
            };
            let record =
                AuditEvent::now(&rpcc_core::deploy::local_actor(), AuditAction::Alert, None, outcome, &event.message);
            if let Err(e) = store.append_audit(&record).await {
                tracing::warn!(error = %e, "alert not recorded");
            }
            let note = Notification::alert(event, groups.first().cloned());
            sinks.deliver(&note, &groups).await;
        }
    }
}

/// One scheduled certificate renewal: what is due is renewed and deployed; failures
/// (once per incident), recoveries and renewals go to the notifiers.
async fn renew_certificates(engine: &rpcc::engine::Engine, watch: &mut rpcc::certs::RenewalWatch, sinks: &NotifierSet) {
    match watch.run(engine).await {
        Ok(news) => {
            if let Some(text) = news.message {
                sinks.deliver(&Notification::deploy(text, news.groups.first().cloned()), &news.groups).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "certificate renewal did not run"),
    }
}
