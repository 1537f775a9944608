//! `PluginHost` (engine, epoch ticker, compiled-component cache) and `Plugin` (one
//! loaded component, instantiated afresh for every call).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpcc_core::fragment::{
    Directive, ExtensionError, Fragment, FragmentPolicy, FragmentScope, SiteExtension, SiteFragments,
};
use rpcc_core::generation::Generation;
use rpcc_core::model::{Inventory, PluginCapability, PluginLimits, PluginSettings, Server, Site};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, Store, Trap};

use crate::PluginError;
use crate::bindings::shared::rpcc::plugin::{template_types as tt, types as wt};
use crate::bindings::{check, lint, shared, template};
use crate::state::{CapabilityDenied, HasTable, HostState};
use crate::view::{server_view, site_view};

/// Plugin instances alive at once (calls beyond it wait for nothing: they fail with a
/// host error, so keep it above the number of threads calling plugins).
const POOL_INSTANCES: u32 = 64;

/// The largest memory a plugin may be granted (`limits.memory` is at most 1g).
const MAX_MEMORY: usize = 1 << 30;

/// Bytes of each pooled memory reset with memset instead of being unmapped and faulted
/// in again by the next call (the stack, data and heap a small plugin touches; see the
/// SDK README for the link flags that keep a plugin inside them).
const KEEP_RESIDENT: usize = 128 * 1024;

/// What the host may copy out of a guest in one call beyond `limits.max_output`: the
/// host-side size of the values that hold the bytes (a `String` per list entry, a
/// record per directive), which wasmtime counts too.
const OUTPUT_OVERHEAD: u64 = 256 * 1024;

/// How often the epoch advances (the resolution of wall-clock limits).
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// WASI interfaces a plugin may import (all served empty: no environment, arguments,
/// stdin, and a capped stderr). Everything else under `wasi:` is refused at load.
const WASI_ALLOWED: &[&str] = &[
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

/// What kind of plugin a component is (which world it exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginKind {
    /// `template-plugin`.
    Template,
    /// `check-plugin`.
    Check,
    /// `lint-plugin`.
    Lint,
}

impl PluginKind {
    /// `template`, `check` or `lint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::Check => "check",
            Self::Lint => "lint",
        }
    }
}

/// A plugin's own description of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line.
    pub description: String,
    /// Capabilities it requested (all granted, or it would not have loaded).
    pub capabilities: Vec<PluginCapability>,
}

/// A line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The text (cut at 1 KiB, control characters replaced).
    pub message: String,
}

/// A response for a check plugin's `http-get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (the host passes at most 64 KiB to the plugin).
    pub body: Vec<u8>,
}

/// The HTTP side of a check: GET a path of *one* site on *one* server (the caller
/// builds it for the target; the plugin cannot choose another host). Called from the
/// plugin's thread and may block up to `timeout`.
pub trait SiteHttp: Send + Sync {
    /// GET `path` (already checked: absolute, printable).
    fn get(&self, path: &str, timeout: Duration) -> Result<HttpResponse, SiteHttpError>;
}

/// Why a [`SiteHttp`] GET got no response (the plugin is given its message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteHttpError {
    /// No answer within the time the plugin had left.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The request failed (connection, TLS, protocol), in words.
    #[error("{0}")]
    Failed(String),
}

/// Check result status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Passed.
    Ok,
    /// Needs attention.
    Warn,
    /// Failed.
    Fail,
}

/// What a check plugin reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckOutcome {
    /// Status.
    pub status: CheckStatus,
    /// Message (capped).
    pub message: String,
    /// What the plugin logged.
    pub logs: Vec<LogLine>,
}

/// Lint finding severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Should be fixed.
    Warning,
    /// Must be fixed (`rpcc apply` refuses to deploy).
    Error,
}

/// A lint finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// File inside the generation.
    pub file: String,
    /// 1-based line (0: whole file).
    pub line: u32,
    /// Severity.
    pub severity: Severity,
    /// Message.
    pub message: String,
}

/// What to load and what the operator allows it.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name used in errors (the inventory's name, else the file stem).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Pinned SHA-256 (hex).
    pub sha256: Option<String>,
    /// Granted capabilities.
    pub grant: Vec<PluginCapability>,
    /// Directives a template plugin may emit.
    pub allow: FragmentPolicy,
    /// Per-call limits.
    pub limits: PluginLimits,
    /// Settings passed with every site.
    pub config: Vec<(String, String)>,
}

