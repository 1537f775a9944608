//! Per-call store data: the (empty) WASI context, the memory limiter, the granted
//! capabilities, the HTTP target of a check, and captured logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::model::PluginCapability;
use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::v0_1::shared::rpcc::plugin::{host_clock, host_http, host_log, template_types, types};
use crate::spec::{HttpResponse, LogLine, SiteHttp};

/// Bytes of logs kept per call; later lines are dropped (and counted).
pub(crate) const LOG_BUDGET: usize = 64 * 1024;
/// Bytes of one log line kept.
const LOG_LINE_MAX: usize = 1024;
/// Bytes of stderr kept per call (a panic message).
pub(crate) const STDERR_MAX: usize = 4096;
/// Bytes of an HTTP body handed to a check plugin.
pub(crate) const HTTP_BODY_MAX: usize = 64 * 1024;

/// A host function refused because a capability is missing (turned into
/// [`crate::PluginError::Ungranted`]).
#[derive(Debug)]
pub(crate) struct CapabilityDenied(pub(crate) PluginCapability);

impl std::fmt::Display for CapabilityDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capability {} is not granted", self.0.as_str())
    }
}

impl std::error::Error for CapabilityDenied {}

/// Refuses memory growth past the limit and remembers the attempt.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }

    fn tables(&self) -> usize {
        16
    }
}

/// Store data of one call.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) plugin: Arc<str>,
    pub(crate) granted: Vec<PluginCapability>,
    pub(crate) http: Option<Arc<dyn SiteHttp>>,
    pub(crate) deadline: Instant,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) log_bytes: usize,
    pub(crate) logs_dropped: usize,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, granted: Vec<PluginCapability>, memory: usize, timeout: Duration) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_MAX);
        // Nothing inherited: no environment, arguments, preopened directories, stdin
        // or sockets. stdout is discarded; stderr is kept (capped) for crash reports.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory, refused: None },
            stderr,
            plugin,
            granted,
            http: None,
            deadline: Instant::now() + timeout,
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
        }
    }

    fn require(&self, cap: PluginCapability) -> wasmtime::Result<()> {
        if self.granted.contains(&cap) { Ok(()) } else { Err(wasmtime::Error::new(CapabilityDenied(cap))) }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// `HasData` projection to the resource table (WASI io bindings).
pub(crate) struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

impl types::Host for HostState {}
impl template_types::Host for HostState {}

impl host_log::Host for HostState {
    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        if self.log_bytes >= LOG_BUDGET {
            self.logs_dropped += 1;
            return Ok(());
        }
        let mut message = message;
        if message.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        self.log_bytes += message.len();
        let plugin = &*self.plugin;
        match level {
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        let level = match level {
            types::LogLevel::Debug => "debug",
            types::LogLevel::Info => "info",
            types::LogLevel::Warn => "warn",
            types::LogLevel::Error => "error",
        };
        self.logs.push(LogLine { level, message });
        Ok(())
    }
}

impl host_clock::Host for HostState {
    fn now_unix_ms(&mut self) -> wasmtime::Result<u64> {
        self.require(PluginCapability::Clock)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A request path a check may ask for: absolute, printable, no spaces, bounded.
fn valid_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'"));
    }
    if path.len() > 2048 {
        return Err("path is longer than 2048 bytes".into());
    }
    if path.starts_with("//") || path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '#') {
        return Err(format!("path {path:?} is not a plain absolute path"));
    }
    Ok(())
}

impl host_http::Host for HostState {
    fn get(&mut self, path: String) -> wasmtime::Result<Result<host_http::Response, String>> {
        self.require(PluginCapability::HttpGet)?;
        let Some(http) = self.http.clone() else {
            return Ok(Err("http-get is only available to check plugins during a check".into()));
        };
        if let Err(e) = valid_path(&path) {
            return Ok(Err(e));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err("no time left for a request".into()));
        }
        Ok(http.get(&path, left).map_err(|e| e.to_string()).map(|r: HttpResponse| {
            let mut body = r.body;
            body.truncate(HTTP_BODY_MAX);
            host_http::Response { status: r.status, headers: r.headers, body }
        }))
    }
}
