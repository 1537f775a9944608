//! `rpcc enroll <inventory> <server> [--yes]`: trust on first use, as an explicit act.
//! Shows the host key the server presents and writes it to the inventory's `host_key`
//! only after `--yes` or an interactive confirmation. An existing, different pin is
//! never replaced here: a changed key is a security event to check out of band.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rpcc_core::model::Inventory;
use rpcc_ssh::{SshTarget, SshTransport};

use super::secrets::SecretArgs;
use super::{EXIT_INVALID, EXIT_UNREADABLE, load_with_server, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct EnrollArgs {
    /// The inventory file (TOML); it is rewritten in place, formatting kept.
    inventory: PathBuf,
    /// The server's name in the inventory.
    server: String,
    /// Write the key without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

pub(crate) fn run(args: &EnrollArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let (inv, index) = match load_with_server(&args.inventory, &args.server, &args.secrets, &mut err) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let server = &inv.servers[index];
    let base = inv.base_dir.clone().unwrap_or_else(|| Path::new(".").to_path_buf());
    let keyring = match args.secrets.keyring_for(&inv, &mut err) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let target = match SshTarget::for_enrolment(server, &base, keyring.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let observed = match runtime(&mut err) {
        Ok(rt) => rt.block_on(SshTransport::observe_host_key(&target)),
        Err(code) => return code,
    };
    let observed = match observed {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "error: {}: {e}", server.name);
            return ExitCode::from(255);
        }
    };
    let pin = observed.pin();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} ({}) presents {pin}", server.name, target.describe());
    match &server.host_key {
        Some(current) if current.as_str() == pin => {
            let _ = writeln!(out, "{} is already enrolled with this key; nothing to do", server.name);
            return ExitCode::SUCCESS;
        }
        Some(current) => {
            let _ = writeln!(
                err,
                "error: {} is pinned to {current}, but presents {pin}. A changed host key may be an attack; \
                 verify the new key out of band, then remove host_key from the inventory and enrol again. Nothing was changed.",
                server.name
            );
            return ExitCode::from(EXIT_INVALID);
        }
        None => {}
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            let _ = writeln!(err, "not written: confirm interactively or pass --yes");
            return ExitCode::from(EXIT_INVALID);
        }
        let _ = write!(out, "Trust this key for {} and write it to {}? [y/N] ", server.name, args.inventory.display());
        let _ = out.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            let _ = writeln!(out, "not written");
            return ExitCode::from(EXIT_INVALID);
        }
    }
    match write_pin(
        &args.inventory,
        &args.server,
        &pin,
        &rpcc_core::LoadOptions::allow_plaintext(args.secrets.allow_plaintext)
            .with_environment(args.secrets.env.as_deref()),
    ) {
        Ok(()) => {
            tracing::info!(server = %server.name, host_key = %pin, "host key enrolled");
            let _ =
                writeln!(out, "enrolled {}: host_key = \"{pin}\" written to {}", server.name, args.inventory.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}; nothing was changed");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

/// Set `host_key` of the named server, keeping the rest of the file as it is; write
/// to a temporary file, check that the result still validates, then rename.
fn write_pin(file: &Path, server: &str, pin: &str, options: &rpcc_core::LoadOptions) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("cannot edit {}: {e}", file.display()))?;
    let servers = doc.get_mut("servers").and_then(|s| s.as_array_of_tables_mut()).ok_or_else(|| {
        format!("{} has no [[servers]] tables to edit (inline arrays are not rewritten)", file.display())
    })?;
    let entry = servers
        .iter_mut()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(server))
        .ok_or_else(|| format!("server {server:?} not found as a [[servers]] table"))?;
    entry.insert("host_key", toml_edit::value(pin));
    let updated = doc.to_string();
    Inventory::from_toml_str_with(&updated, options)
        .map_err(|e| format!("the edited inventory would not validate: {e}"))?;
    // A new temporary file (O_EXCL, random name) beside the inventory, then a rename.
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rpcc-enroll-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, updated.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
    if let Ok(meta) = std::fs::metadata(file) {
        let _ = tmp.as_file().set_permissions(meta.permissions());
    }
    tmp.persist(file).map(drop).map_err(|e| format!("cannot replace {}: {e}", file.display()))
}
