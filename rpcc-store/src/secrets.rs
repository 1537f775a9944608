//! [`SecretStore`] on SQLite: envelopes by record, batches swapped in one transaction.

use rpcc_core::deploy::{StoreError, unix_ms};
use rpcc_core::keyring::{Envelope, KeyId, RecordId, SecretStore, SecretSwap};

use crate::{SqliteStore, backend, rows};

/// Swaps per UPDATE statement (4 parameters each, well under SQLite's limit).
const SWAP_CHUNK: usize = 1000;

fn swap_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?)"; rows].join(", ");
    format!(
        "UPDATE secrets SET envelope = v.column3, key_id = v.column4, updated_ms = ? \
         FROM (VALUES {values}) AS v WHERE secrets.record = v.column1 AND secrets.envelope = v.column2"
    )
}

/// Insert or replace one sealed secret inside the caller's transaction.
pub(crate) async fn upsert_secret(
    conn: &mut sqlx::SqliteConnection,
    record: &RecordId,
    envelope: &Envelope,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO secrets (record, key_id, envelope, updated_ms) VALUES (?, ?, ?, ?) \
         ON CONFLICT (record) DO UPDATE SET key_id = excluded.key_id, envelope = excluded.envelope, \
         updated_ms = excluded.updated_ms",
    )
    .bind(record.as_str())
    .bind(envelope.key_id().as_str())
    .bind(envelope.as_str())
    .bind(now_ms)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait::async_trait]
impl SecretStore for SqliteStore {
    async fn put_secrets(&self, items: &[(RecordId, Envelope)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let now = unix_ms();
        for (record, envelope) in items {
            upsert_secret(&mut tx, record, envelope, now).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn secret(&self, record: &RecordId) -> Result<Option<Envelope>, StoreError> {
        let row = sqlx::query("SELECT record, envelope FROM secrets WHERE record = ?")
            .bind(record.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::secret).transpose().map(|r| r.map(|(_, e)| e))
    }

    async fn secrets_not_under(
        &self,
        key: &KeyId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<(RecordId, Envelope)>, StoreError> {
        let rows = sqlx::query(
            "SELECT record, envelope FROM secrets WHERE key_id <> ? AND record > ? ORDER BY record LIMIT ?",
        )
        .bind(key.as_str())
        .bind(after.map_or("", RecordId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::secret).collect()
    }

    async fn secrets_under(&self, key: &KeyId, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let rows = sqlx::query("SELECT record, envelope FROM secrets WHERE key_id = ? ORDER BY record LIMIT ?")
            .bind(key.as_str())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(|r| rows::secret(r).map(|(rec, _)| rec)).collect()
    }

    async fn replace_secrets(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError> {
        if swaps.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut applied = 0;
        let now = unix_ms();
        // One statement per chunk (per-row statements cost a worker-thread round trip
        // each): a compare-and-swap of every row whose envelope is still the old one.
        for chunk in swaps.chunks(SWAP_CHUNK) {
            let sql = swap_sql(chunk.len());
            // Safe: the text is fixed apart from the number of `(?, ?, ?, ?)` groups.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(now);
            for swap in chunk {
                query = query
                    .bind(swap.record.as_str())
                    .bind(swap.old.as_str())
                    .bind(swap.new.as_str())
                    .bind(swap.new.key_id().as_str());
            }
            let done = query.execute(&mut *tx).await.map_err(backend)?;
            applied += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(backend)?;
        Ok(applied)
    }

    async fn secret_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id ORDER BY key_id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(rows::key_count).collect()
    }
}
