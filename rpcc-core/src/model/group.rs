//! Domain groups: a set of servers that serve the same sites, and how to roll out to them.

use std::num::NonZeroU32;

use crate::value::Identifier;

/// A set of servers serving a set of sites.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct DomainGroup {
    /// Unique name, e.g. `eu`.
    pub name: Identifier,
    /// Servers in this group (each exists in the inventory).
    pub servers: Vec<Identifier>,
    /// How a deploy proceeds across the servers.
    pub rollout: Rollout,
    /// Plugins (`[[plugins]]` names) applied to every site of the group, in order.
    pub plugins: Vec<Identifier>,
}

/// Rollout strategy for a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStrategy {
    /// All servers at once, at most `concurrency` in flight.
    All,
    /// One canary server first, then batches of `batch`.
    Canary,
}

/// Rollout parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Rollout {
    /// Strategy.
    pub strategy: RolloutStrategy,
    /// Servers per batch after the canary.
    pub batch: NonZeroU32,
    /// Stop after more than this many failed servers.
    pub max_failed: u32,
    /// At most this many servers deploying at once.
    pub concurrency: NonZeroU32,
    /// On stop, roll back the servers already done.
    pub rollback_on_failure: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::All,
            batch: NonZeroU32::MIN,
            max_failed: 0,
            concurrency: NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN),
            rollback_on_failure: false,
        }
    }
}
