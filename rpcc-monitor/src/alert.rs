//! Alert rules as a deterministic state machine: thresholds that must hold for a while
//! (or for N consecutive checks) before an incident fires, exactly one message when it
//! fires and one when it recovers, and flap suppression (a condition that clears and
//! returns within the clearing period stays the same incident, with no new message).
//!
//! The engine never reads a clock: every observation carries its time, so tests drive it
//! with any timeline and the scheduler passes the real time.

use std::collections::BTreeMap;
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// What an observation is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subject {
    /// A server's CPU usage (%).
    Cpu {
        /// Server name.
        server: String,
    },
    /// A server's memory usage (%).
    Memory {
        /// Server name.
        server: String,
    },
    /// A file system's usage (%).
    Disk {
        /// Server name.
        server: String,
        /// Mount point.
        mount: String,
    },
    /// A site as one server serves it (HTTP check).
    Site {
        /// Site domain.
        site: String,
        /// Server name.
        server: String,
    },
    /// The certificate a server presents for a site (days until expiry).
    Certificate {
        /// Site domain.
        site: String,
        /// Server name.
        server: String,
    },
    /// Whether a site's names resolve to the servers that serve it.
    Dns {
        /// Site domain.
        site: String,
    },
    /// Whether a server's metrics could be collected at all.
    Metrics {
        /// Server name.
        server: String,
    },
    /// A check plugin's verdict on a site as one server serves it.
    Plugin {
        /// Plugin name (from the inventory).
        plugin: String,
        /// Site domain.
        site: String,
        /// Server name.
        server: String,
    },
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu { server } => write!(f, "{server}: CPU"),
            Self::Memory { server } => write!(f, "{server}: memory"),
            Self::Disk { server, mount } => write!(f, "{server}: disk {mount}"),
            Self::Site { site, server } => write!(f, "{site} on {server}"),
            Self::Certificate { site, server } => write!(f, "{site} on {server}: certificate"),
            Self::Dns { site } => write!(f, "{site}: DNS"),
            Self::Metrics { server } => write!(f, "{server}: metrics"),
            Self::Plugin { plugin, site, server } => write!(f, "{site} on {server}: check {plugin}"),
        }
    }
}

/// One measurement or check result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reading {
    /// A percentage (CPU, memory, disk).
    Percent(f64),
    /// Days until a certificate expires.
    DaysLeft(f64),
    /// A check passed.
    Ok,
    /// A check failed, with why.
    Failed(String),
}

/// When a subject counts as bad, and how long it must stay bad (or good) to change state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesConfig {
    /// CPU above this percentage …
    pub cpu_above: f64,
    /// … for this long (seconds).
    pub cpu_for_secs: u64,
    /// Memory above this percentage …
    pub memory_above: f64,
    /// … for this long (seconds).
    pub memory_for_secs: u64,
    /// Any file system above this percentage (immediately).
    pub disk_above: f64,
    /// A certificate expiring in fewer days than this.
    pub cert_days: f64,
    /// A site failing this many consecutive checks.
    pub site_down_checks: u32,
    /// DNS mismatching this many consecutive checks.
    pub dns_mismatch_checks: u32,
    /// Metrics unreachable this many consecutive rounds.
    pub metrics_down_checks: u32,
    /// A firing incident recovers only after being good this long (seconds; flap suppression).
    pub clear_for_secs: u64,
}

impl Default for AlertRulesConfig {
    fn default() -> Self {
        Self {
            cpu_above: 90.0,
            cpu_for_secs: 300,
            memory_above: 90.0,
            memory_for_secs: 300,
            disk_above: 85.0,
            cert_days: 14.0,
            site_down_checks: 3,
            dns_mismatch_checks: 2,
            metrics_down_checks: 3,
            clear_for_secs: 120,
        }
    }
}

/// A rule configuration that failed validation: the field and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alert rules: {field} = {value} {reason}")]
pub struct RuleConfigError {
    /// The field.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub reason: &'static str,
}

