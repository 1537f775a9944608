//! `PluginHost`: the wasmtime engine, the linker with the host functions, the epoch
//! ticker and the compiled-component cache; it loads [`Plugin`]s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use crate::bindings::v0_1::{check, lint, shared, template};
use crate::plugin::{KindPre, Plugin, PluginInner};
use crate::spec::*;
use crate::state::{HasTable, HostState};
use crate::{PluginError, WitVersion};

/// Plugin instances alive at once (calls beyond it wait for nothing: they fail with a
/// host error, so keep it above the number of threads calling plugins).
pub(crate) const POOL_INSTANCES: u32 = 64;

/// The largest memory a plugin may be granted (`limits.memory` is at most 1g).
pub(crate) const MAX_MEMORY: usize = 1 << 30;

/// Bytes of each pooled memory reset with memset instead of being unmapped and faulted
/// in again by the next call (the stack, data and heap a small plugin touches; see the
/// SDK README for the link flags that keep a plugin inside them).
pub(crate) const KEEP_RESIDENT: usize = 128 * 1024;

/// What the host may copy out of a guest in one call beyond `limits.max_output`: the
/// host-side size of the values that hold the bytes (a `String` per list entry, a
/// record per directive), which wasmtime counts too.
pub(crate) const OUTPUT_OVERHEAD: u64 = 256 * 1024;

/// How often the epoch advances (the resolution of wall-clock limits).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// WASI interfaces a plugin may import (all served empty: no environment, arguments,
/// stdin, and a capped stderr). Everything else under `wasi:` is refused at load.
pub(crate) const WASI_ALLOWED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Advances the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    components: Mutex<HashMap<[u8; 32], Component>>,
    _ticker: Ticker,
}

/// Loads and runs plugins. Owns the wasmtime engine, the linker with the host
/// functions, a cache of compiled components (by SHA-256) and the epoch thread that
/// enforces wall-clock limits. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").finish_non_exhaustive()
    }
}

pub(crate) fn host_err(e: impl std::fmt::Display) -> PluginError {
    PluginError::Host(e.to_string())
}

