//! `rpcc keys import-fernet`: legacy Fernet tokens (a file of `record<TAB>token` lines
//! and/or the legacy panel's database) re-sealed as envelopes, all or nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rpcc_core::deploy::AuditAction;
use rpcc_core::keyring::{FernetKey, RecordId};
use rpcc_store::{LegacyColumn, read_legacy_column};
use zeroize::Zeroizing;

use super::{KeyFileArg, audit};
use crate::cli::fleet::fail;
use crate::cli::{EXIT_INVALID, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct ImportFernetArgs {
    /// The environment variable holding the legacy Fernet key (never pass it in argv).
    #[arg(long, value_name = "VAR")]
    legacy_key_env: String,
    /// A file of `record<TAB>token` lines (`#` comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// The legacy panel's SQLite database.
    #[arg(long, value_name = "FILE")]
    legacy_db: Option<PathBuf>,
    /// The table holding the servers.
    #[arg(long, default_value = "server")]
    table: String,
    /// The column holding the Fernet tokens.
    #[arg(long, default_value = "ssh_password")]
    column: String,
    /// The column naming each server (the record becomes `server/<name>/<field>`).
    #[arg(long, default_value = "name")]
    name_column: String,
    /// The record field for database rows.
    #[arg(long, default_value = "password")]
    field: String,
    /// Also store the envelopes in this state (a SQLite file or a `postgres://` URL).
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyFileArg,
}

pub(super) fn import_fernet(args: &ImportFernetArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    if args.tokens.is_none() && args.legacy_db.is_none() {
        return Err(fail(err, "give --tokens FILE and/or --legacy-db FILE", EXIT_INVALID));
    }
    let legacy = FernetKey::from_env(&args.legacy_key_env).map_err(|e| fail(err, e, EXIT_INVALID))?;
    let ring = args.keys.keyring(err)?;
    let mut tokens: Vec<(RecordId, Zeroizing<String>)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    if let Some(file) = &args.tokens {
        let text = Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| fail(err, format!("cannot read {}: {e}", file.display()), EXIT_INVALID))?,
        );
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((record, token)) = line.split_once('\t') else {
                problems.push(format!("{}:{}: expected `record<TAB>token`", file.display(), i + 1));
                continue;
            };
            match RecordId::parse(record.trim()) {
                Ok(r) => tokens.push((r, Zeroizing::new(token.trim().to_owned()))),
                Err(e) => problems.push(format!("{}:{}: {e}", file.display(), i + 1)),
            }
        }
    }
    let rt = runtime(err)?;
    if let Some(db) = &args.legacy_db {
        let column = LegacyColumn {
            table: args.table.clone(),
            name_column: args.name_column.clone(),
            value_column: args.column.clone(),
        };
        let rows = rt
            .block_on(read_legacy_column(db, &column))
            .map_err(|e| fail(err, format!("legacy database {}: {e}", db.display()), EXIT_INVALID))?;
        for (name, token) in rows {
            match RecordId::server_field(&name, &args.field) {
                Ok(r) => tokens.push((r, Zeroizing::new(token))),
                Err(e) => problems.push(format!("{} {}.{}: {e}", db.display(), args.table, args.name_column)),
            }
        }
    }
    let mut sealed = Vec::with_capacity(tokens.len());
    for (record, token) in &tokens {
        let result = legacy.decrypt(record, token).and_then(|value| {
            let envelope = ring.seal(record, &value)?;
            ring.open(record, &envelope)?;
            Ok(envelope)
        });
        match result {
            Ok(e) => sealed.push((record.clone(), e)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            let _ = writeln!(err, "error: {p}");
        }
        let _ = writeln!(err, "{} problem(s); nothing was imported", problems.len());
        return Err(ExitCode::from(EXIT_INVALID));
    }
    if let Some(state) = &args.state {
        let store = super::open_store(&rt, state, super::NewState::Create, &ring, err)?;
        rt.block_on(store.put_secrets(&sealed)).map_err(|e| fail(err, e, EXIT_INVALID))?;
        let detail = format!(
            "{} legacy Fernet secret(s) re-sealed under {}",
            sealed.len(),
            ring.active_id().map(ToString::to_string).unwrap_or_default()
        );
        audit(&rt, &*store, AuditAction::SecretImport, "ok", &detail, err);
    }
    let mut out = std::io::stdout().lock();
    for (record, envelope) in &sealed {
        let _ = writeln!(out, "{record}\t{envelope}");
    }
    let _ = writeln!(
        err,
        "imported {} legacy secret(s) as envelopes under {}",
        sealed.len(),
        ring.active_id().map(ToString::to_string).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
