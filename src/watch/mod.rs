//! Watching a fleet: [`Monitor`] runs one round of checks (Glances metrics, site probes
//! pinned to each serving server, DNS, check plugins) and [`Watch`] runs rounds on the
//! inventory's interval with alerts, samples and certificate renewal, until stopped.
//! The CLI's `rpcc check` / `rpcc watch` and the Python package's `Engine.check()` are
//! thin layers over these.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::StreamExt as _;
use rpcc_core::keyring::Keyring;
use rpcc_core::model::{AlertRuleSettings, DnsResolver, Inventory};
use rpcc_monitor::{
    AlertEngine, AlertRulesConfig, DnsProber, DnsReport, GlancesError, GlancesSource, MetricsReport, MetricsState,
    Reading, SiteProber, SiteReport, SiteTarget, Subject, collect_all,
};

#[cfg(feature = "plugins")]
mod plugin_checks;
mod run;
mod shards;
mod stats;

pub use run::{Watch, member_name};

pub use shards::{Shards, owner};
pub use stats::{RoundFacts, WatchStats};

/// Why monitoring could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// A Glances client or a server's Glances settings (its password).
    #[error(transparent)]
    Glances(#[from] GlancesError),
    /// The DNS resolver of `[monitor] dns`.
    #[error("[monitor] dns: {0}")]
    Dns(String),
    /// The inventory's plugins.
    #[cfg(feature = "plugins")]
    #[error(transparent)]
    Plugin(#[from] rpcc_wasm_plugins::PluginError),
    /// The inventory configures plugins and this build has no plugin host.
    #[error("the inventory configures {count} plugin(s), but rpcc is built without its `plugins` feature")]
    PluginsNotBuilt {
        /// How many `[[plugins]]`.
        count: usize,
    },
    /// Alert rules out of range.
    #[error("{field}: {reason}")]
    Rules {
        /// `monitor.rules` or `monitor.group_rules[i] (group)`.
        field: String,
        /// Why.
        reason: String,
    },
}

impl WatchError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Glances(e) => e.is_retryable(),
            #[cfg(feature = "plugins")]
            Self::Plugin(e) => e.is_retryable(),
            Self::Dns(_) | Self::Rules { .. } | Self::PluginsNotBuilt { .. } => false,
        }
    }
}

/// A check plugin's verdict on a site on a server.
#[derive(Debug, serde::Serialize)]
pub struct PluginCheckRow {
    /// The site.
    pub site: String,
    /// The server it was checked on.
    pub server: String,
    /// The plugin.
    pub plugin: String,
    /// `ok`, `warn`, `fail` or `error` (the plugin itself failed).
    pub status: String,
    /// The plugin's message.
    pub message: String,
}

/// One monitoring round: every server's metrics, every (site, server) probe, DNS checks
/// and check plugins. Serialized as `{"servers", "sites", "dns", "plugins", "failed"}`
/// (the CLI's `check --json`, Python's `Engine.check()`).
#[derive(Debug)]
pub struct Round {
    /// Glances metrics per server that has Glances settings.
    pub metrics: Vec<MetricsReport>,
    /// HTTP(S) status, latency and certificate per site and serving server.
    pub sites: Vec<SiteReport>,
    /// Whether each site's names resolve to its servers (`[monitor] dns`).
    pub dns: Vec<DnsReport>,
    /// Check plugins' verdicts.
    pub plugins: Vec<PluginCheckRow>,
}

impl serde::Serialize for Round {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut doc = serializer.serialize_struct("Round", 5)?;
        doc.serialize_field("servers", &self.metrics)?;
        doc.serialize_field("sites", &self.sites)?;
        doc.serialize_field("dns", &self.dns)?;
        doc.serialize_field("plugins", &self.plugins)?;
        doc.serialize_field("failed", &self.failed())?;
        doc.end()
    }
}

impl Round {
    /// Whether anything is wrong: metrics unavailable, a DNS problem, a site down (no
    /// answer or 5xx) or its certificate unreadable, a check plugin failing.
    pub fn failed(&self) -> bool {
        self.failed_checks() > 0
    }