impl PluginHost {
    /// A host with fuel metering and epoch interruption on.
    pub fn new() -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true).consume_fuel(true).epoch_interruption(true).max_wasm_stack(512 * 1024);
        // Instances come from pre-reserved slots that are reset and reused: a call does
        // not mmap/munmap its memories (which serialises threads on the kernel's mm lock).
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .max_memories_per_component(4)
            .max_memory_size(MAX_MEMORY)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        // 1 GiB of address space per memory slot (not 4 GiB + guards): a host reserves
        // about 130 GiB of virtual (never committed) memory, not 800 GiB.
        config.memory_reservation(MAX_MEMORY as u64).memory_guard_size(64 << 10);
        let engine = Engine::new(&config).map_err(host_err)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        shared::Sdk::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(host_err)?;
        add_wasi_subset(&mut linker).map_err(host_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("rpcc-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(host_err)?
        };
        Ok(Self {
            inner: Arc::new(HostInner {
                engine,
                linker,
                components: Mutex::new(HashMap::new()),
                _ticker: Ticker { stop, thread: Some(thread) },
            }),
        })
    }

    /// Read, check and compile a plugin, then ask it for its manifest (one call under
    /// the spec's limits). Fails with a [`PluginError`] naming the plugin and the reason.
    pub fn load(&self, spec: &PluginSpec) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(&spec.path).map_err(|e| PluginError::Read {
            plugin: spec.name.clone(),
            path: spec.path.clone(),
            message: e.to_string(),
        })?;
        self.load_bytes(spec, &bytes)
    }

    /// [`Self::load`] from bytes already in memory (`spec.path` is only reported).
    pub fn load_bytes(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(expected) = &spec.sha256
            && !expected.eq_ignore_ascii_case(&hex)
        {
            return Err(PluginError::Digest {
                plugin: spec.name.clone(),
                path: spec.path.clone(),
                expected: expected.clone(),
                actual: hex,
            });
        }
        let component = self.compile(&spec.name, digest, bytes)?;
        self.check_imports(&spec.name, &component)?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| PluginError::ForbiddenImport {
            plugin: spec.name.clone(),
            import: "an interface".into(),
            reason: e.to_string(),
        })?;
        let pre = if let Ok(p) = template::TemplatePluginPre::new(pre.clone()) {
            KindPre::Template(p)
        } else if let Ok(p) = check::CheckPluginPre::new(pre.clone()) {
            KindPre::Check(p)
        } else if let Ok(p) = lint::LintPluginPre::new(pre) {
            KindPre::Lint(p)
        } else {
            let ty = component.component_type();
            let exports: Vec<&str> = ty.exports(&self.inner.engine).map(|(n, _)| n).collect();
            return Err(PluginError::WrongWorld {
                plugin: spec.name.clone(),
                exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
            });
        };
        let mut plugin = Plugin {
            inner: Arc::new(PluginInner {
                name: Arc::from(spec.name.as_str()),
                manifest: PluginManifest {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    capabilities: Vec::new(),
                },
                pre,
                spec: spec.clone(),
                sha256: hex,
                wit_version: exported_wit_version(&self.inner.engine, &component),
                host: Arc::clone(&self.inner),
            }),
        };
        let manifest = plugin.describe()?;
        for cap in &manifest.capabilities {
            if !spec.grant.contains(cap) {
                return Err(PluginError::Ungranted { plugin: spec.name.clone(), capability: cap.as_str().to_owned() });
            }
        }
        if let Some(inner) = Arc::get_mut(&mut plugin.inner) {
            inner.manifest = manifest;
        }
        tracing::debug!(plugin = %spec.name, kind = plugin.kind().as_str(), "plugin loaded");
        Ok(plugin)
    }

    fn compile(&self, name: &str, digest: [u8; 32], bytes: &[u8]) -> Result<Component, PluginError> {
        if let Some(c) = self.inner.components.lock().ok().and_then(|m| m.get(&digest).cloned()) {
            return Ok(c);
        }
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PluginError::Compile { plugin: name.to_owned(), message: format!("{e:#}") })?;
        if let Ok(mut m) = self.inner.components.lock() {
            m.insert(digest, component.clone());
        }
        Ok(component)
    }

    /// The imports a component may have: `rpcc:plugin` interfaces of a supported
    /// version and the harmless WASI interfaces; anything else is refused, naming it.
    fn check_imports(&self, name: &str, component: &Component) -> Result<(), PluginError> {
        let ty = component.component_type();
        // (rank, import, reason): the most telling refusal is reported first.
        let mut refused: Vec<(u8, String, String)> = Vec::new();
        for (import, item) in ty.imports(&self.inner.engine) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                refused.push((0, import.to_owned(), "plugins import only interfaces".into()));
                continue;
            }
            let (base, version) = import.split_once('@').unwrap_or((import, ""));
            if base.starts_with("rpcc:plugin/") {
                if !WitVersion::parse(version).is_some_and(WitVersion::is_supported) {
                    refused.push((
                        1,
                        import.to_owned(),
                        format!(
                            "this host loads plugins built against rpcc:plugin {} (it implements {}); rebuild the plugin with a matching rpcc-plugin-sdk",
                            crate::WIT_VERSIONS,
                            crate::WIT_VERSION
                        ),
                    ));
                }
                continue;
            }
            if WASI_ALLOWED.contains(&base) && version.starts_with("0.2.") {
                continue;
            }
            let (rank, reason) = if base.starts_with("wasi:filesystem") {
                (0, "plugins have no filesystem; settings come in the site view's config")
            } else if base.starts_with("wasi:sockets") || base.starts_with("wasi:http") {
                (0, "plugins have no network; a check plugin uses the http-get capability")
            } else if base.starts_with("wasi:clocks") {
                (2, "use the clock capability (rpcc:plugin/host-clock) in a check plugin")
            } else {
                (3, "allowed: rpcc:plugin interfaces and wasi:cli, wasi:io, wasi:random")
            };
            refused.push((rank, import.to_owned(), reason.to_owned()));
        }
        refused.sort();
        match refused.first() {
            None => Ok(()),
            Some((_, _, reason)) => Err(PluginError::ForbiddenImport {
                plugin: name.to_owned(),
                import: refused.iter().map(|(_, i, _)| i.as_str()).collect::<Vec<_>>().join(", "),
                reason: reason.clone(),
            }),
        }
    }
}

/// Add the WASI interfaces of [`WASI_ALLOWED`] (sync) to the linker.
fn add_wasi_subset(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::p2::bindings::{cli, random};
    use wasmtime_wasi::random::WasiRandom;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<HostState, HasTable>(l, |t| &mut t.table)?;
    wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<HostState, HasTable>(l, |t| &mut t.table)?;
    wasmtime_wasi::p2::bindings::sync::io::streams::add_to_linker::<HostState, HasTable>(l, |t| &mut t.table)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    Ok(())
}

/// The version of the `rpcc:plugin/<world>@<version>` interface a component exports
/// (the host's own when it names none).
fn exported_wit_version(engine: &wasmtime::Engine, component: &Component) -> WitVersion {
    component
        .component_type()
        .exports(engine)
        .filter_map(|(name, _)| name.strip_prefix("rpcc:plugin/")?.split_once('@'))
        .find_map(|(_, version)| WitVersion::parse(version))
        .unwrap_or(WitVersion::HOST)
}
