//! [`Watch`]: `rpcc watch` as a library. Rounds on the inventory's interval, metric
//! samples kept for the retention, alerts to the audit log and the notifiers, and
//! certificate renewal, until a stop future completes. Several watch processes on one
//! shared state (PostgreSQL, or one SQLite file on one machine) split the fleet: each
//! heartbeats, each server is checked by exactly one live member per round, and a dead
//! member's servers are taken over as soon as its heartbeat expires (well within one
//! interval), by an extra round of just those servers. Rounds claim their keys in the
//! store, so when the split changes between two members' rounds (a join, a departure)
//! a server the previous owner checked moments ago is not checked again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rpcc_core::deploy::{AuditAction, AuditEvent, local_actor, unix_ms};
use rpcc_monitor::{AlertEvent, Notification, NotifierSet};
use rpcc_store::WatchStore;

use super::{Alerting, Monitor, Round, RoundFacts, Shards, WatchStats, samples};
use crate::certs::RenewalWatch;
use crate::engine::Engine;

/// This process's default member name: `<hostname>:<pid>`.
pub fn member_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A watch: the checks, where alerts go, the store, and this member's name.
pub struct Watch<'a> {
    /// The checks.
    pub monitor: &'a Monitor,
    /// Where alerts go.
    pub notifiers: &'a NotifierSet,
    /// Samples, alerts (audit log) and the members sharing the fleet.
    pub store: &'a dyn WatchStore,
    /// Alert rules and their state.
    pub alerting: Alerting,
    /// The engine that renews certificates, if any (run by one member only).
    pub renewals: Option<&'a Engine>,
    /// This process's name among the watch processes sharing the fleet
    /// ([`member_name`] by default); unique per process.
    pub member: String,
    /// Where rounds and alerts are counted (for `/metrics` and `/healthz`), if anywhere.
    pub stats: Option<&'a WatchStats>,
    /// Called whenever the loop makes progress (each heartbeat and round): a service
    /// manager's watchdog ping. A stuck loop stops calling it.
    pub alive: Option<&'a (dyn Fn() + Sync)>,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("monitor", self.monitor).field("member", &self.member).finish()
    }
}

/// The keys a member may own in a round: every server, every site (DNS checks).
fn keys(monitor: &Monitor) -> BTreeSet<String> {
    let inv = monitor.inventory();
    inv.servers
        .iter()
        .map(|s| s.name.to_string())
        .chain(inv.sites.iter().map(|s| format!("site:{}", s.domain)))
        .collect()
}

