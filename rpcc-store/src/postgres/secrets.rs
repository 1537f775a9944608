//! `SecretStore` and `CertificateStore` on PostgreSQL: envelopes by record (batches
//! swapped in one statement), a certificate and its sealed key in one transaction.

use rpcc_core::certs::{CertificateRecord, CertificateStore, key_record};
use rpcc_core::deploy::{StoreError, unix_ms};
use rpcc_core::keyring::{Envelope, KeyId, RecordId, SecretStore, SecretSwap};
use sqlx::PgConnection;

use super::PgStore;
use crate::rows;
use crate::{backend, corrupt};

/// Insert or replace one sealed secret inside the caller's transaction.
async fn upsert_secret(
    conn: &mut PgConnection,
    record: &RecordId,
    envelope: &Envelope,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO secrets (record, key_id, envelope, updated_ms) VALUES ($1, $2, $3, $4) \
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

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl SecretStore for PgStore {
    async fn put_secrets(&self, items: &[(RecordId, Envelope)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let now = unix_ms();
        for (record, envelope) in items {
            upsert_secret(&mut tx, record, envelope, now).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn secret(&self, record: &RecordId) -> Result<Option<Envelope>, StoreError> {
        let row = sqlx::query("SELECT record, envelope FROM secrets WHERE record = $1")
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
        n: usize,
    ) -> Result<Vec<(RecordId, Envelope)>, StoreError> {
        let found = sqlx::query(
            "SELECT record, envelope FROM secrets WHERE key_id <> $1 AND record > $2 ORDER BY record LIMIT $3",
        )
        .bind(key.as_str())
        .bind(after.map_or("", RecordId::as_str))
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        found.iter().map(rows::secret).collect()
    }

    async fn secrets_under(&self, key: &KeyId, n: usize) -> Result<Vec<RecordId>, StoreError> {
        let found = sqlx::query("SELECT record, envelope FROM secrets WHERE key_id = $1 ORDER BY record LIMIT $2")
            .bind(key.as_str())
            .bind(limit(n))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        found.iter().map(|r| rows::secret(r).map(|(rec, _)| rec)).collect()
    }

    async fn replace_secrets(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError> {
        if swaps.is_empty() {
            return Ok(0);
        }
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

    async fn secret_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let found = sqlx::query("SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id ORDER BY key_id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        found.iter().map(rows::key_count).collect()
    }
}

#[async_trait::async_trait]
impl CertificateStore for PgStore {
    async fn put_certificate(&self, cert: &CertificateRecord, key: &Envelope) -> Result<(), StoreError> {
        let record = key_record(&cert.site).map_err(|e| corrupt(format!("certificate of {:?}: {e}", cert.site)))?;
        let names = serde_json::to_string(&cert.names).map_err(|e| corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        upsert_secret(&mut tx, &record, key, cert.stored_ms).await?;
        sqlx::query(
            "INSERT INTO certificates (site, names, origin, chain_pem, fingerprint, issuer, not_before, not_after, \
             stored_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (site) DO UPDATE SET \
             names = excluded.names, origin = excluded.origin, chain_pem = excluded.chain_pem, \
             fingerprint = excluded.fingerprint, issuer = excluded.issuer, not_before = excluded.not_before, \
             not_after = excluded.not_after, stored_ms = excluded.stored_ms",
        )
        .bind(&cert.site)
        .bind(names)
        .bind(cert.origin.as_str())
        .bind(&cert.chain_pem)
        .bind(cert.fingerprint.to_hex())
        .bind(&cert.issuer)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(cert.stored_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn certificates(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        let found = sqlx::query(
            "SELECT site, names, origin, chain_pem, fingerprint, issuer, not_before, not_after, stored_ms \
             FROM certificates ORDER BY site",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        found.iter().map(rows::certificate).collect()
    }

    async fn remove_certificate(&self, site: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if let Ok(record) = key_record(site) {
            sqlx::query("DELETE FROM secrets WHERE record = $1")
                .bind(record.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let gone = sqlx::query("DELETE FROM certificates WHERE site = $1")
            .bind(site)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(gone > 0)
    }
}
