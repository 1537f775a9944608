//! Read-only access to a legacy panel's SQLite database (for `rpcc keys import-fernet`).

use std::path::Path;

use sqlx::Row as _;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{StoreError, backend};

/// Where the legacy panel keeps its encrypted values.
#[derive(Clone, Debug)]
pub struct LegacyColumn {
    /// Table, e.g. `server`.
    pub table: String,
    /// Column naming the row (becomes part of the record), e.g. `name`.
    pub name_column: String,
    /// Column holding the Fernet token, e.g. `ssh_password`.
    pub value_column: String,
}

fn identifier(what: &str, s: &str) -> Result<String, StoreError> {
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(format!("\"{s}\""))
    } else {
        Err(StoreError::Backend {
            reason: format!("{what} {s:?} is not a plain SQL identifier (letters, digits, `_`)"),
            retryable: false,
        })
    }
}

/// Every `(name, value)` pair of `column` in the legacy database at `path`, opened
/// read-only; rows whose value is NULL or empty are skipped.
pub async fn read_legacy_column(path: &Path, column: &LegacyColumn) -> Result<Vec<(String, String)>, StoreError> {
    let table = identifier("table", &column.table)?;
    let name = identifier("name column", &column.name_column)?;
    let value = identifier("column", &column.value_column)?;
    if !path.is_file() {
        return Err(StoreError::Backend { reason: format!("{} is not a file", path.display()), retryable: false });
    }
    let mut conn = SqliteConnectOptions::new().filename(path).read_only(true).connect().await.map_err(backend)?;
    let sql = format!("SELECT CAST({name} AS TEXT) AS n, CAST({value} AS TEXT) AS v FROM {table} ORDER BY 1");
    // Safe: every identifier passed `identifier` (letters, digits, `_`) and is quoted.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(&mut conn).await.map_err(backend)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let n: Option<String> = row.try_get("n").map_err(backend)?;
        let v: Option<String> = row.try_get("v").map_err(backend)?;
        if let (Some(n), Some(v)) = (n, v)
            && !v.is_empty()
        {
            out.push((n, v));
        }
    }
    let _ = conn.close().await;
    Ok(out)
}
