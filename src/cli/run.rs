//! `rpcc run <inventory> <server> -- <program> [args…]`: run one command on a server
//! over SSH with its pinned host key (the legacy panel's "execute command").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rpcc_core::transport::{Argv, ExecRequest, ExitStatus, Transport};
use rpcc_ssh::{SshTarget, SshTransport};

use super::secrets::SecretArgs;
use super::{EXIT_INVALID, load_with_server, runtime};

/// Exit code when the command could not be run (connection, host key, auth, timeout).
const EXIT_TRANSPORT: u8 = 255;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// The server's name in the inventory.
    server: String,
    /// Stop the command after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The program and its arguments (each passed as one argument, never re-split).
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
    #[command(flatten)]
    secrets: SecretArgs,
}

pub(crate) fn run(args: &RunArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let (inv, index) = match load_with_server(&args.inventory, &args.server, &args.secrets, &mut err) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let server = &inv.servers[index];
    let keyring = match args.secrets.keyring_for(&inv, &mut err) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let argv = match Argv::new(&args.command[0], args.command[1..].iter().cloned()) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let base = inv.base_dir.clone().unwrap_or_else(|| Path::new(".").to_path_buf());
    let runtime = match runtime(&mut err) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let request = ExecRequest::new(argv).timeout(Duration::from_secs(args.timeout));
    let result = runtime.block_on(async {
        let transport = SshTransport::new(SshTarget::from_server(server, &base, keyring.as_ref())?)?;
        transport.exec(request).await
    });
    match result {
        Ok(out) => {
            let _ = std::io::stdout().lock().write_all(&out.stdout);
            let _ = err.write_all(&out.stderr);
            if out.truncated {
                let _ = writeln!(err, "rpcc: output was cut at the size limit");
            }
            match out.status {
                ExitStatus::Code(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                ExitStatus::Signal(s) => {
                    let _ = writeln!(err, "rpcc: the command was killed by signal {s}");
                    ExitCode::from(EXIT_TRANSPORT - 1)
                }
            }
        }
        Err(e) => {
            let _ = writeln!(err, "error: {}: {e}", server.name);
            ExitCode::from(EXIT_TRANSPORT)
        }
    }
}
