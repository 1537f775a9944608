//! # rpcc-store
//!
//! rpcc's state: generations, deployments with their state, the hash-chained audit log,
//! sealed secrets, certificates, metric samples and per-server locks, behind rpcc-core's
//! store roles ([`StateStore`], `SecretStore`, `CertificateStore`, `EngineStore`), on
//! two backends:
//!
//! - [`SqliteStore`], the embedded default: one file, no set-up; per-server locks are
//!   `flock`s beside it, so two `rpcc apply` on one machine take turns on a server;
//! - [`PgStore`], PostgreSQL for several control planes: per-server locks are advisory
//!   locks (released when a holder's session ends), one audit chain for all.
//!
//! [`open_url`] picks one from a URL (`sqlite://…`, a path, or `postgres://…`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpcc_store::StoreError> {
//! use rpcc_core::deploy::StateStore as _;
//! let store = rpcc_store::SqliteStore::open(std::path::Path::new("rpcc-state.db")).await?;
//! let check = store.verify_audit().await?;
//! assert!(check.broken.is_none());
//! # Ok(()) }
//! ```

mod certs;
mod copy;
mod environment;
mod legacy;
mod lock;
mod migrate;
mod postgres;
mod rows;
mod samples;
mod secrets;
mod watch;

pub use copy::{CopyReport, copy_sqlite_to_postgres};
pub use postgres::{PgStore, redacted_url};

pub use legacy::{LegacyColumn, read_legacy_column};
pub use samples::MetricSample;
pub use watch::WatchStore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rows::Cols as _;
pub use rpcc_core::deploy::StoreError;
use rpcc_core::deploy::{
    AUDIT_GENESIS, AuditEvent, AuditRecord, AuditSeal, DeploymentRecord, DeploymentState, LocalLock, NewDeployment,
    StateStore, next_hash, rekey_chain, unix_ms,
};
use rpcc_core::generation::Manifest;
use rpcc_core::keyring::Keyring;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Every audit entry, in sequence order (both backends).
pub(crate) const AUDIT_SELECT: &str = "SELECT seq, at_ms, actor, action, server, generation, outcome, detail, prev_hash, hash FROM audit_log ORDER BY seq";

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    lock_dir: PathBuf,
    seal: Option<std::sync::Arc<AuditSeal>>,
}

/// sqlx errors → the core role's error. Retryable: pool timeouts, I/O, SQLite's
/// busy/locked, PostgreSQL's serialization failures, deadlocks, lock timeouts, shutdowns
/// and connection failures (SQLSTATE 40001, 40P01, 55P03, 57P0x, 08xxx).
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => {
            let m = d.message();
            let code = d.code().unwrap_or_default();
            m.contains("locked")
                || m.contains("busy")
                || matches!(code.as_ref(), "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03")
                || code.starts_with("08")
        }
        _ => false,
    };
    StoreError::Backend { reason: e.to_string(), retryable }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { reason: what.to_string() }
}

