//! The `HealthProbe` role: after a reload, is every site served by the new config?

use std::time::Duration;

use crate::model::{Server, Site};

/// Checks one site on one server after a reload (rpcc-monitor's `HttpHealthProbe` sends
/// an HTTP(S) request for the site to the server itself).
#[async_trait::async_trait]
pub trait HealthProbe: Send + Sync {
    /// `Ok(())` when the site answers as expected.
    async fn probe(&self, server: &Server, site: &Site) -> Result<(), ProbeError>;
}

/// Why a site failed its probe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No answer: the connection, the TLS handshake, sending or reading failed.
    #[error("{context}: {source}")]
    Unreachable {
        /// What was being done (`cannot connect to 10.0.0.1:443`).
        context: String,
        /// The I/O error (a TLS failure arrives as one too).
        #[source]
        source: std::io::Error,
    },
    /// No complete answer within the probe's timeout.
    #[error("no response from {addr} within {timeout:?}")]
    Timeout {
        /// `host:port` probed.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// An answer, but not the expected one: status, body, certificate names, or no
    /// HTTP at all.
    #[error("{0}")]
    Unexpected(String),
    /// The probe itself could not be set up (e.g. its TLS client).
    #[error("probe set-up: {0}")]
    Setup(String),
}

impl ProbeError {
    /// Whether probing again later may succeed (nginx still starting, a slow backend).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. } | Self::Unexpected(_))
    }
}
