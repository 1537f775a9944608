//! `rpcc service unit|install`: `rpcc watch` as a hardened systemd service (Type=notify
//! with a watchdog, JSON logs to the journal, `/metrics` and `/healthz` on loopback, a
//! read-only system, no capabilities, its own state directory). Secrets never go into
//! the unit (world-readable): a `postgres://` URL with a password, and the keyring, are
//! named in the environment file instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::EXIT_INVALID;
use super::fleet::fail;

/// The service commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Print the systemd unit for `rpcc watch`.
    Unit(UnitArgs),
    /// Write the unit into the systemd directory (then: systemctl daemon-reload; systemctl enable --now <name>).
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct UnitArgs {
    /// The inventory the service watches (absolute path).
    inventory: PathBuf,
    /// The state: a SQLite path or a `postgres://` URL without a password (a password
    /// goes into the environment file as RPCC_STATE). Default: /var/lib/<name>/state.db.
    #[arg(long)]
    state: Option<String>,
    /// The user (and group) the service runs as.
    #[arg(long, default_value = "rpcc")]
    user: String,
    /// The rpcc binary (absolute path). Default: this binary.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where `/metrics` and `/healthz` listen (loopback by default).
    #[arg(long, default_value = "127.0.0.1:9810")]
    listen: String,
    /// Allow a `--listen` address that is not loopback (`rpcc watch --metrics-public`).
    #[arg(long)]
    metrics_public: bool,
    /// The environment file (RPCC_KEY_FILE, a RPCC_STATE with a password …), mode 0600.
    #[arg(long, default_value = "/etc/rpcc/watch.env")]
    env_file: PathBuf,
    /// The unit's name.
    #[arg(long, default_value = "rpcc-watch")]
    name: String,
    /// Allow the JIT the WASM plugin host needs (drops MemoryDenyWriteExecute); set when
    /// the inventory configures check plugins.
    #[arg(long)]
    allow_jit: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    unit: UnitArgs,
    /// The systemd unit directory.
    #[arg(long, default_value = "/etc/systemd/system")]
    dir: PathBuf,
    /// Print what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(cmd: &ServiceCommand) -> ExitCode {
    let mut err = std::io::stderr();
    match cmd {
        ServiceCommand::Unit(args) => match unit(args) {
            Ok(text) => {
                let _ = std::io::stdout().write_all(text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(why) => fail(&mut err, why, EXIT_INVALID),
        },
        ServiceCommand::Install(args) => install(args, &mut err),
    }
}

/// A unit value is one line and no `%` specifier or shell quoting surprises.
fn unit_value(field: &str, value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().any(|c| c.is_control() || c == '%' || c == '"' || c == '\\' || c == ' ') {
        return Err(format!(
            "{field} {value:?}: must be non-empty, one line, without spaces, quotes, backslashes or %"
        ));
    }
    Ok(value.to_owned())
}

fn absolute(field: &str, path: &Path) -> Result<String, String> {
    if !path.is_absolute() {
        return Err(format!("{field} {}: must be an absolute path", path.display()));
    }
    unit_value(field, &path.to_string_lossy())
}

/// The unit text.
pub(crate) fn unit(args: &UnitArgs) -> Result<String, String> {
    let name = unit_value("--name", &args.name)?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("--name {name:?}: letters, digits, '-', '_' and '.' only"));
    }
    let user = unit_value("--user", &args.user)?;
    let inventory = absolute("inventory", &args.inventory)?;
    let bin = match &args.bin {
        Some(b) => absolute("--bin", b)?,
        None => absolute("--bin", &std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?)?,
    };
    let env_file = absolute("--env-file", &args.env_file)?;
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|_| format!("--listen {:?}: expected ip:port, e.g. 127.0.0.1:9810", args.listen))?;
    super::endpoint::check_listen(listen, args.metrics_public)?;
    let public = if args.metrics_public { " --metrics-public" } else { "" };
    let state = match &args.state {
        None => format!("/var/lib/{name}/state.db"),
        Some(s) if s.contains("://") && !s.starts_with("sqlite://") => {
            if rpcc_store::redacted_url(s) != *s {
                return Err("--state: the URL holds a password; put RPCC_STATE=<url> in the environment file (mode 0600) instead of the unit, which anyone can read".into());
            }
            unit_value("--state", s)?
        }
        Some(s) => unit_value("--state", s)?,
    };
    let mdwe = if args.allow_jit {
        "# MemoryDenyWriteExecute is off: the WASM plugin host compiles plugins to machine code.\n"
    } else {
        "MemoryDenyWriteExecute=yes\n"
    };
    Ok(format!(
        "# rpcc watch as a service (generated by `rpcc service unit`).\n\
[Unit]\n\
Description=rpcc watch: metrics, site checks, alerts and certificate renewal for an nginx fleet\n\
After=network-online.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
Type=notify\n\
NotifyAccess=main\n\
WatchdogSec=90\n\
Restart=on-failure\n\
RestartSec=5\n\
User={user}\n\
Group={user}\n\
ExecStart={bin} watch {inventory} --log-format json --listen {listen}{public}\n\
Environment=RPCC_STATE={state}\n\
# The audit checkpoint (RPCC_AUDIT_CHECKPOINT wins over <key file>.audit-head, which\n\
# this read-only system could not write); give other rpcc commands on this state the same.\n\
Environment=RPCC_AUDIT_CHECKPOINT=/var/lib/{name}/audit-head\n\
EnvironmentFile=-{env_file}\n\
StateDirectory={name}\n\
StateDirectoryMode=0700\n\
UMask=0077\n\
# Hardening: a read-only system, no privileges, nothing but IP and the journal.\n\
NoNewPrivileges=yes\n\
CapabilityBoundingSet=\n\
AmbientCapabilities=\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
PrivateMounts=yes\n\
PrivateUsers=yes\n\
DevicePolicy=closed\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectKernelLogs=yes\n\
ProtectControlGroups=yes\n\
ProtectClock=yes\n\
ProtectHostname=yes\n\
ProtectProc=invisible\n\
ProcSubset=pid\n\
RestrictNamespaces=yes\n\
RestrictRealtime=yes\n\
RestrictSUIDSGID=yes\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
LockPersonality=yes\n\
{mdwe}\
RemoveIPC=yes\n\
KeyringMode=private\n\
SystemCallArchitectures=native\n\
SystemCallFilter=@system-service\n\
SystemCallFilter=~@privileged @resources @mount @debug @cpu-emulation @obsolete @raw-io @reboot @swap\n\
SystemCallErrorNumber=EPERM\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    ))
}

