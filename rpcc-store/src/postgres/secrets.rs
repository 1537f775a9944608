//! Batched secret swaps on PostgreSQL: one compare-and-swap `UPDATE … FROM unnest(…)`
//! (the rest of `SecretStore` and `CertificateStore` is shared: `common.rs`).

use rpcc_core::deploy::{StoreError, unix_ms};
use rpcc_core::keyring::SecretSwap;

use super::PgStore;
use crate::backend;

impl PgStore {
    /// Apply `swaps` (never empty) in one statement; how many rows still held the old
    /// envelope and were swapped.
    pub(crate) async fn swap_secrets_here(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError> {
        // One statement: a compare-and-swap of every row whose envelope is still the old one.
        let column = |f: fn(&SecretSwap) -> &str| swaps.iter().map(|s| f(s).to_owned()).collect::<Vec<String>>();
        let done = sqlx::query(
            "UPDATE secrets SET envelope = v.new, key_id = v.key, updated_ms = $1 \
             FROM (SELECT unnest($2::TEXT[]) AS record, unnest($3::TEXT[]) AS old, unnest($4::TEXT[]) AS new, \
             unnest($5::TEXT[]) AS key) AS v WHERE secrets.record = v.record AND secrets.envelope = v.old",
        )
        .bind(unix_ms())
        .bind(column(|s| s.record.as_str()))
        .bind(column(|s| s.old.as_str()))
        .bind(column(|s| s.new.as_str()))
        .bind(column(|s| s.new.key_id().as_str()))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
    }
}