impl PluginSpec {
    /// A file with default limits, no capabilities and the default directive set.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.file_stem().map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
        Self {
            name,
            path,
            sha256: None,
            grant: Vec::new(),
            allow: FragmentPolicy::default_set(),
            limits: PluginLimits::default(),
            config: Vec::new(),
        }
    }

    /// From an inventory's `[[plugins]]` entry; relative paths resolve against `base`.
    pub fn from_settings(settings: &PluginSettings, base: Option<&Path>) -> Self {
        let path = Path::new(&settings.path);
        let path = match base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.to_path_buf(),
        };
        Self {
            name: settings.name.to_string(),
            path,
            sha256: settings.sha256.clone(),
            grant: settings.grant.clone(),
            allow: settings.allow_directives.clone(),
            limits: settings.limits,
            config: settings.config.clone(),
        }
    }

    /// Grant a capability.
    pub fn grant(mut self, capability: PluginCapability) -> Self {
        if !self.grant.contains(&capability) {
            self.grant.push(capability);
        }
        self
    }

    /// Set the limits.
    pub fn limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Add a config entry.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Set the directive allow-list.
    pub fn allow(mut self, policy: FragmentPolicy) -> Self {
        self.allow = policy;
        self
    }
}

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

struct HostInner {
    engine: Engine,
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

fn host_err(e: impl std::fmt::Display) -> PluginError {
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
                manifest: Manifest {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    capabilities: Vec::new(),
                },
                pre,
                spec: spec.clone(),
                sha256: hex,
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
                if version != crate::WIT_VERSION {
                    refused.push((
                        1,
                        import.to_owned(),
                        format!(
                            "this host speaks rpcc:plugin@{}; rebuild the plugin with a matching rpcc-plugin-sdk",
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

enum KindPre {
    Template(template::TemplatePluginPre<HostState>),
    Check(check::CheckPluginPre<HostState>),
    Lint(lint::LintPluginPre<HostState>),
}

struct PluginInner {
    name: Arc<str>,
    manifest: Manifest,
    pre: KindPre,
    spec: PluginSpec,
    sha256: String,
    host: Arc<HostInner>,
}

/// A loaded plugin. Every call gets a fresh instance (no state survives between calls)
/// under the spec's limits. Cheap to clone; usable from several threads.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("kind", &self.kind())
            .field("manifest", &self.inner.manifest)
            .finish_non_exhaustive()
    }
}

/// Sum of string bytes in a value returned by a plugin.
fn strings_len<'a>(items: impl IntoIterator<Item = &'a str>) -> u64 {
    items.into_iter().map(|s| s.len() as u64).sum()
}

impl Plugin {
    /// Name (the inventory's).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Which world it implements.
    pub fn kind(&self) -> PluginKind {
        match self.inner.pre {
            KindPre::Template(_) => PluginKind::Template,
            KindPre::Check(_) => PluginKind::Check,
            KindPre::Lint(_) => PluginKind::Lint,
        }
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// SHA-256 of the component file (hex).
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The spec it was loaded with.
    pub fn spec(&self) -> &PluginSpec {
        &self.inner.spec
    }

    fn wrong_kind(&self, wanted: &'static str) -> PluginError {
        PluginError::WrongKind { plugin: self.inner.name.to_string(), actual: self.kind().as_str(), wanted }
    }

    /// A fresh store with every limit set.
    fn store(&self) -> Result<Store<HostState>, PluginError> {
        let limits = &self.inner.spec.limits;
        let timeout = limits.timeout.as_duration();
        let memory = usize::try_from(limits.memory.bytes()).unwrap_or(usize::MAX);
        let state = HostState::new(Arc::clone(&self.inner.name), self.inner.spec.grant.clone(), memory, timeout);
        let mut store = Store::new(&self.inner.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(host_err)?;
        // Results are lifted out of the guest by generated bindings that copy every
        // string; neither fuel nor the epoch covers that copy. Wasmtime charges each
        // lifted string and list against the store's hostcall fuel *before* it
        // allocates, so a million entries aliasing one buffer stop at the cap instead of
        // costing the host a terabyte (the exact cap is checked again after lifting).
        let copy_budget = limits.max_output.bytes().saturating_add(OUTPUT_OVERHEAD);
        store.set_hostcall_fuel(usize::try_from(copy_budget).unwrap_or(usize::MAX));
        let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Turn a failed call into the error that says why.
    fn explain(&self, call: &'static str, store: &Store<HostState>, err: &wasmtime::Error) -> PluginError {
        let plugin = self.inner.name.to_string();
        let limits = &self.inner.spec.limits;
        if let Some(denied) = err.downcast_ref::<CapabilityDenied>() {
            return PluginError::Ungranted { plugin, capability: denied.0.as_str().to_owned() };
        }
        if is_copy_budget_exhausted(err) {
            let limit = limits.max_output.bytes();
            return PluginError::OutputTooLarge {
                plugin,
                call,
                size: limit.saturating_add(OUTPUT_OVERHEAD) + 1,
                limit,
            };
        }
        if let Some(wanted) = store.data().limiter.refused {
            return PluginError::MemoryLimit { plugin, call, wanted: wanted as u64, limit: limits.memory.bytes() };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => return PluginError::OutOfFuel { plugin, call, fuel: limits.fuel },
            Some(Trap::Interrupt) => {
                let limit_ms = u64::try_from(limits.timeout.as_duration().as_millis()).unwrap_or(u64::MAX);
                return PluginError::Timeout { plugin, call, limit_ms };
            }
            Some(Trap::StackOverflow) => return PluginError::StackOverflow { plugin, call },
            _ => {}
        }
        let stderr = store.data().stderr.contents();
        let printed = String::from_utf8_lossy(&stderr);
        let mut printed: String = printed.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if printed.is_empty() {
            // A `no_std` plugin (SDK runtime) logs its panic message instead of printing it.
            if let Some(last) = store.data().logs.iter().rev().find(|l| l.level == "error") {
                printed.clone_from(&last.message);
            }
        }
        let trap = err.downcast_ref::<Trap>().map_or_else(|| format!("{err}"), ToString::to_string);
        let message = if printed.is_empty() { trap } else { format!("{trap}; it printed: {printed}") };
        PluginError::Trap { plugin, call, message }
    }

    fn cap_output(&self, call: &'static str, size: u64) -> Result<(), PluginError> {
        let limit = self.inner.spec.limits.max_output.bytes();
        if size > limit {
            return Err(PluginError::OutputTooLarge { plugin: self.inner.name.to_string(), call, size, limit });
        }
        Ok(())
    }

    fn describe(&self) -> Result<Manifest, PluginError> {
        let mut store = self.store()?;
        let result = match &self.inner.pre {
            KindPre::Template(p) => {
                p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_template().call_describe(&mut store))
            }
            KindPre::Check(p) => {
                p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_check().call_describe(&mut store))
            }
            KindPre::Lint(p) => p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_lint().call_describe(&mut store)),
        };
        let m = result.map_err(|e| self.explain("describe", &store, &e))?;
        self.cap_output("describe", strings_len([m.name.as_str(), &m.version, &m.description]))?;
        let bad = |field: &str, v: &str| PluginError::Failed {
            plugin: self.inner.name.to_string(),
            message: format!("manifest {field} {v:?} is empty, longer than 200 bytes or has control characters"),
        };
        for (field, v) in [("name", &m.name), ("version", &m.version)] {
            if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
                return Err(bad(field, v));
            }
        }
        if m.description.len() > 2000 || m.description.chars().any(char::is_control) {
            return Err(bad("description", &m.description));
        }
        let mut capabilities: Vec<PluginCapability> = m
            .capabilities
            .iter()
            .map(|c| match c {
                wt::Capability::HttpGet => PluginCapability::HttpGet,
                wt::Capability::Clock => PluginCapability::Clock,
            })
            .collect();
        capabilities.sort();
        capabilities.dedup();
        Ok(Manifest { name: m.name, version: m.version, description: m.description, capabilities })
    }

    /// Run a template plugin for `site` on `server`; its output checked against the
    /// allow-list and value rules.
    pub fn render(&self, inventory: &Inventory, server: &Server, site: &Site) -> Result<SiteFragments, PluginError> {
        let KindPre::Template(pre) = &self.inner.pre else { return Err(self.wrong_kind("template")) };
        let site_v = site_view(site, &self.inner.spec.config);
        let server_v = server_view(inventory, server);
        let mut store = self.store()?;
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_template().call_render(&mut store, &site_v, &server_v))
            .map_err(|e| self.explain("render", &store, &e))?;
        let out = out.map_err(|message| PluginError::Failed {
            plugin: self.inner.name.to_string(),
            message: clean(&message, 2000),
        })?;
        self.cap_output("render", output_len(&out))?;
        self.fragments(out, &FragmentScope::for_server(server))
    }

    fn fragments(&self, out: tt::TemplateOutput, scope: &FragmentScope) -> Result<SiteFragments, PluginError> {
        let policy = &self.inner.spec.allow;
        let rejected = |message: String| PluginError::Rejected { plugin: self.inner.name.to_string(), message };
        let parse = |body: tt::FragmentBody| -> Result<Fragment, PluginError> {
            match body {
                tt::FragmentBody::Text(text) => Fragment::parse(&text, policy, scope),
                tt::FragmentBody::Directives(list) => {
                    Fragment::from_directives(tree(list).map_err(&rejected)?, policy, scope)
                }
            }
            .map_err(|e| rejected(e.to_string()))
        };
        let mut out_fragments = SiteFragments::default();
        match out {
            tt::TemplateOutput::Fragments(list) => {
                for f in list {
                    let fragment = parse(f.body)?;
                    match f.at {
                        tt::InsertionPoint::Server => out_fragments.server.extend(fragment),
                        tt::InsertionPoint::MainLocation => {
                            if fragment.directives().iter().any(|d| d.block.is_some() && d.name == "location") {
                                return Err(rejected("a main-location fragment cannot open a location".into()));
                            }
                            out_fragments.main_location.extend(fragment);
                        }
                    }
                }
            }
            tt::TemplateOutput::ServerBlock(body) => out_fragments.server_body = Some(parse(body)?),
        }
        Ok(out_fragments)
    }

    /// Run a check plugin for `site` on `server`; `http` serves its `http-get`.
    pub fn check(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
        http: Arc<dyn SiteHttp>,
    ) -> Result<CheckOutcome, PluginError> {
        let KindPre::Check(pre) = &self.inner.pre else { return Err(self.wrong_kind("check")) };
        let site_v = site_view(site, &self.inner.spec.config);
        let server_v = server_view(inventory, server);
        let mut store = self.store()?;
        store.data_mut().http = Some(http);
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_check().call_check(&mut store, &site_v, &server_v))
            .map_err(|e| self.explain("check", &store, &e))?;
        self.cap_output("check", out.message.len() as u64)?;
        let status = match out.status {
            wt::CheckStatus::Ok => CheckStatus::Ok,
            wt::CheckStatus::Warn => CheckStatus::Warn,
            wt::CheckStatus::Fail => CheckStatus::Fail,
        };
        let logs = std::mem::take(&mut store.data_mut().logs);
        Ok(CheckOutcome { status, message: clean(&out.message, 2000), logs })
    }

