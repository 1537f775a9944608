//! `rpcc validate <inventory.toml> [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rpcc_core::Error;
use rpcc_core::model::Inventory;

use super::{EXIT_INVALID, report_load_error};

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Summary {
    valid: bool,
    servers: usize,
    groups: usize,
    sites: usize,
}

#[derive(serde::Serialize)]
struct Failure<'a> {
    valid: bool,
    kind: &'static str,
    errors: Vec<JsonError<'a>>,
}

#[derive(serde::Serialize)]
struct JsonError<'a> {
    path: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
}

pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    let result = Inventory::from_toml_file(&args.inventory);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    // Write failures (e.g. a closed pipe) are ignored: the exit code still tells.
    match result {
        Ok(inv) => {
            let summary =
                Summary { valid: true, servers: inv.servers.len(), groups: inv.groups.len(), sites: inv.sites.len() };
            if args.json {
                let _ = writeln!(out, "{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                let _ = writeln!(
                    out,
                    "{}: valid: {} servers, {} groups, {} sites",
                    args.inventory.display(),
                    summary.servers,
                    summary.groups,
                    summary.sites
                );
            }
            ExitCode::SUCCESS
        }
        Err(Error::Syntax { message, location }) if args.json => {
            let (line, column) = location.map_or((None, None), |l| (Some(l.line), Some(l.column)));
            let f = Failure {
                valid: false,
                kind: "syntax",
                errors: vec![JsonError { path: "(root)", message: &message, line, column }],
            };
            let _ = writeln!(out, "{}", serde_json::to_string(&f).unwrap_or_default());
            ExitCode::from(EXIT_INVALID)
        }
        Err(Error::Invalid(errors)) if args.json => {
            let list = errors
                .errors()
                .iter()
                .map(|e| JsonError {
                    path: e.path.as_str(),
                    message: &e.message,
                    line: e.location.map(|l| l.line),
                    column: e.location.map(|l| l.column),
                })
                .collect();
            let f = Failure { valid: false, kind: "invalid", errors: list };
            let _ = writeln!(out, "{}", serde_json::to_string(&f).unwrap_or_default());
            ExitCode::from(EXIT_INVALID)
        }
        Err(other) => report_load_error(&args.inventory, &other, &mut err),
    }
}
