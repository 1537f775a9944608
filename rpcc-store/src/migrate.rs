//! Embedded, checksummed migrations applied in order, each in its own transaction (the
//! SQLite schema; the rules — checksums, refusal of edited or newer schemas — are shared
//! with the PostgreSQL one).

use sha2::{Digest as _, Sha256};
use sqlx::sqlite::SqlitePool;

use crate::backend;
use rpcc_core::deploy::StoreError;

/// One embedded schema change.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("migrations/0001_initial.sql") },
    Migration { version: 2, name: "secrets", sql: include_str!("migrations/0002_secrets.sql") },
    Migration { version: 3, name: "samples", sql: include_str!("migrations/0003_samples.sql") },
    Migration { version: 4, name: "certificates", sql: include_str!("migrations/0004_certificates.sql") },
    Migration { version: 5, name: "watch members", sql: include_str!("migrations/0005_watch_members.sql") },
    Migration { version: 6, name: "meta", sql: include_str!("migrations/0006_meta.sql") },
    Migration { version: 7, name: "watch claims", sql: include_str!("migrations/0007_watch_claims.sql") },
];

pub(crate) fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded migrations not yet applied, in order, given the applied (version,
/// checksum) pairs. Refuses a database with a migration this binary does not know
/// (newer) or whose applied text differs from the embedded one (edited after release).
pub(crate) fn pending<'m>(
    applied: &[(i64, String)],
    embedded: &'m [Migration],
) -> Result<Vec<&'m Migration>, StoreError> {
    for (version, sum) in applied {
        match embedded.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Corrupt {
                    reason: format!(
                        "the state database has migration {version}, unknown to this rpcc (newer database?)"
                    ),
                });
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::Corrupt {
                    reason: format!("migration {version} ({}) differs from the applied one", m.name),
                });
            }
            Some(_) => {}
        }
    }
    Ok(embedded.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
}

/// The applied migrations, oldest first (both backends).
pub(crate) const APPLIED_SQL: &str = "SELECT version, checksum FROM rpcc_migrations ORDER BY version";

/// Run one migration's SQL and record it, on `$conn` (a connection or transaction of
/// either backend; `$n` placeholders work in SQLite too).
macro_rules! apply_migration {
    ($conn:expr, $m:expr) => {{
        sqlx::raw_sql($m.sql).execute(&mut *$conn).await.map_err($crate::backend)?;
        sqlx::query("INSERT INTO rpcc_migrations (version, description, checksum, applied_ms) VALUES ($1, $2, $3, $4)")
            .bind($m.version)
            .bind($m.name)
            .bind($crate::migrate::checksum($m.sql))
            .bind(rpcc_core::deploy::unix_ms())
            .execute(&mut *$conn)
            .await
            .map_err($crate::backend)?;
        tracing::info!(version = $m.version, name = $m.name, "applied state migration");
    }};
}
pub(crate) use apply_migration;

/// (version, checksum) pairs from [`APPLIED_SQL`] rows.
pub(crate) fn applied(rows: &[impl crate::rows::Cols]) -> Result<Vec<(i64, String)>, StoreError> {
    rows.iter().map(|r| Ok((r.int("version")?, r.text("checksum")?))).collect()
}

/// Apply what is missing (see [`pending`]).
pub(crate) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rpcc_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_ms INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(backend)?;
    let rows = sqlx::query(APPLIED_SQL).fetch_all(pool).await.map_err(backend)?;
    for m in pending(&applied(&rows)?, MIGRATIONS)? {
        let mut tx = pool.begin().await.map_err(backend)?;
        apply_migration!(tx, m);
        tx.commit().await.map_err(backend)?;
    }
    Ok(())
}