    /// Run a lint plugin over a rendered generation of `server`.
    pub fn lint_generation(
        &self,
        inventory: &Inventory,
        server: &Server,
        generation: &Generation,
    ) -> Result<Vec<Finding>, PluginError> {
        self.lint(inventory, server, &generation_files(generation))
    }

    /// Run a lint plugin over one server's rendered files (path, contents).
    pub fn lint(
        &self,
        inventory: &Inventory,
        server: &Server,
        files: &[(String, String)],
    ) -> Result<Vec<Finding>, PluginError> {
        let KindPre::Lint(pre) = &self.inner.pre else { return Err(self.wrong_kind("lint")) };
        let server_v = server_view(inventory, server);
        let files: Vec<wt::RenderedFile> = files
            .iter()
            .map(|(path, contents)| wt::RenderedFile { path: path.clone(), contents: contents.clone() })
            .collect();
        let mut store = self.store()?;
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_lint().call_lint(&mut store, &server_v, &files))
            .map_err(|e| self.explain("lint", &store, &e))?;
        self.cap_output("lint", out.iter().map(|f| (f.file.len() + f.message.len() + 16) as u64).sum())?;
        Ok(out
            .into_iter()
            .map(|f| Finding {
                file: clean(&f.file, 512),
                line: f.line,
                severity: match f.severity {
                    wt::Severity::Info => Severity::Info,
                    wt::Severity::Warning => Severity::Warning,
                    wt::Severity::Error => Severity::Error,
                },
                message: clean(&f.message, 2000),
            })
            .collect())
    }
}

