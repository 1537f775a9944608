//! Embedded, checksummed migrations applied in order, each in its own transaction.

use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;

use crate::backend;
use rpcc_core::deploy::StoreError;

/// (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (2, "secrets", include_str!("migrations/0002_secrets.sql")),
    (3, "samples", include_str!("migrations/0003_samples.sql")),
    (4, "certificates", include_str!("migrations/0004_certificates.sql")),
];

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Apply what is missing; refuse a database whose applied migrations differ from the
/// embedded ones (edited after release) or that is newer than this binary.
pub(crate) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rpcc_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_ms INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(backend)?;
    let applied = sqlx::query("SELECT version, checksum FROM rpcc_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    for row in &applied {
        let version: i64 = row.try_get("version").map_err(backend)?;
        let sum: String = row.try_get("checksum").map_err(backend)?;
        match MIGRATIONS.iter().find(|m| m.0 == version) {
            None => {
                return Err(StoreError::Corrupt {
                    reason: format!(
                        "the state database has migration {version}, unknown to this rpcc (newer database?)"
                    ),
                });
            }
            Some((_, name, sql)) if checksum(sql) != sum => {
                return Err(StoreError::Corrupt {
                    reason: format!("migration {version} ({name}) differs from the applied one"),
                });
            }
            Some(_) => {}
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.iter().any(|r| r.try_get::<i64, _>("version").ok() == Some(*version)) {
            continue;
        }
        let mut tx = pool.begin().await.map_err(backend)?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO rpcc_migrations (version, description, checksum, applied_ms) VALUES (?, ?, ?, ?)")
            .bind(version)
            .bind(*name)
            .bind(checksum(sql))
            .bind(rpcc_core::deploy::unix_ms())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version, name, "applied state migration");
    }
    Ok(())
}
