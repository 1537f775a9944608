//! Command-line parsing and dispatch. Only commands that work are listed; later issues
//! add render, plan, apply, rollback, status, drift, run, enroll, keys, watch, check.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod validate;

/// Exit code for invalid input (validation or syntax errors).
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code for files that cannot be read.
pub(crate) const EXIT_UNREADABLE: u8 = 2;

/// rpcc: keep a fleet of nginx reverse-proxy servers configured, deployed, certified
/// and watched, safely.
#[derive(Debug, Parser)]
#[command(name = "rpcc", version, about, long_about = None)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an inventory file and report every error with its path.
    Validate(validate::ValidateArgs),
}

/// Install the tracing subscriber (binaries only), writing to stderr.
pub(crate) fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub(crate) fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
    }
}
