//! Per-server deploy locks shared by every control plane: a session advisory lock on a
//! connection of its own (detached from the pool), held while the [`LocalLock`] lives.
//! Dropping the lock closes that connection, and PostgreSQL releases a session's
//! advisory locks when the session ends, also when the holder crashes or its host
//! vanishes (TCP keepalive ends the session then).

use std::time::Duration;

use rpcc_core::deploy::{LocalLock, StoreError, unix_ms};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool};

use crate::backend;
use crate::rows::Cols as _;

/// The lock's key: a 64-bit hash of the server's name in rpcc's key space.
const KEY_SQL: &str = "hashtextextended('rpcc:server:' || $1, 0)";

/// Take the lock for `server`, waiting up to `wait` while another control plane holds it.
pub(crate) async fn acquire(
    pool: &PgPool,
    server: &str,
    holder: &str,
    wait: Duration,
) -> Result<LocalLock, StoreError> {
    if server.is_empty() || !server.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(StoreError::Corrupt { reason: format!("{server:?} is not a server name") });
    }
    let mut conn: PgConnection = pool.acquire().await.map_err(backend)?.detach();
    let deadline = tokio::time::Instant::now() + wait;
    let mut logged = false;
    loop {
        let got: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pg_try_advisory_lock({KEY_SQL})")))
            .bind(server)
            .fetch_one(&mut conn)
            .await
            .map_err(backend)?;
        if got {
            sqlx::query(
                "INSERT INTO server_locks (server, holder, since_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (server) DO UPDATE SET holder = excluded.holder, since_ms = excluded.since_ms",
            )
            .bind(server)
            .bind(format!("{holder} pid {}", std::process::id()))
            .bind(unix_ms())
            .execute(&mut conn)
            .await
            .map_err(backend)?;
            return Ok(LocalLock::new(HeldLock { conn: std::sync::Mutex::new(Some(conn)) }));
        }
        let who = sqlx::query("SELECT holder FROM server_locks WHERE server = $1")
            .bind(server)
            .fetch_optional(&mut conn)
            .await
            .map_err(backend)?
            .map(|r| r.text("holder"))
            .transpose()?
            .unwrap_or_default();
        if tokio::time::Instant::now() >= deadline {
            let _ = conn.close().await;
            return Err(StoreError::LockTimeout { server: server.to_owned(), holder: who, waited: wait });
        }
        if !logged {
            tracing::info!(server, holder = %who, "waiting for another control plane on this server");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The connection whose session holds the advisory lock.
struct HeldLock {
    conn: std::sync::Mutex<Option<PgConnection>>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Dropping the connection closes its socket; the server ends the session and
        // releases its advisory locks (no runtime needed, works from any thread).
        let conn = self.conn.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(conn);
    }
}