impl AlertRulesConfig {
    /// Validate into [`AlertRules`].
    pub fn build(self) -> Result<AlertRules, RuleConfigError> {
        let pct = |field: &'static str, v: f64| {
            if v.is_finite() && (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(RuleConfigError { field, value: v.to_string(), reason: "must be a percentage (0-100)" })
            }
        };
        pct("cpu_above", self.cpu_above)?;
        pct("memory_above", self.memory_above)?;
        pct("disk_above", self.disk_above)?;
        if !self.cert_days.is_finite() || self.cert_days < 0.0 || self.cert_days > 3650.0 {
            return Err(RuleConfigError {
                field: "cert_days",
                value: self.cert_days.to_string(),
                reason: "must be a number of days (0-3650)",
            });
        }
        for (field, n) in [
            ("site_down_checks", self.site_down_checks),
            ("dns_mismatch_checks", self.dns_mismatch_checks),
            ("metrics_down_checks", self.metrics_down_checks),
        ] {
            if n == 0 || n > 1000 {
                return Err(RuleConfigError { field, value: n.to_string(), reason: "must be 1-1000 checks" });
            }
        }
        for (field, s) in [
            ("cpu_for_secs", self.cpu_for_secs),
            ("memory_for_secs", self.memory_for_secs),
            ("clear_for_secs", self.clear_for_secs),
        ] {
            if s > 7 * 86_400 {
                return Err(RuleConfigError { field, value: s.to_string(), reason: "must be at most a week (604800)" });
            }
        }
        Ok(AlertRules { config: self })
    }
}

/// Validated rules.
#[derive(Clone, Debug)]
pub struct AlertRules {
    config: AlertRulesConfig,
}

/// How long a condition must hold before its state changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    For(Duration),
    Checks(u32),
}

impl AlertRules {
    /// Whether `reading` of `subject` is bad, why, and how long it must stay bad.
    fn judge(&self, subject: &Subject, reading: &Reading) -> (Option<String>, Hold) {
        let c = &self.config;
        let secs = Duration::from_secs;
        match (subject, reading) {
            (Subject::Cpu { .. }, Reading::Percent(v)) => (
                (*v > c.cpu_above).then(|| format!("CPU at {v:.0} % (above {:.0} %)", c.cpu_above)),
                Hold::For(secs(c.cpu_for_secs)),
            ),
            (Subject::Memory { .. }, Reading::Percent(v)) => (
                (*v > c.memory_above).then(|| format!("memory at {v:.0} % (above {:.0} %)", c.memory_above)),
                Hold::For(secs(c.memory_for_secs)),
            ),
            (Subject::Disk { .. }, Reading::Percent(v)) => {
                ((*v > c.disk_above).then(|| format!("{v:.0} % full (above {:.0} %)", c.disk_above)), Hold::Checks(1))
            }
            (Subject::Certificate { .. }, Reading::DaysLeft(d)) => (
                (*d < c.cert_days).then(|| {
                    if *d < 0.0 { format!("expired {:.0} day(s) ago", -d) } else { format!("expires in {d:.1} day(s)") }
                }),
                Hold::Checks(1),
            ),
            (Subject::Site { .. } | Subject::Plugin { .. }, Reading::Failed(why)) => {
                (Some(why.clone()), Hold::Checks(c.site_down_checks))
            }
            (Subject::Dns { .. }, Reading::Failed(why)) => (Some(why.clone()), Hold::Checks(c.dns_mismatch_checks)),
            (Subject::Metrics { .. }, Reading::Failed(why)) => (Some(why.clone()), Hold::Checks(c.metrics_down_checks)),
            // The certificate could not be read at all (handshake failure): at once.
            (Subject::Certificate { .. }, Reading::Failed(why)) => (Some(why.clone()), Hold::Checks(1)),
            // Good readings, and readings of the wrong kind (a caller bug), are good.
            _ => (None, Hold::Checks(1)),
        }
    }
}

