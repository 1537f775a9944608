//! [`CertificateStore`] on SQLite: a certificate row and its sealed key (`secrets`) in
//! one transaction, so a crash never leaves a chain without its key or the reverse.

use rpcc_core::certs::{CertificateRecord, CertificateStore, key_record};
use rpcc_core::deploy::StoreError;
use rpcc_core::keyring::Envelope;

use crate::{SqliteStore, backend, corrupt, rows};

#[async_trait::async_trait]
impl CertificateStore for SqliteStore {
    async fn put_certificate(&self, cert: &CertificateRecord, key: &Envelope) -> Result<(), StoreError> {
        let record = key_record(&cert.site).map_err(|e| corrupt(format!("certificate of {:?}: {e}", cert.site)))?;
        let names = serde_json::to_string(&cert.names).map_err(|e| corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        crate::secrets::upsert_secret(&mut tx, &record, key, cert.stored_ms).await?;
        sqlx::query(
            "INSERT INTO certificates (site, names, origin, chain_pem, fingerprint, issuer, not_before, not_after, \
             stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET names = excluded.names, \
             origin = excluded.origin, chain_pem = excluded.chain_pem, fingerprint = excluded.fingerprint, \
             issuer = excluded.issuer, not_before = excluded.not_before, not_after = excluded.not_after, \
             stored_ms = excluded.stored_ms",
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
        let rows = sqlx::query(
            "SELECT site, names, origin, chain_pem, fingerprint, issuer, not_before, not_after, stored_ms \
             FROM certificates ORDER BY site",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::certificate).collect()
    }

    async fn remove_certificate(&self, site: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if let Ok(record) = key_record(site) {
            sqlx::query("DELETE FROM secrets WHERE record = ?")
                .bind(record.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let gone = sqlx::query("DELETE FROM certificates WHERE site = ?")
            .bind(site)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(gone > 0)
    }
}
