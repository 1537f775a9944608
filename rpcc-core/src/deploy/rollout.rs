//! Fleet rollout: all at once with bounded concurrency, or a canary then batches; stop
//! after `max_failed`; optionally roll back the servers already done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use futures_util::StreamExt as _;

use super::engine::{DeploySource, Deployer, ProgressEvent, ServerReport};
use crate::model::{DomainGroup, Rollout, RolloutStrategy, Server, Site};
use crate::store::{AuditAction, DeploymentState};
use crate::transport::Transport;

/// One server of a rollout: what to activate and how to reach it.
pub struct FleetTarget<'a> {
    /// The server.
    pub server: &'a Server,
    /// The sites it serves (probed after the reload).
    pub sites: Vec<&'a Site>,
    /// What to activate.
    pub source: DeploySource,
    /// Its transport.
    pub transport: Arc<dyn Transport>,
}

/// How a rollout proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RolloutPolicy {
    /// All at once, or canary then batches.
    pub strategy: RolloutStrategy,
    /// Servers per batch after the canary.
    pub batch: usize,
    /// Servers deploying at once.
    pub concurrency: usize,
    /// Stop once more than this many servers failed.
    pub max_failed: u32,
    /// On stop, roll back the servers this run already changed.
    pub rollback_on_failure: bool,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self::from_rollout(&Rollout::default())
    }
}

impl RolloutPolicy {
    /// From a group's rollout settings.
    pub fn from_rollout(r: &Rollout) -> Self {
        Self {
            strategy: r.strategy,
            batch: r.batch.get() as usize,
            concurrency: r.concurrency.get() as usize,
            max_failed: r.max_failed,
            rollback_on_failure: r.rollback_on_failure,
        }
    }

    /// The most careful combination of several groups' settings (a server in two
    /// groups is deployed once): canary if any group asks for it, the smallest batch,
    /// concurrency and `max_failed`, rollback if any group asks for it.
    pub fn strictest<'a>(groups: impl IntoIterator<Item = &'a DomainGroup>) -> Self {
        let mut it = groups.into_iter().map(|g| Self::from_rollout(&g.rollout));
        let Some(first) = it.next() else { return Self::default() };
        it.fold(first, |a, b| Self {
            strategy: if a.strategy == RolloutStrategy::Canary || b.strategy == RolloutStrategy::Canary {
                RolloutStrategy::Canary
            } else {
                RolloutStrategy::All
            },
            batch: a.batch.min(b.batch),
            concurrency: a.concurrency.min(b.concurrency),
            max_failed: a.max_failed.min(b.max_failed),
            rollback_on_failure: a.rollback_on_failure || b.rollback_on_failure,
        })
    }

    /// Server indexes grouped into waves.
    pub fn waves(&self, n: usize) -> Vec<Vec<usize>> {
        match self.strategy {
            RolloutStrategy::All => {
                if n == 0 {
                    vec![]
                } else {
                    vec![(0..n).collect()]
                }
            }
            RolloutStrategy::Canary => {
                let mut waves = Vec::new();
                if n > 0 {
                    waves.push(vec![0]);
                }
                let rest: Vec<usize> = (1..n).collect();
                waves.extend(rest.chunks(self.batch.max(1)).map(<[usize]>::to_vec));
                waves
            }
        }
    }
}

/// An operator's changes to the groups' rollout policy for one run; `None` keeps the
/// group's setting.
///
/// ```
/// use rpcc_core::deploy::{RolloutOverrides, RolloutPolicy};
/// use rpcc_core::model::RolloutStrategy;
/// let o = RolloutOverrides { strategy: Some(RolloutStrategy::Canary), batch: Some(0), ..Default::default() };
/// let p = o.apply_to(RolloutPolicy::default());
/// assert_eq!((p.strategy, p.batch), (RolloutStrategy::Canary, 1)); // batches hold one server at least
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RolloutOverrides {
    /// All at once, or canary then batches.
    pub strategy: Option<RolloutStrategy>,
    /// Servers per batch after the canary (at least 1).
    pub batch: Option<usize>,
    /// Servers deploying at once (at least 1).
    pub concurrency: Option<usize>,
    /// Stop once more than this many servers failed.
    pub max_failed: Option<u32>,
    /// On stop, roll back the servers this run already changed.
    pub rollback_on_failure: Option<bool>,
}