/// An incident's state.
#[derive(Clone, Debug, PartialEq)]
enum Incident {
    /// Bad since `since`, `count` checks in a row; not yet long enough to fire.
    Pending { since: Millis, count: u32, why: String },
    /// Fired at `since`.
    Firing { since: Millis, why: String },
    /// Firing, but good since `clear_since`: recovers once good for the clearing period.
    Clearing { since: Millis, clear_since: Millis, why: String },
}

/// What happened to an incident.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The condition held long enough: one message.
    Fired,
    /// The condition stayed clear long enough: one message.
    Recovered,
}

/// An alert or recovery, to send and record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertEvent {
    /// Fired or recovered.
    pub kind: AlertKind,
    /// What it is about.
    pub subject: Subject,
    /// When.
    pub at: Millis,
    /// When the incident began (the first bad observation).
    pub since: Millis,
    /// Human text (no secrets: it is built from names and readings only).
    pub message: String,
}

/// The alert state of every subject.
#[derive(Debug)]
pub struct AlertEngine {
    rules: AlertRules,
    incidents: BTreeMap<Subject, Incident>,
}

impl AlertEngine {
    /// An engine with no open incidents.
    pub fn new(rules: AlertRules) -> Self {
        Self { rules, incidents: BTreeMap::new() }
    }

    /// Subjects with a firing incident.
    pub fn firing(&self) -> impl Iterator<Item = &Subject> {
        self.incidents.iter().filter(|(_, i)| !matches!(i, Incident::Pending { .. })).map(|(s, _)| s)
    }

    /// Feed one observation taken at `now`; returns the alert to send, if any.
    pub fn observe(&mut self, subject: &Subject, reading: &Reading, now: Millis) -> Option<AlertEvent> {
        let (bad, hold) = self.rules.judge(subject, reading);
        let clear_for = self.rules.config.clear_for_secs.saturating_mul(1000);
        let state = self.incidents.remove(subject);
        let held = |since: Millis, count: u32| match hold {
            Hold::For(d) => now.saturating_sub(since) >= u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Hold::Checks(n) => count >= n,
        };
        let (next, event) = match (state, bad) {
            (None, None) => (None, None),
            (None, Some(why)) => {
                if held(now, 1) {
                    (Some(Incident::Firing { since: now, why: why.clone() }), Some((AlertKind::Fired, now, why)))
                } else {
                    (Some(Incident::Pending { since: now, count: 1, why }), None)
                }
            }
            (Some(Incident::Pending { .. }), None) => (None, None), // never fired: nothing to say
            (Some(Incident::Pending { since, count, .. }), Some(why)) => {
                if held(since, count + 1) {
                    (Some(Incident::Firing { since, why: why.clone() }), Some((AlertKind::Fired, since, why)))
                } else {
                    (Some(Incident::Pending { since, count: count + 1, why }), None)
                }
            }
            (Some(Incident::Firing { since, why }), None) => {
                if clear_for == 0 {
                    (None, Some((AlertKind::Recovered, since, why)))
                } else {
                    (Some(Incident::Clearing { since, clear_since: now, why }), None)
                }
            }
            (Some(Incident::Firing { since, .. }), Some(why)) => (Some(Incident::Firing { since, why }), None),
            (Some(Incident::Clearing { since, clear_since, why }), None) => {
                if now.saturating_sub(clear_since) >= clear_for {
                    (None, Some((AlertKind::Recovered, since, why)))
                } else {
                    (Some(Incident::Clearing { since, clear_since, why }), None)
                }
            }
            // Back before the clearing period ended: the same incident, no new message.
            (Some(Incident::Clearing { since, .. }), Some(why)) => (Some(Incident::Firing { since, why }), None),
        };
        if let Some(n) = next {
            self.incidents.insert(subject.clone(), n);
        }
        event.map(|(kind, since, why)| {
            let message = match kind {
                AlertKind::Fired => format!("ALERT {subject}: {why}"),
                AlertKind::Recovered => {
                    let mins = now.saturating_sub(since) / 60_000;
                    format!("RECOVERED {subject} after {mins} min (was: {why})")
                }
            };
            AlertEvent { kind, subject: subject.clone(), at: now, since, message }
        })
    }
}