    /// How many checks failed (see [`Round::failed`]).
    pub fn failed_checks(&self) -> usize {
        self.metrics.iter().filter(|m| !matches!(m.state, MetricsState::Ok { .. })).count()
            + self.dns.iter().filter(|d| d.problem.is_some()).count()
            + self
                .sites
                .iter()
                .filter(|s| s.http.as_ref().map_or(true, |h| h.status >= 500) || matches!(s.cert, Some(Err(_))))
                .count()
            + self.plugins.iter().filter(|p| p.status == "fail" || p.status == "error").count()
    }
}

/// A site's DNS check: its names (wildcards left out) and its servers' addresses.
struct DnsTarget {
    site: String,
    names: Vec<String>,
    expected: Vec<IpAddr>,
}

/// Checks a fleet: Glances metrics, site probes pinned to each serving server, DNS and
/// check plugins, built once from an inventory (clients, targets, plugins) and run as
/// many rounds as asked.
pub struct Monitor {
    inv: Arc<Inventory>,
    sources: Vec<Arc<GlancesSource>>,
    targets: Vec<SiteTarget>,
    prober: Arc<SiteProber>,
    #[cfg(feature = "plugins")]
    plugins: Option<Arc<rpcc_wasm_plugins::PluginSet>>,
    concurrency: usize,
    dns: Option<(DnsProber, Vec<DnsTarget>)>,
    groups: GroupIndex,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("glances", &self.sources.len())
            .field("site_checks", &self.targets.len())
            .field("dns", &self.dns.as_ref().map(|(_, c)| c.len()))
            .finish()
    }
}

