//! [`CertificateStore`] on SQLite: a certificate row and its sealed key (`secrets`) in
//! one transaction, so a crash never leaves a chain without its key or the reverse.

use rpcc_core::certs::{CertificateOrigin, CertificateRecord, CertificateStore, key_record};
use rpcc_core::deploy::StoreError;
use rpcc_core::generation::Sha256Digest;
use rpcc_core::keyring::Envelope;
use sqlx::Row as _;

use crate::{SqliteStore, backend, corrupt};

fn row_certificate(row: &sqlx::sqlite::SqliteRow) -> Result<CertificateRecord, StoreError> {
    let site: String = row.try_get("site").map_err(backend)?;
    let bad = |what: &str| corrupt(format!("certificates table: site {site:?}: {what}"));
    let names: String = row.try_get("names").map_err(backend)?;
    let names: Vec<String> = serde_json::from_str(&names).map_err(|e| bad(&format!("names: {e}")))?;
    let origin: String = row.try_get("origin").map_err(backend)?;
    let origin = CertificateOrigin::parse(&origin).ok_or_else(|| bad(&format!("unknown origin {origin:?}")))?;
    let fingerprint: String = row.try_get("fingerprint").map_err(backend)?;
    let fingerprint = Sha256Digest::from_hex(&fingerprint).ok_or_else(|| bad("fingerprint is not SHA-256 hex"))?;
    let mut cert = CertificateRecord::new(
        &site,
        names,
        origin,
        row.try_get("chain_pem").map_err(backend)?,
        fingerprint,
        row.try_get("issuer").map_err(backend)?,
        row.try_get("not_before").map_err(backend)?,
        row.try_get("not_after").map_err(backend)?,
    );
    cert.stored_ms = row.try_get("stored_ms").map_err(backend)?;
    Ok(cert)
}

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
        rows.iter().map(row_certificate).collect()
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
