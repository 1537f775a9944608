//! WASM plugins configured in an inventory (`[[plugins]]`) and where they apply
//! (`plugins = [...]` on groups and sites).

use crate::fragment::FragmentPolicy;
use crate::value::{DurationValue, Identifier, Size};

/// A capability the operator grants a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginCapability {
    /// `host-http.get`: GET the checked site on the checked server.
    HttpGet,
    /// `host-clock.now-unix-ms`.
    Clock,
}

impl PluginCapability {
    /// Name as written in inventories and manifests (`http-get`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpGet => "http-get",
            Self::Clock => "clock",
        }
    }
}

/// Limits applied to every call into a plugin (a fresh instance per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PluginLimits {
    /// Instructions (wasmtime fuel) per call; default 200,000,000.
    pub fuel: u64,
    /// Linear memory per instance; default 64m.
    pub memory: Size,
    /// Wall-clock time per call, host calls included; default 1s.
    pub timeout: DurationValue,
    /// Bytes a call may return (fragments, findings, messages); default 1m.
    pub max_output: Size,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            fuel: 200_000_000,
            memory: Size::parse("64m").unwrap_or_else(|_| unreachable_size()),
            timeout: DurationValue::secs(1),
            max_output: Size::parse("1m").unwrap_or_else(|_| unreachable_size()),
        }
    }
}

#[cold]
fn unreachable_size() -> Size {
    // The literals above always parse; keep a total fallback without panicking.
    Size::parse("1").unwrap_or_else(|_| unreachable_size())
}

/// `[[plugins]]`: one plugin file and what the operator allows it.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct PluginSettings {
    /// Name used by `plugins = [...]` on groups and sites.
    pub name: Identifier,
    /// The component file (`.wasm`), relative to the inventory's directory.
    pub path: String,
    /// Expected SHA-256 (hex) of the file; a different file is refused at load.
    pub sha256: Option<String>,
    /// Capabilities granted; a plugin asking for more fails to load.
    pub grant: Vec<PluginCapability>,
    /// Directives a template plugin may emit (`allow_directives`), with the hosts its
    /// `proxy_pass` may name beyond the rule (`allow_proxy_hosts`).
    #[serde(skip)]
    pub allow_directives: FragmentPolicy,
    /// Per-call limits.
    pub limits: PluginLimits,
    /// Settings passed to the plugin with every site (`config = { key = "value" }`).
    pub config: Vec<(String, String)>,
}
