//! Batched secret swaps on SQLite: chunked compare-and-swap `UPDATE … FROM (VALUES …)`
//! statements in one transaction (the rest of `SecretStore` is shared: `common.rs`).

use rpcc_core::deploy::{StoreError, unix_ms};
use rpcc_core::keyring::SecretSwap;

use crate::{SqliteStore, backend};

/// Swaps per UPDATE statement (4 parameters each, well under SQLite's limit).
const SWAP_CHUNK: usize = 1000;

fn swap_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?)"; rows].join(", ");
    format!(
        "UPDATE secrets SET envelope = v.column3, key_id = v.column4, updated_ms = ? \
         FROM (VALUES {values}) AS v WHERE secrets.record = v.column1 AND secrets.envelope = v.column2"
    )
}

impl SqliteStore {
    /// Apply `swaps` (never empty) in one transaction; how many rows still held the old
    /// envelope and were swapped.
    pub(crate) async fn swap_secrets_here(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError> {
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
}
