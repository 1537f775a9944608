//! [`PgStore`]: rpcc's state on PostgreSQL, for several control planes sharing one fleet.
//! The same roles as the SQLite store ([`StateStore`](rpcc_core::deploy::StateStore), `SecretStore`,
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

use rpcc_core::deploy::{AuditSeal, DeploymentRecord, LocalLock, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::rows::{self, Cols as _};
use crate::{MetricSample, backend};

/// Advisory lock keys of the store itself (a server's lock key is a hash of its name in
/// another key space: see `lock.rs`).
pub(crate) mod keys {
    /// Serializes audit appends (spelled out in `AUDIT_LOCK`).
    #[cfg(test)]
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

/// A store URL without its passwords, for messages and logs
/// (`postgres://rpcc:secret@db/x` → `postgres://rpcc@db/x`, `?password=secret` →
/// `?password=***`): [`rpcc_core::store::redacted_url`].
pub fn redacted_url(url: &str) -> String {
    rpcc_core::store::redacted_url(url)
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

    async fn rekey_audit(&self, keyring: &rpcc_core::keyring::Keyring) -> Result<u64, StoreError> {
        PgStore::rekey_audit(self, keyring).await
    }
}

crate::common::shared_store_impls!(PgStore, sqlx::PgConnection, "BEGIN", Some(AUDIT_LOCK));

/// An audit append's lock, first in its transaction: the chain's advisory lock
/// (`keys::AUDIT`) is taken before the head is read and held until commit.
const AUDIT_LOCK: &str = "SELECT pg_advisory_xact_lock(125827029336065)";

impl PgStore {
    /// Every named server's newest deployment in one query (`DISTINCT ON`).
    async fn last_deployments_here(&self, servers: &[&str]) -> Result<Vec<DeploymentRecord>, StoreError> {
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

    /// Every control plane's lock: a session advisory lock (see `lock.rs`).
    async fn lock_server_here(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        lock::acquire(&self.pool, server, holder, wait).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_audit_transaction_locks_the_audit_key() {
        assert!(super::AUDIT_LOCK.ends_with(&format!("pg_advisory_xact_lock({})", super::keys::AUDIT)));
        assert_ne!(super::keys::AUDIT, super::keys::MIGRATE);
    }

    #[test]
    fn urls_in_messages_never_carry_the_password() {
        assert_eq!(
            super::redacted_url("postgres://rpcc:s3cr3t@db.example:5432/rpcc"),
            "postgres://rpcc@db.example:5432/rpcc"
        );
        assert_eq!(super::redacted_url("postgresql://u:p:q@h/d?sslmode=require"), "postgresql://u@h/d?sslmode=require");
        assert_eq!(super::redacted_url("postgres://rpcc@127.0.0.1/x"), "postgres://rpcc@127.0.0.1/x");
        assert_eq!(super::redacted_url("postgres://127.0.0.1/x"), "postgres://127.0.0.1/x");
        assert_eq!(super::redacted_url("postgres://u@h/d?password=p"), "postgres://u@h/d?password=***");
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

    #[tokio::test]
    async fn errors_and_debug_never_carry_a_query_password() {
        for url in [
            "postgres://rpcc@127.0.0.1:9/rpcc?connect_timeout=2&password=hunter2-q77",
            "postgres://rpcc:hunter2-q77@127.0.0.1:notaport/rpcc?password=hunter2-q77",
            "postgres://rpcc@127.0.0.1:9/rpcc?password=hunter2-q77&sslmode=bogus",
        ] {
            let err = super::PgStore::open(url).await.expect_err("nothing listens or the URL is bad");
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("hunter2-q77"), "{url}: {text}");
            }
        }
    }
}