impl SqliteStore {
    /// Open (creating if missing) the database at `path` and apply pending migrations.
    /// Local locks live beside it in `<path>.locks/`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
                reason: format!("cannot create {}: {e}", dir.display()),
                retryable: false,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(backend)?;
        migrate::run(&pool).await?;
        let mut lock_dir = path.as_os_str().to_owned();
        lock_dir.push(".locks");
        Ok(Self { pool, path: path.to_owned(), lock_dir: PathBuf::from(lock_dir), seal: None })
    }

    /// Open from a URL: `sqlite:///abs/path.db`, `sqlite://rel/path.db` or a plain path.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::Backend { reason: format!("{url:?} names no database file"), retryable: false });
        }
        Self::open(Path::new(path)).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying pool (for tests and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Key new audit entries with `seal` (HMAC under a keyring key, checkpoint file).
    pub fn with_audit_seal(mut self, seal: AuditSeal) -> Self {
        self.seal = Some(std::sync::Arc::new(seal));
        self
    }

    fn sealed(self, seal: Option<AuditSeal>) -> Self {
        match seal {
            Some(s) => self.with_audit_seal(s),
            None => self,
        }
    }

    /// Re-key the audit chain under this store's seal (after `rpcc keys rotate`, so the
    /// old key can be retired): the whole chain is verified with `keyring` first, then
    /// every keyed entry's MAC and link is rewritten in one transaction, and the
    /// checkpoint moves to the new head. Returns how many entries changed.
    pub async fn rekey_audit(&self, keyring: &Keyring) -> Result<u64, StoreError> {
        let Some(seal) = &self.seal else { return Ok(0) };
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(backend)?;
        let result: Result<Vec<AuditRecord>, StoreError> = async {
            let rows = sqlx::query(AUDIT_SELECT).fetch_all(&mut *conn).await.map_err(backend)?;
            let records = rows.iter().map(rows::audit_record).collect::<Result<Vec<_>, _>>()?;
            let changed = rekey_chain(&records, keyring, seal).map_err(|v| {
                let (seq, why) =
                    v.broken.unwrap_or((0, format!("{} entries under keys not in the keyring", v.unverifiable)));
                StoreError::Corrupt {
                    reason: format!("audit log does not verify (entry {seq}: {why}); nothing re-keyed"),
                }
            })?;
            for r in &changed {
                sqlx::query("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?")
                    .bind(&r.prev_hash)
                    .bind(&r.hash)
                    .bind(r.seq)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            Ok(changed)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end).execute(&mut *conn).await.map_err(backend)?;
        let changed = result?;
        if let Some(head) = changed.last()
            && let Err(e) = seal.rewrite_checkpoint(head)
        {
            tracing::error!(error = %e, "audit checkpoint not moved to the re-keyed head");
        }
        Ok(changed.len() as u64)
    }

    /// The newest audit entry's sequence number and hash, if any.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((r.int("seq")?, r.text("hash")?))).transpose()
    }

    /// The seal new audit entries are keyed with, if any.
    pub fn audit_seal(&self) -> Option<&AuditSeal> {
        self.seal.as_deref()
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The backend a state URL names.
enum Location<'a> {
    Sqlite(&'a str),
    Postgres(&'a str),
}

fn location(url: &str) -> Result<Location<'_>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Location::Postgres(url));
    }
    match url.split_once("://") {
        Some((scheme, _)) if scheme != "sqlite" => Err(StoreError::Backend {
            reason: format!("state {scheme}://…: not a supported store (postgres://…, sqlite://… or a file path)"),
            retryable: false,
        }),
        _ => Ok(Location::Sqlite(url)),
    }
}

/// Which environment a state is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentClaim<'a> {
    /// Read-only tools (history, audit): no check, no stamp.
    Any,
    /// An inventory's `[env.<name>]` (`None`: it defines none): stamped on first use,
    /// any other refused.
    For(Option<&'a str>),
}

impl EnvironmentClaim<'_> {
    async fn check_sqlite(self, store: &SqliteStore) -> Result<(), StoreError> {
        match self {
            Self::Any => Ok(()),
            Self::For(env) => store.claim_environment(env).await,
        }
    }

    async fn check_pg(self, store: &PgStore) -> Result<(), StoreError> {
        match self {
            Self::Any => Ok(()),
            Self::For(env) => store.claim_environment(env).await,
        }
    }
}

/// Open the store a URL names: `postgres://…` / `postgresql://…` ([`PgStore`]),
/// `sqlite://…` or a file path ([`SqliteStore`]); new audit entries keyed with `seal`.
/// With [`EnvironmentClaim::For`] the state is stamped with the environment on first
/// use and refuses another one.
pub async fn open_url(
    url: &str,
    seal: Option<AuditSeal>,
    environment: EnvironmentClaim<'_>,
) -> Result<std::sync::Arc<dyn rpcc_core::store::EngineStore>, StoreError> {
    Ok(match location(url)? {
        Location::Postgres(u) => {
            let store = PgStore::open(u).await?.sealed(seal);
            environment.check_pg(&store).await?;
            std::sync::Arc::new(store)
        }
        Location::Sqlite(u) => {
            let store = SqliteStore::open_url(u).await?.sealed(seal);
            environment.check_sqlite(&store).await?;
            std::sync::Arc::new(store)
        }
    })
}

