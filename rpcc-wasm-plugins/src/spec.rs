//! What a plugin is and exchanges: its kind, manifest and spec (limits, grants, config),
//! the check and lint results, and the `SiteHttp` role a check plugin's `http-get` uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rpcc_core::fragment::FragmentPolicy;
use rpcc_core::model::{PluginCapability, PluginLimits, PluginSettings};

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
pub struct PluginManifest {
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
