//! [`WatchStats`]: what a running watch has done, for a `/metrics` endpoint (Prometheus
//! text format) and a `/healthz` check. Updated by [`super::Watch`]; read from any thread.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters and the last round's facts.
#[derive(Debug, Default)]
pub struct WatchStats {
    rounds: AtomicU64,
    takeovers: AtomicU64,
    alerts_fired: AtomicU64,
    alerts_recovered: AtomicU64,
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    finished: Option<Instant>,
    took: Duration,
    failed_checks: usize,
    members: usize,
    owned_servers: usize,
    /// (site, server, days until the served certificate expires), from the last round.
    certificates: Vec<(String, String, f64)>,
}

/// One finished round, as the watch reports it.
#[derive(Debug, Clone, Default)]
pub struct RoundFacts {
    /// How long it took.
    pub took: Duration,
    /// Whether it was a takeover of a departed member's servers.
    pub takeover: bool,
    /// Failed checks in it (metrics unavailable, site down, DNS problem, plugin failing).
    pub failed_checks: usize,
    /// Live watch members, this one included.
    pub members: usize,
    /// Servers this member checks (their metrics, site probes and check plugins).
    pub owned_servers: usize,
    /// (site, server, days until the served certificate expires).
    pub certificates: Vec<(String, String, f64)>,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl WatchStats {
    /// Record a finished round.
    pub fn round(&self, facts: RoundFacts) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if facts.takeover {
            self.takeovers.fetch_add(1, Ordering::Relaxed);
        }
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.finished = Some(Instant::now());
        last.took = facts.took;
        last.failed_checks = facts.failed_checks;
        last.members = facts.members;
        last.owned_servers = facts.owned_servers;
        if !facts.takeover {
            last.certificates = facts.certificates;
        }
    }

    /// Record alerts sent.
    pub fn alerts(&self, fired: u64, recovered: u64) {
        self.alerts_fired.fetch_add(fired, Ordering::Relaxed);
        self.alerts_recovered.fetch_add(recovered, Ordering::Relaxed);
    }

    /// Rounds finished so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Healthy: a round finished within `2 × interval` (or none was due yet: the watch
    /// started less than `2 × interval` ago).
    pub fn healthy(&self, started: Instant, interval: Duration) -> bool {
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = last.finished.unwrap_or(started).elapsed();
        since <= interval * 2
    }

    /// The Prometheus text exposition of these stats plus `deploys` ((state, count) from
    /// the store).
    pub fn prometheus(&self, deploys: &[(String, u64)]) -> String {
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |v: String| vec![(String::new(), v)];
        metric("rpcc_watch_rounds_total", "counter", "Monitoring rounds finished.", &plain(self.rounds().to_string()));
        metric(
            "rpcc_watch_takeovers_total",
            "counter",
            "Extra rounds for the servers of a watch member that left or died.",
            &plain(self.takeovers.load(Ordering::Relaxed).to_string()),
        );
        metric(
            "rpcc_watch_last_round_seconds",
            "gauge",
            "Duration of the last round.",
            &plain(format!("{:.3}", last.took.as_secs_f64())),
        );
        metric(
            "rpcc_watch_last_round_failed_checks",
            "gauge",
            "Failed checks in the last round.",
            &plain(last.failed_checks.to_string()),
        );
        metric(
            "rpcc_watch_members",
            "gauge",
            "Live watch processes sharing the fleet.",
            &plain(last.members.to_string()),
        );
        metric(
            "rpcc_watch_owned_servers",
            "gauge",
            "Servers this watch process checks (the others' are checked by the other members).",
            &plain(last.owned_servers.to_string()),
        );
        metric(
            "rpcc_alerts_total",
            "counter",
            "Alerts sent, by kind.",
            &[
                ("{kind=\"fired\"}".into(), self.alerts_fired.load(Ordering::Relaxed).to_string()),
                ("{kind=\"recovered\"}".into(), self.alerts_recovered.load(Ordering::Relaxed).to_string()),
            ],
        );
        let deploys: Vec<(String, String)> =
            deploys.iter().map(|(state, n)| (format!("{{state=\"{}\"}}", escape(state)), n.to_string())).collect();
        metric("rpcc_deployments_total", "counter", "Recorded deployments, by outcome.", &deploys);
        let certs: Vec<(String, String)> = last
            .certificates
            .iter()
            .map(|(site, server, days)| {
                (format!("{{site=\"{}\",server=\"{}\"}}", escape(site), escape(server)), format!("{days:.2}"))
            })
            .collect();
        metric(
            "rpcc_certificate_days_left",
            "gauge",
            "Days until the certificate a server serves for a site expires.",
            &certs,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_metric_and_escapes_labels() {
        let stats = WatchStats::default();
        stats.round(RoundFacts {
            took: Duration::from_millis(250),
            failed_checks: 2,
            members: 3,
            owned_servers: 40,
            certificates: vec![("a\"b.example".into(), "s0".into(), 10.0)],
            ..RoundFacts::default()
        });
        stats.alerts(1, 0);
        let text = stats.prometheus(&[("succeeded".into(), 7), ("rolled_back".into(), 1)]);
        for line in [
            "rpcc_watch_rounds_total 1",
            "rpcc_watch_last_round_seconds 0.250",
            "rpcc_watch_members 3",
            "rpcc_alerts_total{kind=\"fired\"} 1",
            "rpcc_deployments_total{state=\"rolled_back\"} 1",
            "rpcc_certificate_days_left{site=\"a\\\"b.example\",server=\"s0\"} 10.00",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(stats.healthy(Instant::now(), Duration::from_secs(1)));
    }

    #[test]
    fn health_is_lost_when_no_round_finished_within_two_intervals() {
        let interval = Duration::from_millis(100);
        let stats = WatchStats::default();
        let now = Instant::now();
        assert!(stats.healthy(now, interval), "just started: no round due yet");
        let long_ago = now.checked_sub(Duration::from_millis(250)).expect("an instant 250 ms ago");
        assert!(!stats.healthy(long_ago, interval), "started 2.5 intervals ago, no round since");
        stats.round(RoundFacts::default());
        assert!(stats.healthy(long_ago, interval), "a round just finished");
    }
}
