//! What the deploy commands share: loading the inventory, opening the state store,
//! choosing servers, rendering, one pooled SSH transport per server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rpcc_core::deploy::{DeployStep, HookDecision, StepHook};
use rpcc_core::generation::{Generation, Renderer as _};
use rpcc_core::keyring::Keyring;
use rpcc_core::model::{Inventory, Server};
use rpcc_core::transport::Transport;
use rpcc_nginx::{NginxRenderer, RenderOptions};
use rpcc_ssh::{SshPool, SshTarget};
use rpcc_store::SqliteStore;

use super::EXIT_INVALID;
use super::secrets::SecretArgs;

/// Exit code when a server failed (deploy refused, rolled back, unreachable, drift found).
pub(crate) const EXIT_FAILED: u8 = 3;

/// Arguments every fleet command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct FleetArgs {
    /// The inventory file (TOML).
    pub(crate) inventory: PathBuf,
    /// The state database (SQLite). Default: `RPCC_STATE`, else `.rpcc/state.db` beside
    /// the inventory.
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
pub(crate) fn state_path(state: Option<&Path>, inventory: &Path) -> PathBuf {
    match state {
        Some(p) => p.to_owned(),
        None => inventory.parent().unwrap_or(Path::new(".")).join(".rpcc/state.db"),
    }
}

/// A loaded inventory with everything the fleet commands need.
pub(crate) struct Fleet {
    pub(crate) inv: Inventory,
    pub(crate) base: PathBuf,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) pool: SshPool,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// Opens sealed SSH passwords and passphrases (`None`: the inventory has none).
    pub(crate) keyring: Option<Keyring>,
}

pub(crate) fn fail(err: &mut impl Write, message: impl std::fmt::Display, code: u8) -> ExitCode {
    let _ = writeln!(err, "error: {message}");
    ExitCode::from(code)
}

impl Fleet {
    /// Load and validate the inventory (nothing reaches a server otherwise), open the store.
    pub(crate) fn load(args: &FleetArgs, err: &mut impl Write) -> Result<Self, ExitCode> {
        let inv = args.secrets.load(&args.inventory, err)?;
        let keyring = args.secrets.keyring_for(&inv, err)?;
        for name in &args.servers {
            if inv.server(name).is_none() {
                return Err(fail(err, format!("server {name:?} is not in {}", args.inventory.display()), EXIT_INVALID));
            }
        }
        for name in &args.groups {
            if inv.group(name).is_none() {
                return Err(fail(err, format!("group {name:?} is not in {}", args.inventory.display()), EXIT_INVALID));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(err, format!("cannot start the runtime: {e}"), EXIT_INVALID))?;
        let path = state_path(args.state.as_deref(), &args.inventory);
        let store = runtime
            .block_on(SqliteStore::open(&path))
            .map_err(|e| fail(err, format!("state {}: {e}", path.display()), EXIT_INVALID))?;
        let base = inv.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        Ok(Self { inv, base, store: Arc::new(store), pool: SshPool::new(), runtime, keyring })
    }

    /// The selected servers, in inventory order: `--server`s, the servers of `--group`s,
    /// or all. A server in several groups appears once.
    pub(crate) fn selected(&self, args: &FleetArgs) -> Vec<&Server> {
        self.inv
            .servers
            .iter()
            .filter(|s| {
                let name = s.name.as_str();
                let by_name = args.servers.iter().any(|n| n == name);
                let by_group = args
                    .groups
                    .iter()
                    .any(|g| self.inv.group(g).is_some_and(|g| g.servers.iter().any(|m| m.as_str() == name)));
                (args.servers.is_empty() && args.groups.is_empty()) || by_name || by_group
            })
            .collect()
    }

    /// The groups that contain any of `servers`.
    pub(crate) fn groups_of<'a>(&'a self, servers: &[&Server]) -> Vec<&'a rpcc_core::model::DomainGroup> {
        self.inv.groups.iter().filter(|g| g.servers.iter().any(|m| servers.iter().any(|s| s.name == *m))).collect()
    }

    /// Render each server (all or nothing: an error renders none).
    pub(crate) fn render(&self, servers: &[&Server], err: &mut impl Write) -> Result<Vec<Arc<Generation>>, ExitCode> {
        let renderer = NginxRenderer::new(RenderOptions::default()).map_err(|e| fail(err, e, EXIT_INVALID))?;
        servers
            .iter()
            .map(|s| {
                renderer
                    .render(&self.inv, s)
                    .map(Arc::new)
                    .map_err(|e| fail(err, format!("server {}: {e}", s.name), EXIT_INVALID))
            })
            .collect()
    }

    /// The selected servers and their rendered generations.
    pub(crate) fn selected_rendered(
        &self,
        args: &FleetArgs,
        err: &mut impl Write,
    ) -> Result<(Vec<&Server>, Vec<Arc<Generation>>), ExitCode> {
        let servers = self.selected(args);
        let gens = self.render(&servers, err)?;
        Ok((servers, gens))
    }

    /// Run one job per server concurrently (at most 32 at once); results in job order.
    pub(crate) fn on_each<F: std::future::Future>(&self, jobs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        use futures_util::StreamExt as _;
        let indexed: Vec<_> = jobs.into_iter().enumerate().map(|(i, f)| async move { (i, f.await) }).collect();
        let mut done: Vec<(usize, F::Output)> =
            self.runtime.block_on(futures_util::stream::iter(indexed).buffer_unordered(32).collect());
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, v)| v).collect()
    }

    /// The pooled SSH transport of a server; an unenrolled server is an error naming it.
    pub(crate) fn transport(&self, server: &Server) -> Result<Arc<dyn Transport>, String> {
        let target = SshTarget::from_server(server, &self.base, self.keyring.as_ref()).map_err(|e| e.to_string())?;
        self.pool.transport(target).map(|t| t as Arc<dyn Transport>).map_err(|e| e.to_string())
    }
}

/// `RPCC_FAULT_INJECT=abort-before:<step>[:<server>]` makes the process abort (no
/// clean-up at all, like `kill -9`) right before that step. Used by the crash tests;
/// unset in normal use.
pub(crate) struct AbortBefore {
    step: String,
    server: Option<String>,
}

impl AbortBefore {
    pub(crate) fn from_env() -> Option<Arc<dyn StepHook>> {
        let spec = std::env::var("RPCC_FAULT_INJECT").ok()?;
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
            tracing::error!(server, %step, "RPCC_FAULT_INJECT: aborting the process");
            std::process::abort();
        }
        HookDecision::Continue
    }
}
