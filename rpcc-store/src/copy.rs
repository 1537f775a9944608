//! `rpcc state migrate`: copy a whole SQLite state into an empty PostgreSQL database,
//! row for row (deployment ids, audit sequence numbers and hashes kept, so the audit
//! chain — keyed entries included — verifies unchanged), in one transaction.

use rpcc_core::deploy::StoreError;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row as _};

use crate::{PgStore, SqliteStore, backend};

/// A column's kind.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Real,
}

/// The tables and columns copied, in dependency order.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "generations",
        &[
            ("server", Kind::Text),
            ("id", Kind::Text),
            ("tree_sha256", Kind::Text),
            ("manifest", Kind::Text),
            ("recorded_ms", Kind::Int),
        ],
    ),
    (
        "deployments",
        &[
            ("id", Kind::Int),
            ("server", Kind::Text),
            ("action", Kind::Text),
            ("generation", Kind::Text),
            ("previous", Kind::Text),
            ("state", Kind::Text),
            ("actor", Kind::Text),
            ("started_ms", Kind::Int),
            ("finished_ms", Kind::Int),
            ("detail", Kind::Text),
        ],
    ),
    (
        "audit_log",
        &[
            ("seq", Kind::Int),
            ("at_ms", Kind::Int),
            ("actor", Kind::Text),
            ("action", Kind::Text),
            ("server", Kind::Text),
            ("generation", Kind::Text),
            ("outcome", Kind::Text),
            ("detail", Kind::Text),
            ("prev_hash", Kind::Text),
            ("hash", Kind::Text),
        ],
    ),
    ("secrets", &[("record", Kind::Text), ("key_id", Kind::Text), ("envelope", Kind::Text), ("updated_ms", Kind::Int)]),
    (
        "certificates",
        &[
            ("site", Kind::Text),
            ("names", Kind::Text),
            ("origin", Kind::Text),
            ("chain_pem", Kind::Text),
            ("fingerprint", Kind::Text),
            ("issuer", Kind::Text),
            ("not_before", Kind::Int),
            ("not_after", Kind::Int),
            ("stored_ms", Kind::Int),
        ],
    ),
    ("rpcc_meta", &[("key", Kind::Text), ("value", Kind::Text)]),
    (
        "metric_samples",
        &[
            ("server", Kind::Text),
            ("at_ms", Kind::Int),
            ("cpu", Kind::Real),
            ("mem", Kind::Real),
            ("load1", Kind::Real),
            ("disk_max", Kind::Real),
        ],
    ),
];

/// One value read from SQLite.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
}

fn bind(q: Query<'_, Postgres, PgArguments>, v: Value) -> Query<'_, Postgres, PgArguments> {
    match v {
        Value::Text(t) => q.bind(t),
        Value::Int(i) => q.bind(i),
        Value::Real(r) => q.bind(r),
    }
}

/// Rows copied per table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// (table, rows).
    pub tables: Vec<(String, u64)>,
}

/// Copy everything `from` holds into `to`, which must hold nothing yet (a refused copy
/// changes nothing). One transaction on the target; row counts are checked before it
/// commits.
pub async fn copy_sqlite_to_postgres(from: &SqliteStore, to: &PgStore) -> Result<CopyReport, StoreError> {
    let mut tx = to.pool.begin().await.map_err(backend)?;
    for (table, _) in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await.map_err(backend)?;
        if any {
            return Err(StoreError::Corrupt {
                reason: format!(
                    "the target already holds state (table {table} is not empty); migrate into an empty database"
                ),
            });
        }
    }
    let mut report = CopyReport { tables: Vec::new() };
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(from.pool()).await.map_err(backend)?;
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), placeholders.join(", "));
        for row in &rows {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
            for (name, kind) in *columns {
                let v = match kind {
                    Kind::Text => Value::Text(row.try_get(*name).map_err(backend)?),
                    Kind::Int => Value::Int(row.try_get(*name).map_err(backend)?),
                    Kind::Real => Value::Real(row.try_get(*name).map_err(backend)?),
                };
                q = bind(q, v);
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
        let count_sql = format!("SELECT count(*) FROM {table}");
        let copied: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)).fetch_one(&mut *tx).await.map_err(backend)?;
        if usize::try_from(copied).ok() != Some(rows.len()) {
            return Err(StoreError::Corrupt {
                reason: format!("{table}: {} rows read but {copied} written; nothing was copied", rows.len()),
            });
        }
        report.tables.push(((*table).to_owned(), copied.unsigned_abs()));
    }
    // New deployments continue after the copied ids.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('deployments', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM deployments",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(report)
}
