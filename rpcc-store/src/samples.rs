//! Metric samples (`rpcc watch`): one row per server and round, pruned by age.

use rpcc_core::deploy::StoreError;

use crate::{SqliteStore, backend};

/// One server's metrics at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricSample {
    /// Server name.
    pub server: String,
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// CPU use, percent.
    pub cpu: f64,
    /// Memory use, percent.
    pub mem: f64,
    /// 1-minute load average.
    pub load1: f64,
    /// The fullest file system, percent.
    pub disk_max: f64,
}

/// Rows per INSERT statement (6 parameters each, under SQLite's 32,766 limit).
const INSERT_CHUNK: usize = 1000;

impl SqliteStore {
    /// Record samples (one transaction; a sample already recorded for that server and
    /// moment is replaced).
    pub async fn record_samples(&self, samples: &[MetricSample]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for chunk in samples.chunks(INSERT_CHUNK) {
            let values = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT OR REPLACE INTO metric_samples (server, at_ms, cpu, mem, load1, disk_max) VALUES {values}"
            );
            // Only placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for s in chunk {
                q = q.bind(&s.server).bind(s.at_ms).bind(s.cpu).bind(s.mem).bind(s.load1).bind(s.disk_max);
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Samples of `server` since `since_ms`, oldest first.
    pub async fn samples(&self, server: &str, since_ms: i64) -> Result<Vec<MetricSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT server, at_ms, cpu, mem, load1, disk_max FROM metric_samples \
             WHERE server = ? AND at_ms >= ? ORDER BY at_ms",
        )
        .bind(server)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(crate::rows::sample).collect()
    }

    /// Delete samples older than `before_ms`; returns how many.
    pub async fn prune_samples(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM metric_samples WHERE at_ms < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(server: &str, at_ms: i64, cpu: f64) -> MetricSample {
        MetricSample { server: server.into(), at_ms, cpu, mem: 40.0, load1: 0.5, disk_max: 70.0 }
    }

    #[tokio::test]
    async fn samples_are_recorded_read_back_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        let mut batch: Vec<MetricSample> = (0..2500).map(|i| sample("edge-1", i * 1000, i as f64 % 100.0)).collect();
        batch.push(sample("edge-2", 5000, 12.5));
        store.record_samples(&batch).await.unwrap();
        // Same server and moment: replaced, not duplicated.
        store.record_samples(&[sample("edge-1", 0, 99.0)]).await.unwrap();
        let all = store.samples("edge-1", 0).await.unwrap();
        assert_eq!(all.len(), 2500);
        assert_eq!(all[0].cpu, 99.0);
        assert!(all.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(store.samples("edge-1", 2_000_000).await.unwrap().len(), 500);
        assert_eq!(store.prune_samples(1_000_000).await.unwrap(), 1000 + 1);
        assert_eq!(store.samples("edge-1", 0).await.unwrap().len(), 1500);
        assert!(store.samples("edge-2", 0).await.unwrap().is_empty());
        // Survives a reopen (the migration is recorded once).
        drop(store);
        let store = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        assert_eq!(store.samples("edge-1", 0).await.unwrap().len(), 1500);
    }
}