fn install(args: &InstallArgs, err: &mut impl Write) -> ExitCode {
    let text = match unit(&args.unit) {
        Ok(t) => t,
        Err(why) => return fail(err, why, EXIT_INVALID),
    };
    let path = args.dir.join(format!("{}.service", args.unit.name));
    if args.dry_run {
        let _ = writeln!(err, "would write {} (0644):", path.display());
        let _ = std::io::stdout().write_all(text.as_bytes());
        return ExitCode::SUCCESS;
    }
    let tmp = path.with_extension("service.rpcc-tmp");
    let written = std::fs::write(&tmp, &text)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return fail(err, format!("cannot write {}: {e}", path.display()), EXIT_INVALID);
    }
    let _ = writeln!(
        err,
        "wrote {}\nnext: create the user ({}), put RPCC_KEY_FILE (and any secret RPCC_STATE) in {} (mode 0600), then\n  systemctl daemon-reload && systemctl enable --now {}\n\
         the service keeps the audit checkpoint in /var/lib/{}/audit-head: run other rpcc commands on its state \
         (audit verify, apply) with RPCC_AUDIT_CHECKPOINT=/var/lib/{}/audit-head so all share that one checkpoint",
        path.display(),
        args.unit.user,
        args.unit.env_file.display(),
        args.unit.name,
        args.unit.name,
        args.unit.name
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(state: &str) -> UnitArgs {
        UnitArgs {
            inventory: "/etc/rpcc/inv.toml".into(),
            state: Some(state.into()),
            user: "rpcc".into(),
            bin: Some("/usr/bin/rpcc".into()),
            listen: "127.0.0.1:9810".into(),
            metrics_public: false,
            env_file: "/etc/rpcc/watch.env".into(),
            name: "rpcc-watch".into(),
            allow_jit: false,
        }
    }

    #[test]
    fn the_unit_never_holds_a_state_password() {
        for state in [
            "postgres://rpcc:hunter2@db/rpcc",
            "postgres://rpcc@db/rpcc?password=hunter2",
            "postgresql://db/rpcc?sslmode=require&PASSWORD=hunter2",
        ] {
            let why = unit(&args(state)).expect_err(state);
            assert!(why.contains("holds a password") && !why.contains("hunter2"), "{state}: {why}");
        }
        let text = unit(&args("postgres://rpcc@db/rpcc?sslmode=require")).expect("no password");
        assert!(text.contains("Environment=RPCC_STATE=postgres://rpcc@db/rpcc?sslmode=require\n"), "{text}");
    }

    #[test]
    fn a_public_metrics_address_needs_the_flag() {
        let mut public = args("/var/lib/rpcc/state.db");
        public.listen = "0.0.0.0:9810".into();
        let why = unit(&public).expect_err("not loopback");
        assert!(why.contains("--metrics-public"), "{why}");
        public.metrics_public = true;
        let text = unit(&public).expect("allowed with the flag");
        assert!(text.contains("--listen 0.0.0.0:9810 --metrics-public\n"), "{text}");
    }
}
