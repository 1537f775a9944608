//! `rpcc validate <inventory.toml> [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rpcc_core::Error;
use rpcc_core::model::Inventory;

use rpcc_core::keyring::{Keyring, KeyringError};

use super::secrets::SecretArgs;
use super::{EXIT_INVALID, report_load_error};

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(serde::Serialize)]
struct Summary {
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    valid: bool,
    servers: usize,
    groups: usize,
    sites: usize,
}

#[derive(serde::Serialize)]
struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
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

/// Validate the inventory; one that defines environments is validated once per
/// environment unless `--env` names one (exit 1 if any is invalid).
pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    if args.secrets.env.is_none() {
        let text = std::fs::read_to_string(&args.inventory).unwrap_or_default();
        let envs = Inventory::environment_names(&text);
        if !envs.is_empty() {
            let codes: Vec<ExitCode> = envs.iter().map(|env| run_one(args, Some(env))).collect();
            return codes.into_iter().find(|c| *c != ExitCode::SUCCESS).unwrap_or(ExitCode::SUCCESS);
        }
    }
    run_one(args, args.secrets.env.as_deref())
}

fn run_one(args: &ValidateArgs, env: Option<&str>) -> ExitCode {
    let options = rpcc_core::LoadOptions::allow_plaintext(args.secrets.allow_plaintext).with_environment(env);
    let environment = env.map(str::to_owned);
    let label = match env {
        Some(e) => format!("{} [env {e}]", args.inventory.display()),
        None => args.inventory.display().to_string(),
    };
    let result = Inventory::from_toml_file_with(&args.inventory, &options);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    // Write failures (e.g. a closed pipe) are ignored: the exit code still tells.
    match result {
        Ok(inv) => {
            for path in &inv.plaintext_secrets {
                let _ = writeln!(
                    err,
                    "warning: {}: {path} is a plain-text secret (accepted by --allow-plaintext); seal it with `rpcc keys encrypt`",
                    args.inventory.display()
                );
            }
            if let Err(code) = check_secrets(&inv, args, &mut err) {
                return code;
            }
            let summary = Summary {
                environment,
                valid: true,
                servers: inv.servers.len(),
                groups: inv.groups.len(),
                sites: inv.sites.len(),
            };
            if args.json {
                let _ = writeln!(out, "{}", serde_json::to_string(&summary).unwrap_or_default());
            } else {
                let _ = writeln!(
                    out,
                    "{label}: valid: {} servers, {} groups, {} sites",
                    summary.servers, summary.groups, summary.sites
                );
            }
            ExitCode::SUCCESS
        }
        Err(Error::Syntax { message, location }) if args.json => {
            let (line, column) = location.map_or((None, None), |l| (Some(l.line), Some(l.column)));
            let f = Failure {
                environment,
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
            let f = Failure { environment, valid: false, kind: "invalid", errors: list };
            let _ = writeln!(out, "{}", serde_json::to_string(&f).unwrap_or_default());
            ExitCode::from(EXIT_INVALID)
        }
        Err(other) => {
            if env.is_some() {
                let _ = writeln!(err, "{label}:");
            }
            report_load_error(&args.inventory, &other, &mut err)
        }
    }
}

/// Open every sealed secret when a keyring is configured, so a wrong key, a retired key
/// or an envelope moved between records shows up before a deploy needs it.
fn check_secrets(inv: &Inventory, args: &ValidateArgs, err: &mut impl Write) -> Result<(), ExitCode> {
    let sealed: Vec<_> = inv.secrets().into_iter().filter(|s| s.envelope().is_some()).collect();
    if sealed.is_empty() {
        return Ok(());
    }
    let key_file = args.secrets.key_file_for(inv).map_err(|why| {
        let _ = writeln!(err, "error: {why}");
        ExitCode::from(EXIT_INVALID)
    })?;
    let keyring = match Keyring::load(key_file.as_deref()) {
        Ok(k) => k,
        Err(KeyringError::NoKeys) => {
            let _ = writeln!(
                err,
                "note: {} sealed secret(s) not opened: no keyring configured (RPCC_KEYS, RPCC_KEY_FILE or --key-file)",
                sealed.len()
            );
            return Ok(());
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Err(ExitCode::from(EXIT_INVALID));
        }
    };
    let failures: Vec<_> = sealed.iter().filter_map(|s| s.open(Some(&keyring)).err()).collect();
    for e in &failures {
        let _ = writeln!(err, "{}: {e}", args.inventory.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let _ = writeln!(
            err,
            "{}: {} secret(s) cannot be opened; nothing was changed",
            args.inventory.display(),
            failures.len()
        );
        Err(ExitCode::from(EXIT_INVALID))
    }
}