/// A generation's files as (path, text) for lint plugins.
/// The files a lint plugin sees: every rendered file except secrets (owner-only files
/// and certificates' private keys), which never enter a guest.
pub(crate) fn generation_files(generation: &Generation) -> Vec<(String, String)> {
    generation
        .files()
        .iter()
        .filter(|(path, file)| file.mode & 0o077 != 0 && !rpcc_core::certs::is_key_path(path.as_str()))
        .map(|(path, file)| (path.as_str().to_owned(), String::from_utf8_lossy(&file.bytes).into_owned()))
        .collect()
}

/// One template plugin on its own as the renderer's extension (what `rpcc plugin check`
/// and Python's `Plugin.render_site` use); a [`crate::PluginSet`] applies an inventory's.
impl SiteExtension for Plugin {
    fn site_fragments(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
    ) -> Result<SiteFragments, ExtensionError> {
        self.render(inventory, server, site).map_err(|e| Arc::new(e) as ExtensionError)
    }
}

/// True when wasmtime refused to copy more of a guest's data into the host (the
/// hostcall fuel set in `Plugin::store` ran out). Its error type is private, so it is
/// recognised by its message; a test pins that message (`tests/output_bombs.rs`).
fn is_copy_budget_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|e| e.to_string().contains("fuel allocated for hostcalls has been exhausted"))
}

