//! Errors of the test kit.

/// Why a fleet or proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KitError {
    /// A required program is not installed.
    #[error("{program} is not installed ({hint})")]
    Missing {
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// A helper command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What ran.
        what: String,
        /// Its output.
        detail: String,
    },
    /// A server process did not become ready.
    #[error("{what} did not start: {detail}")]
    Start {
        /// Which process.
        what: String,
        /// Its log or the reason.
        detail: String,
    },
    /// File or socket I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl KitError {
    /// Starting again may succeed (a port race).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Start { .. })
    }
}
