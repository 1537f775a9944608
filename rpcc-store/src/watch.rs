//! [`WatchStore`]: what `rpcc watch` keeps — metric samples, alerts in the audit log, and
//! the members (watch processes) sharing a fleet — on either backend.

use rpcc_core::deploy::{StateStore, StoreError};

use crate::rows::Cols as _;
use crate::{MetricSample, PgStore, SqliteStore, backend};

/// The store of a watch process. Membership: each process heartbeats; the members seen
/// within a time-to-live split the fleet between them (the facade's rendezvous hashing),
/// so each server is checked by exactly one, and a dead member's share passes to the
/// others once its heartbeat is older than the time-to-live.
#[async_trait::async_trait]
pub trait WatchStore: StateStore + std::fmt::Debug {
    /// Record samples (a sample already recorded for that server and moment is replaced).
    async fn record_samples(&self, samples: &[MetricSample]) -> Result<(), StoreError>;
    /// Delete samples older than `before_ms`; how many.
    async fn prune_samples(&self, before_ms: i64) -> Result<u64, StoreError>;
    /// Samples of `server` since `since_ms`, oldest first.
    async fn samples(&self, server: &str, since_ms: i64) -> Result<Vec<MetricSample>, StoreError>;
    /// Record `member` alive at `now_ms`; the members seen since `now_ms - ttl_ms`
    /// (this one included), sorted.
    async fn heartbeat(&self, member: &str, now_ms: i64, ttl_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Remove `member` (a clean stop: its share passes on at once).
    async fn leave(&self, member: &str) -> Result<(), StoreError>;
    /// Recorded deployments by state name (for `/metrics`).
    async fn deployment_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Membership SQL, the same on both backends but for placeholders.
macro_rules! membership {
    ($store:ty, $upsert:literal, $live:literal, $leave:literal) => {
        impl $store {
            async fn heartbeat_members(
                &self,
                member: &str,
                now_ms: i64,
                ttl_ms: i64,
            ) -> Result<Vec<String>, StoreError> {
                let mut tx = self.pool.begin().await.map_err(backend)?;
                sqlx::query($upsert).bind(member).bind(now_ms).execute(&mut *tx).await.map_err(backend)?;
                let found = sqlx::query($live)
                    .bind(now_ms.saturating_sub(ttl_ms))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                found.iter().map(|r| r.text("member")).collect()
            }

            async fn leave_members(&self, member: &str) -> Result<(), StoreError> {
                sqlx::query($leave).bind(member).execute(&self.pool).await.map_err(backend)?;
                Ok(())
            }
        }
    };
}

membership!(
    SqliteStore,
    "INSERT INTO watch_members (member, seen_ms) VALUES (?, ?) ON CONFLICT (member) DO UPDATE SET seen_ms = excluded.seen_ms",
    "SELECT member FROM watch_members WHERE seen_ms >= ? ORDER BY member",
    "DELETE FROM watch_members WHERE member = ?"
);
membership!(
    PgStore,
    "INSERT INTO watch_members (member, seen_ms) VALUES ($1, $2) ON CONFLICT (member) DO UPDATE SET seen_ms = excluded.seen_ms",
    "SELECT member FROM watch_members WHERE seen_ms >= $1 ORDER BY member",
    "DELETE FROM watch_members WHERE member = $1"
);

macro_rules! watch_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl WatchStore for $store {
            async fn record_samples(&self, samples: &[MetricSample]) -> Result<(), StoreError> {
                <$store>::record_samples(self, samples).await
            }
            async fn prune_samples(&self, before_ms: i64) -> Result<u64, StoreError> {
                <$store>::prune_samples(self, before_ms).await
            }
            async fn samples(&self, server: &str, since_ms: i64) -> Result<Vec<MetricSample>, StoreError> {
                <$store>::samples(self, server, since_ms).await
            }
            async fn heartbeat(&self, member: &str, now_ms: i64, ttl_ms: i64) -> Result<Vec<String>, StoreError> {
                self.heartbeat_members(member, now_ms, ttl_ms).await
            }
            async fn leave(&self, member: &str) -> Result<(), StoreError> {
                self.leave_members(member).await
            }
            async fn deployment_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
                let found = sqlx::query("SELECT state, COUNT(*) AS n FROM deployments GROUP BY state ORDER BY state")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
                found.iter().map(|r| Ok((r.text("state")?, u64::try_from(r.int("n")?).unwrap_or(0)))).collect()
            }
        }
    };
}

watch_store!(SqliteStore);
watch_store!(PgStore);