/// [`open_url`] for a watch process: samples, alerts and membership ([`WatchStore`]).
pub async fn open_watch_url(
    url: &str,
    seal: Option<AuditSeal>,
    environment: EnvironmentClaim<'_>,
) -> Result<std::sync::Arc<dyn WatchStore>, StoreError> {
    Ok(match location(url)? {
        Location::Postgres(u) => {
            let store = PgStore::open(u).await?.sealed(seal);
            environment.check_pg(&store).await?;
            std::sync::Arc::new(store)
        }
        Location::Sqlite(u) => {
            let store = SqliteStore::open_url(u).await?.sealed(seal);
            environment.check_sqlite(&store).await?;
            std::sync::Arc::new(store)
        }
    })
}

#[async_trait::async_trait]
impl rpcc_core::store::EngineStore for SqliteStore {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn audit_keyed(&self) -> bool {
        self.audit_seal().is_some()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        SqliteStore::audit_head(self).await
    }
}

#[async_trait::async_trait]
impl StateStore for SqliteStore {
    async fn record_generation(&self, server: &str, manifest: &Manifest) -> Result<(), StoreError> {
        let json = serde_json::to_string(manifest).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO generations (server, id, tree_sha256, manifest, recorded_ms) VALUES (?, ?, ?, ?, ?) \
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
        let row = sqlx::query("SELECT manifest FROM generations WHERE server = ? AND id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        let done = sqlx::query("UPDATE deployments SET state = ?, detail = ?, finished_ms = ? WHERE id = ?")
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
            "UPDATE deployments SET state = ?, finished_ms = ?, detail = 'the control plane stopped mid-way' \
             WHERE server = ? AND state = ?",
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
        // Two statements rather than `(? IS NULL OR server = ?)`, which no index serves:
        // per server, the newest rows come straight from `deployments_by_server`.
        let rows = match server {
            Some(name) => sqlx::query(
                "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, detail \
                 FROM deployments WHERE server = ? ORDER BY id DESC LIMIT ?",
            )
            .bind(name),
            None => sqlx::query(
                "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, detail \
                 FROM deployments ORDER BY id DESC LIMIT ?",
            ),
        }
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::deployment).collect()
    }

    async fn last_deployments(&self, servers: &[&str]) -> Result<Vec<DeploymentRecord>, StoreError> {
        // The names travel as one JSON array (bound, never spliced into the text).
        let names = serde_json::to_string(servers).map_err(corrupt)?;
        let rows = sqlx::query(
            "SELECT d.id, d.server, d.action, d.generation, d.previous, d.state, d.actor, d.started_ms, \
             d.finished_ms, d.detail FROM deployments d JOIN (SELECT server, MAX(id) AS id FROM deployments \
             WHERE server IN (SELECT value FROM json_each(?)) GROUP BY server) newest ON d.id = newest.id",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::deployment).collect()
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError> {
        // BEGIN IMMEDIATE takes the write lock before reading the chain's head, so two
        // processes appending at once cannot both chain from the same entry.
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(backend)?;
        let result: Result<AuditRecord, StoreError> = async {
            let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
            let (seq, prev_hash) = match head {
                Some(r) => (r.int("seq")? + 1, r.text("hash")?),
                None => (1, AUDIT_GENESIS.to_owned()),
            };
            let hash = next_hash(self.seal.as_deref(), event, seq, &prev_hash)?;
            sqlx::query(
                "INSERT INTO audit_log (seq, at_ms, actor, action, server, generation, outcome, detail, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(AuditRecord { seq, event: event.clone(), prev_hash, hash })
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end).execute(&mut *conn).await.map_err(backend)?;
        if let (Ok(record), Some(seal)) = (&result, &self.seal)
            && let Err(e) = seal.advance(record)
        {
            tracing::error!(error = %e, "audit checkpoint not written: a deleted tail would go unnoticed");
        }
        result
    }

    async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(AUDIT_SELECT).fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(rows::audit_record).collect()
    }

    async fn lock_server(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        lock::acquire(&self.lock_dir, server, holder, wait).await
    }
}
