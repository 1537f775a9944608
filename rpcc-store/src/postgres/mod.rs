//! [`PgStore`]: rpcc's state on PostgreSQL, for several control planes sharing one fleet.
//! The same roles as the SQLite store ([`StateStore`], `SecretStore`,
//! `CertificateStore`, `EngineStore`), with what one machine's file cannot give:
//!
//! - **per-server locks across hosts**: a session advisory lock held on a connection of
//!   its own for the whole deploy; when the holder dies its session ends and the lock
//!   is released by the server, so a crashed control plane never leaves one behind;
//! - **one audit chain**: appends take a transaction-scoped advisory lock before reading
//!   the head, so two control planes never chain from the same entry;
//! - migrations under an advisory lock, so control planes starting together apply each
//!   once.

mod lock;
mod migrate;
mod secrets;

use std::time::Duration;

use rpcc_core::deploy::{
    AUDIT_GENESIS, AuditEvent, AuditRecord, AuditSeal, DeploymentRecord, DeploymentState, LocalLock, NewDeployment,
    StateStore, StoreError, next_hash, unix_ms,
};
use rpcc_core::generation::Manifest;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::rows::{self, Cols as _};
use crate::{MetricSample, backend, corrupt};

/// Advisory lock keys of the store itself (a server's lock key is a hash of its name in
/// another key space: see `lock.rs`).
pub(crate) mod keys {
    /// Serializes audit appends.
    pub(crate) const AUDIT: i64 = 0x7270_6363_0001;
    /// Serializes migrations.
    pub(crate) const MIGRATE: i64 = 0x7270_6363_0002;
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    location: String,
    seal: Option<std::sync::Arc<AuditSeal>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("location", &self.location).field("keyed", &self.seal.is_some()).finish()
    }
}

