//! The PostgreSQL schema: embedded, checksummed migrations (the same versions as the
//! SQLite ones, in PostgreSQL's dialect, plus `server_locks`), applied under an advisory
//! lock so control planes starting together apply each migration once.

use sqlx::postgres::PgPool;

use crate::backend;
use crate::migrate::{APPLIED_SQL, Migration, applied, apply_migration, pending};
use rpcc_core::deploy::StoreError;

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("migrations/0001_initial.sql") },
    Migration { version: 2, name: "secrets", sql: include_str!("migrations/0002_secrets.sql") },
    Migration { version: 3, name: "samples", sql: include_str!("migrations/0003_samples.sql") },
    Migration { version: 4, name: "certificates", sql: include_str!("migrations/0004_certificates.sql") },
    Migration { version: 5, name: "server locks", sql: include_str!("migrations/0005_server_locks.sql") },
    Migration { version: 6, name: "watch members", sql: include_str!("migrations/0006_watch_members.sql") },
    Migration { version: 7, name: "meta", sql: include_str!("migrations/0007_meta.sql") },
    Migration { version: 8, name: "watch claims", sql: include_str!("migrations/0008_watch_claims.sql") },
];

/// Apply what is missing; refuse a database whose applied migrations differ from the
/// embedded ones or that is newer than this binary.
pub(crate) async fn run(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(super::keys::MIGRATE)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rpcc_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let rows = sqlx::query(APPLIED_SQL).fetch_all(&mut *tx).await.map_err(backend)?;
    for m in pending(&applied(&rows)?, MIGRATIONS)? {
        apply_migration!(tx, m);
    }
    tx.commit().await.map_err(backend)
}
