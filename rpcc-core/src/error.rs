//! The error type of rpcc-core.

use std::path::PathBuf;

use crate::validate::{Location, ValidationErrors};

/// Errors from rpcc-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An inventory file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The inventory is not valid TOML.
    #[error("TOML syntax error{}: {message}", location.map(|l| format!(" at line {}, column {}", l.line, l.column)).unwrap_or_default())]
    Syntax {
        /// The parser's message.
        message: String,
        /// Where.
        location: Option<Location>,
    },
    /// The inventory parsed but failed validation; every problem is listed.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// A transport failed (connection, command, upload).
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

impl Error {
    /// Whether retrying the same operation may succeed. Input errors never do.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_retryable(),
            Self::Read { .. } | Self::Syntax { .. } | Self::Invalid(_) => false,
        }
    }
}
