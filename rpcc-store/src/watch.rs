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
    /// Claim `keys` for a check at `now_ms`, atomically: returns the keys nobody claimed
    /// after `now_ms - min_gap_ms` (in no particular order) and records them as claimed
    /// now. Two members that both think they own a key (one joined or left between
    /// their rounds) therefore never both check it within `min_gap_ms`.
    async fn claim_checks(&self, keys: &[String], now_ms: i64, min_gap_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Recorded deployments by state name (for `/metrics`).
    async fn deployment_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Membership SQL, the same on both backends but for placeholders; the claim statement
/// takes the keys as one parameter (`$keys`: how that parameter is bound).
macro_rules! membership {
    ($store:ty, $upsert:literal, $live:literal, $leave:literal, $claim:literal, $keys:expr) => {
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

            async fn claim(&self, keys: &[String], now_ms: i64, min_gap_ms: i64) -> Result<Vec<String>, StoreError> {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let bound = $keys(keys)?;
                let found = sqlx::query($claim)
                    .bind(bound)
                    .bind(now_ms)
                    .bind(now_ms.saturating_sub(min_gap_ms))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
                found.iter().map(|r| r.text("check_key")).collect()
            }
        }
    };
}

membership!(
    SqliteStore,
    "INSERT INTO watch_members (member, seen_ms) VALUES (?, ?) ON CONFLICT (member) DO UPDATE SET seen_ms = excluded.seen_ms",
    "SELECT member FROM watch_members WHERE seen_ms >= ? ORDER BY member",
    "DELETE FROM watch_members WHERE member = ?",
    // `WHERE true` keeps SQLite's parser from reading ON CONFLICT as a join constraint.
    "INSERT INTO watch_claims (check_key, at_ms) SELECT value, $2 FROM json_each($1) WHERE true \
     ON CONFLICT (check_key) DO UPDATE SET at_ms = excluded.at_ms WHERE watch_claims.at_ms <= $3 \
     RETURNING check_key",
    |keys: &[String]| serde_json::to_string(keys)
        .map_err(|e| StoreError::Backend { reason: e.to_string(), retryable: false })
);
membership!(
    PgStore,
    "INSERT INTO watch_members (member, seen_ms) VALUES ($1, $2) ON CONFLICT (member) DO UPDATE SET seen_ms = excluded.seen_ms",
    "SELECT member FROM watch_members WHERE seen_ms >= $1 ORDER BY member",
    "DELETE FROM watch_members WHERE member = $1",
    "INSERT INTO watch_claims (check_key, at_ms) SELECT k, $2 FROM unnest($1::text[]) AS k \
     ON CONFLICT (check_key) DO UPDATE SET at_ms = excluded.at_ms WHERE watch_claims.at_ms <= $3 \
     RETURNING check_key",
    |keys: &[String]| Ok::<_, StoreError>(keys.to_vec())
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
            async fn claim_checks(
                &self,
                keys: &[String],
                now_ms: i64,
                min_gap_ms: i64,
            ) -> Result<Vec<String>, StoreError> {
                self.claim(keys, now_ms, min_gap_ms).await
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