/// A store URL without its password, for messages and logs
/// (`postgres://rpcc:secret@db/x` → `postgres://rpcc@db/x`).
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl PgStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/db`, libpq parameters
    /// such as `sslmode` allowed) and apply pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let location = redacted_url(url);
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Backend {
            reason: format!("{location}: not a PostgreSQL URL: {e}"),
            retryable: false,
        })?;
        let options = options.application_name("rpcc");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A wrong address fails within this (sqlx retries refused connections until then).
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| {
                let e = backend(e);
                StoreError::Backend { reason: format!("{location}: {e}"), retryable: e.is_retryable() }
            })?;
        migrate::run(&pool).await?;
        Ok(Self { pool, location, seal: None })
    }

    /// Key new audit entries with `seal` (HMAC under a keyring key, checkpoint file).
    pub fn with_audit_seal(mut self, seal: AuditSeal) -> Self {
        self.seal = Some(std::sync::Arc::new(seal));
        self
    }

    pub(crate) fn sealed(self, seal: Option<AuditSeal>) -> Self {
        match seal {
            Some(s) => self.with_audit_seal(s),
            None => self,
        }
    }

    /// The pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The newest audit entry's sequence number and hash, if any.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((r.int("seq")?, r.text("hash")?))).transpose()
    }

    /// Record samples (one transaction; a sample already recorded for that server and
    /// moment is replaced).
    pub async fn record_samples(&self, samples: &[MetricSample]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for s in samples {
            sqlx::query(
                "INSERT INTO metric_samples (server, at_ms, cpu, mem, load1, disk_max) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (server, at_ms) DO UPDATE SET cpu = excluded.cpu, mem = excluded.mem, \
                 load1 = excluded.load1, disk_max = excluded.disk_max",
            )
            .bind(&s.server)
            .bind(s.at_ms)
            .bind(s.cpu)
            .bind(s.mem)
            .bind(s.load1)
            .bind(s.disk_max)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Samples of `server` since `since_ms`, oldest first.
    pub async fn samples(&self, server: &str, since_ms: i64) -> Result<Vec<MetricSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT server, at_ms, cpu, mem, load1, disk_max FROM metric_samples \
             WHERE server = $1 AND at_ms >= $2 ORDER BY at_ms",
        )
        .bind(server)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::sample).collect()
    }

    /// Delete samples older than `before_ms`; returns how many.
    pub async fn prune_samples(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM metric_samples WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl rpcc_core::store::EngineStore for PgStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn audit_keyed(&self) -> bool {
        self.seal.is_some()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        PgStore::audit_head(self).await
    }
}

#[async_trait::async_trait]
impl StateStore for PgStore {
    async fn record_generation(&self, server: &str, manifest: &Manifest) -> Result<(), StoreError> {
        let json = serde_json::to_string(manifest).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO generations (server, id, tree_sha256, manifest, recorded_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (server, id) DO NOTHING",
        )
        .bind(server)
        .bind(&manifest.id)
        .bind(manifest.tree_sha256.to_hex())
        .bind(json)
        .bind(unix_ms())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn generation(&self, server: &str, id: &str) -> Result<Option<Manifest>, StoreError> {
        let row = sqlx::query("SELECT manifest FROM generations WHERE server = $1 AND id = $2")
            .bind(server)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.text("manifest")?)
                .map(Some)
                .map_err(|e| corrupt(format!("manifest of {server}/{id}: {e}"))),
        }
    }

    async fn start_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO deployments (server, action, generation, previous, state, actor, started_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&d.server)
        .bind(d.action.as_str())
        .bind(&d.generation)
        .bind(&d.previous)
        .bind(DeploymentState::Running.as_str())
        .bind(&d.actor)
        .bind(unix_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        row.int("id")
    }

    async fn finish_deployment(&self, id: i64, state: DeploymentState, detail: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE deployments SET state = $1, detail = $2, finished_ms = $3 WHERE id = $4")
            .bind(state.as_str())
            .bind(detail)
            .bind(unix_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 1 { Ok(()) } else { Err(corrupt(format!("no deployment {id}"))) }
    }

    async fn abandon_running(&self, server: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET state = $1, finished_ms = $2, detail = 'the control plane stopped mid-way' \
             WHERE server = $3 AND state = $4",
        )
        .bind(DeploymentState::Abandoned.as_str())
        .bind(unix_ms())
        .bind(server)
        .bind(DeploymentState::Running.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn deployments(&self, server: Option<&str>, limit: u32) -> Result<Vec<DeploymentRecord>, StoreError> {
        // Two statements rather than `($1 IS NULL OR server = $1)`, which no index serves.
        let rows = match server {
            Some(name) => sqlx::query(
                "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, detail \
                 FROM deployments WHERE server = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(name),
            None => sqlx::query(
                "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, detail \
                 FROM deployments ORDER BY id DESC LIMIT $1",
            ),
        }
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::deployment).collect()
    }

    async fn last_deployments(&self, servers: &[&str]) -> Result<Vec<DeploymentRecord>, StoreError> {
        let names: Vec<String> = servers.iter().map(|s| (*s).to_owned()).collect();
        let rows = sqlx::query(
            "SELECT DISTINCT ON (server) id, server, action, generation, previous, state, actor, started_ms, \
             finished_ms, detail FROM deployments WHERE server = ANY($1) ORDER BY server, id DESC",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::deployment).collect()
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError> {
        // The advisory lock is taken before the head is read and held until commit:
        // appends from every control plane are serialized on one chain.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(keys::AUDIT).execute(&mut *tx).await.map_err(backend)?;
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let (seq, prev_hash) = match head {
            Some(r) => (r.int("seq")? + 1, r.text("hash")?),
            None => (1, AUDIT_GENESIS.to_owned()),
        };
        let hash = next_hash(self.seal.as_deref(), event, seq, &prev_hash)?;
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor, action, server, generation, outcome, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(seq)
        .bind(event.at_ms)
        .bind(&event.actor)
        .bind(event.action.as_str())
        .bind(&event.server)
        .bind(&event.generation)
        .bind(&event.outcome)
        .bind(&event.detail)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let record = AuditRecord { seq, event: event.clone(), prev_hash, hash };
        if let Some(seal) = &self.seal
            && let Err(e) = seal.advance(&record)
        {
            tracing::error!(error = %e, "audit checkpoint not written: a deleted tail would go unnoticed");
        }
        Ok(record)
    }

    async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(crate::AUDIT_SELECT).fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(rows::audit_record).collect()
    }

    async fn lock_server(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        lock::acquire(&self.pool, server, holder, wait).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_in_messages_never_carry_the_password() {
        assert_eq!(
            super::redacted_url("postgres://rpcc:s3cr3t@db.example:5432/rpcc"),
            "postgres://rpcc@db.example:5432/rpcc"
        );
        assert_eq!(super::redacted_url("postgresql://u:p:q@h/d?sslmode=require"), "postgresql://u@h/d?sslmode=require");
        assert_eq!(super::redacted_url("postgres://rpcc@127.0.0.1/x"), "postgres://rpcc@127.0.0.1/x");
        assert_eq!(super::redacted_url("postgres://127.0.0.1/x"), "postgres://127.0.0.1/x");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error_without_the_password() {
        // Port 9 on loopback: nothing listens (the discard port is never served in tests).
        let err = super::PgStore::open("postgres://rpcc:hunter2-x81@127.0.0.1:9/rpcc?connect_timeout=2")
            .await
            .expect_err("nothing listens");
        let text = err.to_string();
        assert!(!text.contains("hunter2-x81") && text.contains("postgres://rpcc@127.0.0.1:9/rpcc"), "{text}");
        assert!(err.is_retryable(), "{err:?}");
    }
}
