//! [`EngineError`]: why an engine could not be built or an operation could not start.

use rpcc_monitor::NotifyError;
#[cfg(feature = "plugins")]
use rpcc_wasm_plugins::PluginFinding;

/// Why an engine could not be built or an operation could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The state store failed to open.
    #[error("state {path}: {source}")]
    State {
        /// The database.
        path: String,
        /// Why.
        #[source]
        source: rpcc_core::deploy::StoreError,
    },
    /// A named server or group is not in the inventory.
    #[error("{what} {name:?} is not in the inventory")]
    Unknown {
        /// `server` or `group`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Rendering failed (all or nothing: no server is deployed).
    #[error("server {server}: {message}")]
    Render {
        /// The server.
        server: String,
        /// Why.
        message: String,
    },
    /// A server cannot be reached or has no usable credentials.
    #[error("{server}: {message}")]
    Server {
        /// The server.
        server: String,
        /// Why.
        message: String,
    },
    /// The deploy engine refused.
    #[error(transparent)]
    Deploy(#[from] rpcc_core::deploy::DeployError),
    /// A configured plugin failed to load.
    #[cfg(feature = "plugins")]
    #[error(transparent)]
    Plugin(#[from] rpcc_wasm_plugins::PluginError),
    /// Certificates could not be read or kept.
    #[error("certificates: {message}")]
    Certificates {
        /// Why.
        message: String,
    },
    /// Certificate keys are sealed with the keyring, which is missing or cannot open them.
    #[error("the certificates of {sites} need the keyring: {source}")]
    CertificateKeys {
        /// The sites concerned.
        sites: String,
        /// Why.
        #[source]
        source: rpcc_core::keyring::KeyringError,
    },
    /// `[deploy] signing_key` does not open with the keyring, or is not an Ed25519 seed.
    #[error("[deploy] signing_key: {message}")]
    SigningKey {
        /// Why.
        message: String,
    },
    /// The inventory's notifiers could not be set up (a secret that does not open).
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The inventory configures plugins and this build has no plugin host.
    #[error("the inventory configures {count} plugin(s), but rpcc is built without its `plugins` feature")]
    PluginsNotBuilt {
        /// How many `[[plugins]]`.
        count: usize,
    },
    /// Lint plugins reported errors: nothing is deployed.
    #[cfg(feature = "plugins")]
    #[error("lint plugins reported {} error(s); nothing was deployed:{}", .findings.iter().filter(|(_, f)| f.finding.severity == rpcc_wasm_plugins::Severity::Error).count(), .findings.iter().filter(|(_, f)| f.finding.severity == rpcc_wasm_plugins::Severity::Error).map(|(s, f)| format!("\n  {s}: [{}] {}:{}: {}", f.plugin, f.finding.file, f.finding.line, f.finding.message)).collect::<String>())]
    Lint {
        /// (server, finding) pairs, all severities.
        findings: Vec<(String, PluginFinding)>,
    },
}

impl EngineError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::State { source, .. } => source.is_retryable(),
            Self::Deploy(e) => e.is_retryable(),
            Self::Server { .. } => true,
            #[cfg(feature = "plugins")]
            Self::Plugin(e) => e.is_retryable(),
            Self::Notify(e) => e.is_retryable(),
            Self::Certificates { .. } => true,
            Self::CertificateKeys { source, .. } => source.is_retryable(),
            #[cfg(feature = "plugins")]
            Self::Lint { .. } => false,
            Self::Unknown { .. } | Self::Render { .. } | Self::PluginsNotBuilt { .. } | Self::SigningKey { .. } => {
                false
            }
        }
    }
}
