//! `rpcc state migrate <sqlite> <postgres>`: move a control plane's state from its
//! SQLite file to PostgreSQL (everything: generations, deployments, the audit chain,
//! sealed secrets, certificates, metric samples), then check the copy.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use rpcc_core::deploy::StateStore as _;
use rpcc_store::{PgStore, SqliteStore, copy_sqlite_to_postgres, redacted_url};

use super::deploy::print_json;
use super::fleet::{EXIT_FAILED, fail};
use super::{EXIT_INVALID, runtime};

/// The state commands.
#[derive(Debug, Subcommand)]
pub(crate) enum StateCommand {
    /// Copy a SQLite state (file path or sqlite://…) into an empty PostgreSQL database
    /// (postgres://…), in one transaction; the audit chain is checked on the copy.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The SQLite state: a file path or `sqlite://path`.
    from: String,
    /// The PostgreSQL database: `postgres://user@host/db` (must hold no rpcc state yet).
    to: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: &StateCommand) -> ExitCode {
    match cmd {
        StateCommand::Migrate(args) => migrate(args),
    }
}

fn migrate(args: &MigrateArgs) -> ExitCode {
    let mut err = std::io::stderr();
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        return fail(
            &mut err,
            format!("{}: the target must be a postgres:// URL", redacted_url(&args.to)),
            EXIT_INVALID,
        );
    }
    let path = args.from.strip_prefix("sqlite://").unwrap_or(&args.from);
    if args.from.contains("://") && !args.from.starts_with("sqlite://") || !std::path::Path::new(path).is_file() {
        return fail(&mut err, format!("{}: not a SQLite state file", args.from), EXIT_INVALID);
    }
    let rt = match runtime(&mut err) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let from = SqliteStore::open(std::path::Path::new(path)).await?;
        let to = PgStore::open(&args.to).await?;
        let report = copy_sqlite_to_postgres(&from, &to).await?;
        let (source, copy) = (from.verify_audit().await?, to.verify_audit().await?);
        Ok::<_, rpcc_core::deploy::StoreError>((report, source, copy))
    });
    let (report, source, copy) = match result {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_FAILED),
    };
    let same = source == copy;
    if args.json {
        print_json(&serde_json::json!({ "tables": report.tables, "audit": copy, "audit_unchanged": same }));
    } else {
        let mut out = std::io::stdout().lock();
        for (table, rows) in &report.tables {
            let _ = writeln!(out, "{table:<16} {rows:>8} row(s)");
        }
        let _ = writeln!(
            out,
            "audit chain: {} entries ({} keyed), {} in the copy as in the source",
            copy.entries,
            copy.keyed,
            if same { "verified the same" } else { "NOT the same" }
        );
        let _ = writeln!(out, "copied {path} into {}", redacted_url(&args.to));
    }
    if same { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) }
}
