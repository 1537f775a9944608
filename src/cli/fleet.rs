//! What the deploy commands share: loading the inventory, opening the state store,
//! choosing servers, rendering, one pooled SSH transport per server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rpcc::engine::{Engine, Selection};
use rpcc_core::deploy::{DeployStep, HookDecision, StepHook};
use rpcc_core::model::Inventory;

use super::EXIT_INVALID;
use super::secrets::SecretArgs;

/// Exit code when a server failed (deploy refused, rolled back, unreachable, drift found).
pub(crate) const EXIT_FAILED: u8 = 3;

/// Arguments every fleet command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct FleetArgs {
    /// The inventory file (TOML).
    pub(crate) inventory: PathBuf,
    /// The state: a SQLite file (or `sqlite://…`), or `postgres://user@host/db` to share
    /// locks, history and secrets between control planes. Default: `RPCC_STATE`, else
    /// `.rpcc/state.db` beside the inventory.
    #[arg(long, env = "RPCC_STATE")]
    pub(crate) state: Option<PathBuf>,
    /// Only these servers (repeatable).
    #[arg(long = "server", value_name = "NAME")]
    pub(crate) servers: Vec<String>,
    /// Only the servers of these groups (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    pub(crate) groups: Vec<String>,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
}

/// The state database for an inventory.
/// The state of a loaded inventory: its environment's `state` (relative SQLite paths
/// against the inventory's directory; default `.rpcc/state-<env>.db` beside it), which
/// `--state`/`RPCC_STATE` may not contradict; without environments, as [`state_path`].
pub(crate) fn state_for(state: Option<&Path>, inventory: &Path, inv: &Inventory) -> Result<String, String> {
    let Some(env) = &inv.environment else { return Ok(state_path(state, inventory).to_string_lossy().into_owned()) };
    let dir = inventory.parent().unwrap_or(Path::new("."));
    let own = match &env.state {
        Some(s) if s.contains("://") && !s.starts_with("sqlite://") => s.clone(),
        Some(s) => {
            let path = Path::new(s.strip_prefix("sqlite://").unwrap_or(s));
            dir.join(path).to_string_lossy().into_owned()
        }
        None => dir.join(format!(".rpcc/state-{}.db", env.name)).to_string_lossy().into_owned(),
    };
    match state {
        Some(given) if given.to_string_lossy() != own => Err(format!(
            "environment {} keeps its state in {}; --state/RPCC_STATE {} would mix environments",
            env.name,
            rpcc_store::redacted_url(&own),
            rpcc_store::redacted_url(&given.to_string_lossy())
        )),
        _ => Ok(own),
    }
}

pub(crate) fn state_path(state: Option<&Path>, inventory: &Path) -> PathBuf {
    match state {
        Some(p) => p.to_owned(),
        None => inventory.parent().unwrap_or(Path::new(".")).join(".rpcc/state.db"),
    }
}

/// A loaded inventory with everything the fleet commands need: the shared
/// [`rpcc::engine::Engine`] and the runtime that drives it.
pub(crate) struct Session {
    pub(crate) engine: Engine,
    pub(crate) runtime: tokio::runtime::Runtime,
}

pub(crate) fn fail(err: &mut impl Write, message: impl std::fmt::Display, code: u8) -> ExitCode {
    let _ = writeln!(err, "error: {message}");
    ExitCode::from(code)
}

impl Session {
    /// Load and validate the inventory (nothing reaches a server otherwise), open the store.
    pub(crate) fn load(args: &FleetArgs, err: &mut impl Write) -> Result<Self, ExitCode> {
        let inv = args.secrets.load(&args.inventory, err)?;
        let keyring = args.secrets.keyring_for(&inv, err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(err, format!("cannot start the runtime: {e}"), EXIT_INVALID))?;
        let state =
            state_for(args.state.as_deref(), &args.inventory, &inv).map_err(|why| fail(err, why, EXIT_INVALID))?;
        let engine = runtime
            .block_on(Engine::open_url(inv, &state, keyring))
            .map_err(|e| fail(err, e, EXIT_INVALID))?
            .with_notifier_settings(super::monitor::notifier_settings());
        engine.check(&args.selection()).map_err(|e| fail(err, e, EXIT_INVALID))?;
        Ok(Self { engine, runtime })
    }

    /// The inventory.
    pub(crate) fn inv(&self) -> &Inventory {
        self.engine.inventory()
    }
}

impl FleetArgs {
    /// The servers the flags select.
    pub(crate) fn selection(&self) -> Selection {
        Selection { servers: self.servers.clone(), groups: self.groups.clone() }
    }
}

/// `RPCC_FAULT_INJECT=abort-before:<step>[:<server>]` makes the process abort (no
/// clean-up at all, like `kill -9`) right before that step. Used by the crash tests;
/// read only in builds with the `testing-hooks` feature ([`super::hooks`]).
pub(crate) struct AbortBefore {
    step: String,
    server: Option<String>,
}

impl AbortBefore {
    pub(crate) fn from_env() -> Option<Arc<dyn StepHook>> {
        let spec = super::hooks::fault_inject()?;
        let rest = spec.strip_prefix("abort-before:")?;
        let (step, server) = match rest.split_once(':') {
            Some((s, srv)) => (s.to_owned(), Some(srv.to_owned())),
            None => (rest.to_owned(), None),
        };
        Some(Arc::new(Self { step, server }))
    }
}

impl StepHook for AbortBefore {
    fn before(&self, server: &str, step: DeployStep) -> HookDecision {
        if step.to_string() == self.step && self.server.as_deref().is_none_or(|s| s == server) {
            tracing::error!(server, %step, "fault injection: aborting the process");
            std::process::abort();
        }
        HookDecision::Continue
    }
}