impl Watch<'_> {
    /// How often membership is refreshed, and how long a silent member still counts.
    fn membership_timing(interval: Duration) -> (Duration, Duration) {
        let beat = (interval / 5).clamp(Duration::from_millis(100), Duration::from_secs(10));
        (beat, beat * 5 / 2)
    }

    /// Heartbeat and read the live members; on a store failure the last known split is
    /// kept (at worst a server is checked twice, never not at all).
    async fn refresh(&self, shards: &mut Shards, ttl: Duration) {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        match self.store.heartbeat(&self.member, unix_ms(), ttl_ms).await {
            Ok(members) => {
                let next = Shards::new(members, &self.member);
                if next.members() != shards.members() {
                    tracing::info!(member = %self.member, members = ?next.members(), "watch members changed");
                }
                *shards = next;
            }
            Err(e) => tracing::warn!(error = %e, "watch heartbeat failed; keeping the last split"),
        }
    }

    /// The keys of `wanted` nobody checked in the last half interval, now claimed by this
    /// member; on a store failure all of them (at worst checked twice, never not at all).
    async fn claim(&self, wanted: &BTreeSet<String>, interval: Duration) -> BTreeSet<String> {
        let keys: Vec<String> = wanted.iter().cloned().collect();
        let gap_ms = i64::try_from((interval / 2).as_millis()).unwrap_or(i64::MAX);
        match self.store.claim_checks(&keys, unix_ms(), gap_ms).await {
            Ok(claimed) => {
                if claimed.len() < keys.len() {
                    tracing::debug!(
                        member = %self.member,
                        skipped = keys.len() - claimed.len(),
                        "keys checked by another member moments ago are left for the next round"
                    );
                }
                claimed.into_iter().collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch claims failed; checking every owned key");
                wanted.clone()
            }
        }
    }

    /// Watch until `stop` completes (a signal, a stop handle's future); a round in
    /// progress is abandoned then, and this member leaves the split.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let inv = self.monitor.inventory();
        let (interval, retention) = (inv.monitor.interval.as_duration(), inv.monitor.retention.as_duration());
        let (beat, ttl) = Self::membership_timing(interval);
        // Jitter: start at a random offset within the first tenth of the interval, so many
        // watchers do not hit the same servers at the same moment.
        let jitter = interval.mul_f64(f64::from(u32::from(std::process::id() as u16 % 100)) / 1000.0);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + jitter, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut beats = tokio::time::interval(beat);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut renew_ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + RenewalWatch::first_delay(), RenewalWatch::EVERY);
        renew_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut renewal = RenewalWatch::default();
        let all_keys = keys(self.monitor);
        let mut shards = Shards::alone(&self.member);
        // The keys checked in the current interval (by this member's last round).
        let mut checked: BTreeSet<String> = BTreeSet::new();
        loop {
            let takeover = tokio::select! {
                () = &mut stop => break,
                _ = ticks.tick() => false,
                _ = beats.tick() => true,
                _ = renew_ticks.tick(), if self.renewals.is_some() => {
                    self.refresh(&mut shards, ttl).await;
                    if let (Some(engine), true) = (self.renewals, shards.owns("job:certificate-renewal")) {
                        tokio::select! {
                            () = &mut stop => break,
                            () = renew_certificates(engine, &mut renewal, self.notifiers) => {}
                        }
                    }
                    continue;
                }
            };
            self.refresh(&mut shards, ttl).await;
            if let Some(alive) = self.alive {
                alive();
            }
            let owned: BTreeSet<String> = all_keys.iter().filter(|k| shards.owns(k)).cloned().collect();
            let wanted: BTreeSet<String> = if takeover {
                // Keys this member gained since its last round (a member died or left):
                // checked now rather than at the next tick.
                if checked.is_empty() {
                    continue;
                }
                owned.difference(&checked).cloned().collect()
            } else {
                owned
            };
            if wanted.is_empty() {
                continue;
            }
            // What another member checked in the last half interval (it owned the key
            // before a join or a departure changed the split) is not checked again.
            let todo = self.claim(&wanted, interval).await;
            if takeover {
                checked.extend(wanted);
            } else {
                checked = wanted;
            }
            if todo.is_empty() {
                continue;
            }
            if takeover {
                tracing::info!(member = %self.member, keys = todo.len(), "taking over the checks of a member that left");
            }
            let started = Instant::now();
            let selected = |key: &str| todo.contains(key);
            let round = tokio::select! {
                () = &mut stop => break,
                r = self.monitor.round_for(&selected) => r,
            };
            let took = started.elapsed();
            if took > interval {
                tracing::warn!(took = ?took, interval = ?interval, "round took longer than the interval; the overlapping round was skipped");
            }
            if let Some(stats) = self.stats {
                stats.round(RoundFacts {
                    took,
                    takeover,
                    failed_checks: round.failed_checks(),
                    members: shards.members().len(),
                    owned_servers: self
                        .monitor
                        .inventory()
                        .servers
                        .iter()
                        .filter(|s| shards.owns(s.name.as_str()))
                        .count(),
                    certificates: round
                        .sites
                        .iter()
                        .filter_map(|s| match &s.cert {
                            Some(Ok(c)) => Some((s.site.clone(), s.server.clone(), c.days_left)),
                            _ => None,
                        })
                        .collect(),
                });
            }
            self.after_round(&round, retention).await;
            if let Some(alive) = self.alive {
                alive();
            }
        }
        if let Err(e) = self.store.leave(&self.member).await {
            tracing::warn!(error = %e, "could not leave the watch members; others take over when the heartbeat expires");
        }
    }

    /// Keep the round's samples, prune old ones, and turn its readings into alerts.
    async fn after_round(&mut self, round: &Round, retention: Duration) {
        let now_ms = unix_ms();
        if let Err(e) = self.store.record_samples(&samples(round, now_ms)).await {
            tracing::warn!(error = %e, "metric samples not recorded");
        }
        let horizon = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match self.store.prune_samples(horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "old metric samples pruned"),
            Err(e) => tracing::warn!(error = %e, "metric samples not pruned"),
        }
        let now = now_ms.max(0).unsigned_abs();
        let monitor = self.monitor;
        let events: Vec<AlertEvent> = super::observations(round)
            .iter()
            .filter_map(|(s, r)| self.alerting.engine_for(&monitor.groups_of(s)).observe(s, r, now))
            .collect();
        if let Some(stats) = self.stats {
            let fired = events.iter().filter(|e| e.kind == rpcc_monitor::AlertKind::Fired).count();
            stats.alerts(fired as u64, (events.len() - fired) as u64);
        }
        for event in events {
            let groups = monitor.groups_of(&event.subject);
            let outcome = match event.kind {
                rpcc_monitor::AlertKind::Fired => "fired",
                rpcc_monitor::AlertKind::Recovered => "recovered",
            };
            let record = AuditEvent::now(&local_actor(), AuditAction::Alert, None, outcome, &event.message);
            if let Err(e) = self.store.append_audit(&record).await {
                tracing::warn!(error = %e, "alert not recorded");
            }
            let note = Notification::alert(event, groups.first().cloned());
            self.notifiers.deliver(&note, &groups).await;
        }
    }
}

/// One scheduled certificate renewal: what is due is renewed and deployed; failures
/// (once per incident), recoveries and renewals go to the notifiers.
async fn renew_certificates(engine: &Engine, watch: &mut RenewalWatch, sinks: &NotifierSet) {
    match watch.run(engine).await {
        Ok(news) => {
            if let Some(text) = news.message {
                sinks.deliver(&Notification::deploy(text, news.groups.first().cloned()), &news.groups).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "certificate renewal did not run"),
    }
}
