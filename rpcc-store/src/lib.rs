//! # rpcc-store
//!
//! rpcc's state: generations, deployments with their state, the hash-chained audit log,
//! sealed secrets, certificates, metric samples and per-server locks, behind rpcc-core's
//! store roles ([`StateStore`](rpcc_core::deploy::StateStore), `SecretStore`, `CertificateStore`, `EngineStore`), on
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

mod common;
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
use rpcc_core::deploy::{AuditSeal, DeploymentRecord, LocalLock};
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

/// A store opened from a URL, before it is handed out behind a role.
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

async fn open_location(
    url: &str,
    seal: Option<AuditSeal>,
    environment: EnvironmentClaim<'_>,
) -> Result<Opened, StoreError> {
    Ok(match location(url)? {
        Location::Postgres(u) => {
            let store = PgStore::open(u).await?.sealed(seal);
            environment.check_pg(&store).await?;
            Opened::Postgres(store)
        }
        Location::Sqlite(u) => {
            let store = SqliteStore::open_url(u).await?.sealed(seal);
            environment.check_sqlite(&store).await?;
            Opened::Sqlite(store)
        }
    })
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
    Ok(match open_location(url, seal, environment).await? {
        Opened::Sqlite(s) => std::sync::Arc::new(s),
        Opened::Postgres(s) => std::sync::Arc::new(s),
    })
}

/// [`open_url`] for a watch process: samples, alerts and membership ([`WatchStore`]).
pub async fn open_watch_url(
    url: &str,
    seal: Option<AuditSeal>,
    environment: EnvironmentClaim<'_>,
) -> Result<std::sync::Arc<dyn WatchStore>, StoreError> {
    Ok(match open_location(url, seal, environment).await? {
        Opened::Sqlite(s) => std::sync::Arc::new(s),
        Opened::Postgres(s) => std::sync::Arc::new(s),
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

    async fn rekey_audit(&self, keyring: &Keyring) -> Result<u64, StoreError> {
        SqliteStore::rekey_audit(self, keyring).await
    }
}

common::shared_store_impls!(SqliteStore, sqlx::SqliteConnection, "BEGIN IMMEDIATE", None);

impl SqliteStore {
    /// Every named server's newest deployment in one query (the names travel as one
    /// bound JSON array, never spliced into the text).
    async fn last_deployments_here(&self, servers: &[&str]) -> Result<Vec<DeploymentRecord>, StoreError> {
        let names = serde_json::to_string(servers).map_err(corrupt)?;
        let rows = sqlx::query(
            "SELECT d.id, d.server, d.action, d.generation, d.previous, d.state, d.actor, d.started_ms, \
             d.finished_ms, d.detail FROM deployments d JOIN (SELECT server, MAX(id) AS id FROM deployments \
             WHERE server IN (SELECT value FROM json_each($1)) GROUP BY server) newest ON d.id = newest.id",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::deployment).collect()
    }

    /// This machine's lock: a `flock` beside the database.
    async fn lock_server_here(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        lock::acquire(&self.lock_dir, server, holder, wait).await
    }
}

#[cfg(test)]
mod tests {
    use rpcc_core::deploy::{AuditAction, AuditEvent, StateStore as _};

    /// A future dropped in the middle of an audit transaction's work (after `BEGIN
    /// IMMEDIATE`, with the write lock taken) leaves every pooled connection outside any
    /// transaction: the rollback runs before the connection is handed out again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_audit_transaction_dropped_mid_way_is_rolled_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = super::SqliteStore::open(&dir.path().join("s.db")).await?;
        let (began, inside) = tokio::sync::oneshot::channel();
        let mut began = Some(began);
        let work = store.in_audit_transaction(async |conn: &mut sqlx::SqliteConnection| {
            sqlx::query("INSERT INTO rpcc_meta (key, value) VALUES ('half', 'done')")
                .execute(&mut *conn)
                .await
                .map_err(super::backend)?;
            if let Some(b) = began.take() {
                let _ = b.send(());
            }
            std::future::pending::<Result<(), super::StoreError>>().await
        });
        let stop = async {
            let _ = inside.await;
        };
        tokio::select! {
            _ = work => return Err("the work never ends".into()),
            () = stop => {}
        }
        // Every connection of the pool at once: each can begin (none is inside BEGIN),
        // and none sees the half-done row.
        let mut conns = Vec::new();
        for _ in 0..4 {
            let mut conn = tokio::time::timeout(std::time::Duration::from_secs(10), store.pool.acquire()).await??;
            sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
            conns.push(conn);
        }
        drop(conns);
        let half: Option<(String,)> =
            sqlx::query_as("SELECT value FROM rpcc_meta WHERE key = 'half'").fetch_optional(&store.pool).await?;
        assert_eq!(half, None, "the dropped transaction was rolled back");
        let event = AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", "after");
        tokio::time::timeout(std::time::Duration::from_secs(10), store.append_audit(&event)).await??;
        Ok(())
    }
}
