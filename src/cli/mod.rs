//! Command-line parsing and dispatch. Only commands that work are listed; later issues
//! add more.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod bootstrap;
mod certs;
mod deploy;
mod endpoint;
mod enroll;
mod fleet;
mod hooks;
mod keys;
mod monitor;
mod plugin;
mod render;
mod run;
mod sd_notify;
mod secrets;
mod service;
mod state;
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

    /// Log format on stderr: `text` for people, `json` (one object per line) for a log
    /// collector such as journald.
    #[arg(long, value_enum, default_value = "text", global = true, env = "RPCC_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an inventory file and report every error with its path.
    Validate(validate::ValidateArgs),
    /// Render each server's nginx configuration tree into a directory.
    Render(render::RenderArgs),
    /// Prepare a new server over SSH as an administrator: packages, the deploy user, the helper and its sudoers entry.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Show a server's SSH host key and pin it in the inventory (trust on first use, explicit).
    Enroll(enroll::EnrollArgs),
    /// Run one command on a server over SSH (pinned host key), e.g. `rpcc run inv.toml edge-1 -- nginx -t`.
    Run(run::RunArgs),
    /// Show what `apply` would change on each server (files and unified diffs); changes nothing.
    Plan(deploy::PlanArgs),
    /// Deploy: render, stage, `nginx -t`, switch, reload, verify, probe; restore on failure.
    Apply(deploy::ApplyArgs),
    /// Activate an earlier generation on a server through the same verified path.
    Rollback(deploy::RollbackArgs),
    /// Per server: the live generation, the last deployment, when and by whom.
    Status(fleet::FleetArgs),
    /// Compare each server's live files with the recorded generation; report hand edits.
    Drift(fleet::FleetArgs),
    /// A server's deployments, newest first.
    History(deploy::HistoryArgs),
    /// The audit log: `verify` its keyed chain and checkpoint, `list` its entries.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Certificates: `status` (stored vs served, expiry), `renew` (obtain what is due and deploy it).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run `rpcc watch` as a hardened systemd service: `unit` prints the unit, `install` writes it.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Print the deploy helper, to install on a server as a root-owned file (`nginx.helper`)
    /// that a sudoers entry lets the deploy user run, and nothing else. It reads every
    /// path from its root-owned configuration (`rpcc bootstrap` writes both).
    Helper(HelperArgs),
    /// The state store: `migrate` a SQLite state into PostgreSQL (several control planes).
    #[command(subcommand)]
    State(state::StateCommand),
    /// The keyring: generate keys, seal secrets, rotate, retire, import legacy Fernet tokens.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// One monitoring round: Glances metrics per server, HTTP(S) and certificate per site and server.
    Check(monitor::CheckArgs),
    /// Monitor on the inventory's interval; alerts go to its notifiers; stops cleanly on Ctrl-C/SIGTERM.
    Watch(monitor::WatchArgs),
    /// WASM plugins: `rpcc plugin check <file.wasm>` loads one and runs it on a sample site.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Install the tracing subscriber (binaries only), writing to stderr.
/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // The platform verifier logs every untrusted peer certificate at ERROR; rpcc reports
    // trust itself (monitoring, `certs status`), so that noise is off unless asked for.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},rustls_platform_verifier=off")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

pub(crate) fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Enroll(args) => enroll::run(&args),
        Command::Bootstrap(args) => bootstrap::run(&args),
        Command::Plan(args) => deploy::plan(&args),
        Command::Apply(args) => deploy::apply(&args),
        Command::Rollback(args) => deploy::rollback(&args),
        Command::Status(args) => deploy::status(&args),
        Command::Drift(args) => deploy::drift(&args),
        Command::History(args) => deploy::history(&args),
        Command::Audit(cmd) => audit::run(&cmd),
        Command::Certs(cmd) => certs::run(&cmd),
        Command::Keys(cmd) => keys::run(&cmd),
        Command::State(cmd) => state::run(&cmd),
        Command::Service(cmd) => service::run(&cmd),
        Command::Helper(args) => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(rpcc_core::deploy::remote::helper_file(&args.conf).as_bytes());
            ExitCode::SUCCESS
        }
        Command::Check(args) => monitor::check(&args),
        Command::Watch(args) => monitor::watch(&args),
        Command::Plugin(cmd) => plugin::run(&cmd),
    }
}

/// `rpcc helper`.
#[derive(Debug, clap::Args)]
pub(crate) struct HelperArgs {
    /// The root-owned configuration the installed helper reads (`nginx.helper_conf`).
    #[arg(long, value_name = "PATH", default_value = rpcc_core::deploy::remote::DEFAULT_HELPER_CONF, value_parser = helper_conf_path)]
    conf: String,
}

/// An absolute path of rpcc's path alphabet.
fn helper_conf_path(s: &str) -> Result<String, String> {
    rpcc_core::value::RemotePath::parse(s).map(|p| p.to_string()).map_err(|e| e.to_string())
}

/// Print a load failure the way `validate` does (without JSON) and pick the exit code.
pub(crate) fn report_load_error(
    file: &std::path::Path,
    error: &rpcc_core::Error,
    err: &mut impl std::io::Write,
) -> ExitCode {
    let file = file.display();
    match error {
        rpcc_core::Error::Read { source, .. } => {
            let _ = writeln!(err, "error: cannot read {file}: {source}");
            ExitCode::from(EXIT_UNREADABLE)
        }
        rpcc_core::Error::Syntax { message, location } => {
            let at = location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default();
            let _ = writeln!(err, "{file}{at}: TOML syntax error: {message}");
            ExitCode::from(EXIT_INVALID)
        }
        rpcc_core::Error::Invalid(errors) => {
            for e in errors.errors() {
                let at = e.location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default();
                let _ = writeln!(err, "{file}{at}: {}: {}", e.path, e.message);
            }
            let n = errors.len();
            let _ = writeln!(err, "{file}: {n} error{}; nothing was changed", if n == 1 { "" } else { "s" });
            ExitCode::from(EXIT_INVALID)
        }
        other => {
            let _ = writeln!(err, "error: {other}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Load the inventory and find `server` in it, reporting failures the way every
/// command does. Returns the inventory and the server's index.
pub(crate) fn load_with_server(
    file: &std::path::Path,
    server: &str,
    secrets: &secrets::SecretArgs,
    err: &mut impl std::io::Write,
) -> Result<(rpcc_core::model::Inventory, usize), ExitCode> {
    let inv = secrets.load(file, err)?;
    match inv.servers.iter().position(|s| s.name.as_str() == server) {
        Some(i) => Ok((inv, i)),
        None => {
            let _ = writeln!(err, "error: server {server:?} is not in {}", file.display());
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The single-threaded runtime a command uses for its network work.
pub(crate) fn runtime(err: &mut impl std::io::Write) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        let _ = writeln!(err, "error: cannot start the runtime: {e}");
        ExitCode::from(EXIT_INVALID)
    })
}
