//! Rows to model types for both backends: any sqlx row whose columns decode as `String`,
//! `i64` and `f64` (SQLite and PostgreSQL rows alike), so each mapping exists once.

use std::str::FromStr as _;

use rpcc_core::certs::{CertificateOrigin, CertificateRecord};
use rpcc_core::deploy::{AuditEvent, AuditRecord, DeploymentRecord, DeploymentState, StoreError};
use rpcc_core::generation::Sha256Digest;
use rpcc_core::keyring::{Envelope, RecordId};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{MetricSample, backend, corrupt};

/// Typed column reads with the store's error.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn real(&self, col: &str) -> Result<f64, StoreError>;
}

impl<R> Cols for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.try_get(col).map_err(backend)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.try_get(col).map_err(backend)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.try_get(col).map_err(backend)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(col).map_err(backend)
    }
    fn real(&self, col: &str) -> Result<f64, StoreError> {
        self.try_get(col).map_err(backend)
    }
}

/// A `deployments` row.
pub(crate) fn deployment(row: &impl Cols) -> Result<DeploymentRecord, StoreError> {
    Ok(DeploymentRecord {
        id: row.int("id")?,
        server: row.text("server")?,
        action: row.text("action")?.parse()?,
        generation: row.text("generation")?,
        previous: row.opt_text("previous")?,
        state: DeploymentState::from_str(&row.text("state")?)?,
        actor: row.text("actor")?,
        started_ms: row.int("started_ms")?,
        finished_ms: row.opt_int("finished_ms")?,
        detail: row.text("detail")?,
    })
}

/// An `audit_log` row.
pub(crate) fn audit_record(row: &impl Cols) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.int("seq")?,
        event: AuditEvent {
            at_ms: row.int("at_ms")?,
            actor: row.text("actor")?,
            action: row.text("action")?.parse()?,
            server: row.opt_text("server")?,
            generation: row.opt_text("generation")?,
            outcome: row.text("outcome")?,
            detail: row.text("detail")?,
        },
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

/// A `secrets` row (`record`, `envelope`).
pub(crate) fn secret(row: &impl Cols) -> Result<(RecordId, Envelope), StoreError> {
    let record = RecordId::parse(&row.text("record")?).map_err(|e| corrupt(format!("secrets table: {e}")))?;
    let envelope =
        Envelope::parse(&row.text("envelope")?).map_err(|e| corrupt(format!("secrets table: secret {record} {e}")))?;
    Ok((record, envelope))
}

/// A `certificates` row.
pub(crate) fn certificate(row: &impl Cols) -> Result<CertificateRecord, StoreError> {
    let site = row.text("site")?;
    let bad = |what: &str| corrupt(format!("certificates table: site {site:?}: {what}"));
    let names: Vec<String> = serde_json::from_str(&row.text("names")?).map_err(|e| bad(&format!("names: {e}")))?;
    let origin = row.text("origin")?;
    let origin = CertificateOrigin::parse(&origin).ok_or_else(|| bad(&format!("unknown origin {origin:?}")))?;
    let fingerprint =
        Sha256Digest::from_hex(&row.text("fingerprint")?).ok_or_else(|| bad("fingerprint is not SHA-256 hex"))?;
    let mut cert = CertificateRecord::new(
        &site,
        names,
        origin,
        row.text("chain_pem")?,
        fingerprint,
        row.text("issuer")?,
        row.int("not_before")?,
        row.int("not_after")?,
    );
    cert.stored_ms = row.int("stored_ms")?;
    Ok(cert)
}

/// A `metric_samples` row.
pub(crate) fn sample(row: &impl Cols) -> Result<MetricSample, StoreError> {
    Ok(MetricSample {
        server: row.text("server")?,
        at_ms: row.int("at_ms")?,
        cpu: row.real("cpu")?,
        mem: row.real("mem")?,
        load1: row.real("load1")?,
        disk_max: row.real("disk_max")?,
    })
}

/// A `(key_id, n)` count row.
pub(crate) fn key_count(row: &impl Cols) -> Result<(String, u64), StoreError> {
    Ok((row.text("key_id")?, u64::try_from(row.int("n")?).unwrap_or(0)))
}