impl Monitor {
    /// Set up the checks of `inv` (Glances passwords opened with `keyring`; site names
    /// of servers given by name are resolved now).
    pub async fn new(inv: Inventory, keyring: Option<&Keyring>) -> Result<Self, WatchError> {
        let timeout = inv.monitor.timeout.as_duration();
        let http = GlancesSource::client(timeout)?;
        let mut sources = Vec::new();
        for s in &inv.servers {
            if let Some(src) = GlancesSource::for_server(s, keyring, http.clone())? {
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
                    DnsResolver::Server(addr) => DnsProber::with_nameserver(*addr, timeout).map_err(WatchError::Dns)?,
                    _ => DnsProber::system(timeout).map_err(WatchError::Dns)?,
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
        #[cfg(feature = "plugins")]
        let plugins = crate::engine::load_plugins(&inv)?;
        #[cfg(not(feature = "plugins"))]
        if !inv.plugins.is_empty() {
            return Err(WatchError::PluginsNotBuilt { count: inv.plugins.len() });
        }
        Ok(Self {
            groups: GroupIndex::new(&inv),
            inv: Arc::new(inv),
            sources,
            targets,
            prober: Arc::new(SiteProber::new(timeout)),
            #[cfg(feature = "plugins")]
            plugins,
            concurrency,
            dns,
        })
    }

    /// Servers with Glances settings.
    pub fn glances_servers(&self) -> usize {
        self.sources.len()
    }

    /// (site, serving server) pairs probed each round.
    pub fn site_checks(&self) -> usize {
        self.targets.len()
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inv
    }

    /// One round of every check, at most `[monitor] concurrency` at once.
    pub async fn round(&self) -> Round {
        self.round_for(&|_| true).await
    }

    /// One round of the checks `owns` selects: a server's metrics, site probes and check
    /// plugins when `owns(<server>)`, a site's DNS check when `owns("site:<domain>")`
    /// (a watch process sharing the fleet with others: [`Shards::owns`]).
    pub async fn round_for(&self, owns: &(dyn Fn(&str) -> bool + Sync)) -> Round {
        let sources: Vec<Arc<GlancesSource>> = self.sources.iter().filter(|s| owns(s.server())).cloned().collect();
        let metrics = collect_all(&sources, self.concurrency);
        let sites =
            futures_util::stream::iter(self.targets.iter().filter(|t| owns(&t.server)).map(|t| self.prober.probe(t)))
                .buffered(self.concurrency)
                .collect::<Vec<_>>();
        let dns = async {
            match &self.dns {
                None => Vec::new(),
                Some((prober, checks)) => {
                    futures_util::stream::iter(
                        checks
                            .iter()
                            .filter(|c| owns(&format!("site:{}", c.site)))
                            .map(|c| prober.check(&c.site, &c.names, &c.expected)),
                    )
                    .buffered(self.concurrency)
                    .collect::<Vec<_>>()
                    .await
                }
            }
        };
        #[cfg(feature = "plugins")]
        let plugin_checks = plugin_checks::run(self, owns);
        #[cfg(not(feature = "plugins"))]
        let plugin_checks = std::future::ready(Vec::new());
        let (metrics, sites, dns, plugins) = tokio::join!(metrics, sites, dns, plugin_checks);
        Round { metrics, sites, dns, plugins }
    }

    /// The groups an alert subject belongs to (for notifier routing).
    pub fn groups_of(&self, subject: &Subject) -> Vec<String> {
        let found = match subject {
            Subject::Cpu { server }
            | Subject::Memory { server }
            | Subject::Disk { server, .. }
            | Subject::Metrics { server } => self.groups.servers.get(server.as_str()),
            Subject::Site { site, .. }
            | Subject::Certificate { site, .. }
            | Subject::Dns { site }
            | Subject::Plugin { site, .. } => self.groups.sites.get(site.as_str()),
            _ => None,
        };
        found.cloned().unwrap_or_default()
    }
}

/// Which groups each server and each site belongs to, in inventory order: built once,
/// so routing an alert is a lookup (a scan of every group and site per alert subject
/// took minutes per round at 1,000 servers and 5,000 sites).
#[derive(Debug, Default)]
struct GroupIndex {
    servers: std::collections::HashMap<String, Vec<String>>,
    sites: std::collections::HashMap<String, Vec<String>>,
}

impl GroupIndex {
    fn new(inv: &Inventory) -> Self {
        let mut index = Self::default();
        for g in &inv.groups {
            for m in &g.servers {
                index.servers.entry(m.to_string()).or_default().push(g.name.to_string());
            }
        }
        for site in &inv.sites {
            if inv.groups.iter().any(|g| g.name == site.group) {
                let groups = index.sites.entry(site.domain.to_string()).or_default();
                if !groups.contains(&site.group.to_string()) {
                    groups.push(site.group.to_string());
                }
            }
        }
        index
    }
}

/// Every (subject, reading) of a round.
pub fn observations(round: &Round) -> Vec<(Subject, Reading)> {
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

/// A metrics state in words.
pub fn state_text(s: &MetricsState) -> String {
    match s {
        MetricsState::Ok { .. } => "ok".into(),
        MetricsState::Unreachable { reason } => format!("glances unreachable: {reason}"),
        MetricsState::Unauthorized { status } => format!("glances refused the credentials (HTTP {status})"),
        MetricsState::Malformed { endpoint, reason } => format!("glances answered badly on {endpoint}: {reason}"),
        _ => "unknown".into(),
    }
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
#[derive(Debug)]
pub struct Alerting {
    default: AlertEngine,
    groups: Vec<(String, AlertEngine)>,
}

impl Alerting {
    /// The inventory's `[monitor] rules` and `group_rules`.
    pub fn new(inv: &Inventory) -> Result<Self, WatchError> {
        let base = &inv.monitor.rules;
        let rules_error = |field: String, e: &dyn std::fmt::Display| WatchError::Rules { field, reason: e.to_string() };
        let default =
            AlertEngine::new(alert_config(base).build().map_err(|e| rules_error("monitor.rules".into(), &e))?);
        let mut groups = Vec::new();
        for (i, g) in inv.monitor.group_rules.iter().enumerate() {
            let rules = alert_config(&base.overlaid(&g.rules))
                .build()
                .map_err(|e| rules_error(format!("monitor.group_rules[{i}] ({})", g.group), &e))?;
            groups.push((g.group.to_string(), AlertEngine::new(rules)));
        }
        Ok(Self { default, groups })
    }

    /// The engine for a subject in `groups`: the first group with its own rules.
    pub fn engine_for(&mut self, groups: &[String]) -> &mut AlertEngine {
        match self.groups.iter().position(|(g, _)| groups.contains(g)) {
            Some(i) => &mut self.groups[i].1,
            None => &mut self.default,
        }
    }
}

/// Metric samples of a round (servers whose Glances answered).
pub fn samples(round: &Round, at_ms: i64) -> Vec<rpcc_store::MetricSample> {
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