impl RolloutOverrides {
    /// `policy` with these changes.
    pub fn apply_to(&self, mut policy: RolloutPolicy) -> RolloutPolicy {
        if let Some(s) = self.strategy {
            policy.strategy = s;
        }
        if let Some(b) = self.batch {
            policy.batch = b.max(1);
        }
        if let Some(c) = self.concurrency {
            policy.concurrency = c.max(1);
        }
        if let Some(m) = self.max_failed {
            policy.max_failed = m;
        }
        if let Some(r) = self.rollback_on_failure {
            policy.rollback_on_failure = r;
        }
        policy
    }
}

/// What a rollout did.
#[derive(Debug, serde::Serialize)]
pub struct FleetReport {
    /// One report per target, in target order (skipped servers included).
    pub servers: Vec<ServerReport>,
    /// Why the rollout stopped early, if it did.
    pub stopped: Option<String>,
    /// Roll-backs of servers this run had changed (after a stop, if asked for).
    pub rolled_back: Vec<ServerReport>,
}

impl FleetReport {
    /// Servers whose outcome counts as a failure.
    pub fn failed(&self) -> usize {
        self.servers.iter().filter(|r| r.state.is_failure()).count()
    }
}

impl Deployer {
    /// Deploy `targets` following `policy`.
    pub async fn rollout(&self, targets: &[FleetTarget<'_>], policy: &RolloutPolicy) -> FleetReport {
        let failed = AtomicU32::new(0);
        let stop = AtomicBool::new(false);
        let mut slots: Vec<Option<ServerReport>> = (0..targets.len()).map(|_| None).collect();
        let mut stopped = None;
        for wave in policy.waves(targets.len()) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let results: Vec<(usize, ServerReport)> = futures_util::stream::iter(wave)
                .map(|i| {
                    let (failed, stop) = (&failed, &stop);
                    async move {
                        let t = &targets[i];
                        if stop.load(Ordering::SeqCst) {
                            return (i, skipped(t, "the rollout stopped before this server"));
                        }
                        let r =
                            self.run(&*t.transport, t.server, &t.sites, t.source.clone(), action_of(&t.source)).await;
                        if r.state.is_failure() && failed.fetch_add(1, Ordering::SeqCst) + 1 > policy.max_failed {
                            stop.store(true, Ordering::SeqCst);
                        }
                        (i, r)
                    }
                })
                .buffer_unordered(policy.concurrency.max(1))
                .collect()
                .await;
            for (i, r) in results {
                slots[i] = Some(r);
            }
            if stop.load(Ordering::SeqCst) && stopped.is_none() {
                let reason = format!(
                    "{} server(s) failed (max_failed = {}); remaining servers skipped",
                    failed.load(Ordering::SeqCst),
                    policy.max_failed
                );
                self.emit(ProgressEvent::Stopped { reason: reason.clone() });
                stopped = Some(reason);
            }
        }
        let servers: Vec<ServerReport> = slots
            .into_iter()
            .zip(targets)
            .map(|(r, t)| r.unwrap_or_else(|| skipped(t, "the rollout stopped before this server")))
            .collect();

        let mut rolled_back = Vec::new();
        if stopped.is_some() && policy.rollback_on_failure {
            for (r, t) in servers.iter().zip(targets) {
                if r.state != DeploymentState::Succeeded {
                    continue;
                }
                if let Some(prev) = &r.previous {
                    rolled_back.push(self.rollback(&*t.transport, t.server, &t.sites, prev).await);
                }
            }
        }
        FleetReport { servers, stopped, rolled_back }
    }
}

fn action_of(source: &DeploySource) -> AuditAction {
    match source {
        DeploySource::Generation(_) => AuditAction::Deploy,
        DeploySource::Existing(_) => AuditAction::Rollback,
    }
}

fn skipped(t: &FleetTarget<'_>, why: &str) -> ServerReport {
    let name = t.server.name.to_string();
    ServerReport::new(&name, action_of(&t.source), t.source.id(), DeploymentState::Skipped, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_then_batches() {
        let p = RolloutPolicy { strategy: RolloutStrategy::Canary, batch: 2, ..RolloutPolicy::default() };
        assert_eq!(p.waves(6), vec![vec![0], vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(p.waves(1), vec![vec![0]]);
        assert!(p.waves(0).is_empty());
        let all = RolloutPolicy::default();
        assert_eq!(all.waves(3), vec![vec![0, 1, 2]]);
    }
}