/// Printable text, cut at `max` bytes.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn output_len(out: &tt::TemplateOutput) -> u64 {
    let body_len = |b: &tt::FragmentBody| match b {
        tt::FragmentBody::Text(t) => t.len() as u64,
        tt::FragmentBody::Directives(ds) => {
            ds.iter().map(|d| 8 + d.name.len() as u64 + strings_len(d.args.iter().map(String::as_str))).sum()
        }
    };
    match out {
        tt::TemplateOutput::Fragments(fs) => fs.iter().map(|f| body_len(&f.body)).sum(),
        tt::TemplateOutput::ServerBlock(b) => body_len(b),
    }
}

/// Build a directive tree from the flat `parent`-indexed list of the WIT.
fn tree(list: Vec<tt::Directive>) -> Result<Vec<Directive>, String> {
    let n = list.len();
    if n > rpcc_core::fragment::MAX_DIRECTIVES {
        return Err(format!("{n} directives (at most {})", rpcc_core::fragment::MAX_DIRECTIVES));
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, d) in list.iter().enumerate() {
        match d.parent {
            None => roots.push(i),
            Some(p) => {
                let p = p as usize;
                if p >= i {
                    return Err(format!(
                        "directive {i} ({:?}) names parent {p}, which is not an earlier directive",
                        d.name
                    ));
                }
                if !list[p].block {
                    return Err(format!(
                        "directive {i} ({:?}) is inside {:?}, which is not a block",
                        d.name, list[p].name
                    ));
                }
                children[p].push(i);
            }
        }
    }
    fn build(i: usize, list: &[tt::Directive], children: &[Vec<usize>]) -> Directive {
        let d = &list[i];
        Directive {
            name: d.name.clone(),
            args: d.args.clone(),
            block: d.block.then(|| children[i].iter().map(|&c| build(c, list, children)).collect()),
        }
    }
    Ok(roots.into_iter().map(|i| build(i, &list, &children)).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rpcc_core::generation::{Generation, GenerationFile, GenerationPath};

    #[test]
    fn lint_plugins_never_see_keys_or_owner_only_files() -> Result<(), Box<dyn std::error::Error>> {
        let file = |text: &str, mode: u32| GenerationFile { bytes: Arc::from(text.as_bytes()), mode };
        let mut files = BTreeMap::new();
        files.insert(GenerationPath::parse("sites/a.example.com.conf")?, file("server {}", 0o644));
        files.insert(GenerationPath::parse("certs/a.example.com/fullchain.pem")?, file("CERT", 0o644));
        files.insert(GenerationPath::parse("certs/a.example.com/privkey.pem")?, file("KEY", 0o600));
        // A key shipped with a wrong mode is still withheld; any owner-only file is too.
        files.insert(GenerationPath::parse("certs/b.example.com/privkey.pem")?, file("KEY", 0o644));
        files.insert(GenerationPath::parse("secret.txt")?, file("S", 0o600));
        let seen: Vec<String> =
            super::generation_files(&Generation::new("g".into(), files)).into_iter().map(|(p, _)| p).collect();
        assert_eq!(seen, ["certs/a.example.com/fullchain.pem", "sites/a.example.com.conf"]);
        Ok(())
    }
}
