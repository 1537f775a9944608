//! The error type of rpcc-nginx.

use std::path::PathBuf;

/// Rendering failures. No partial output exists when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A template failed to compile or render (e.g. an override references an unknown
    /// variable). Names the template, the line and what went wrong.
    #[error("template {template}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Template {
        /// Template name (`site.conf.j2`, or an override file's name).
        template: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// An operator override file could not be read.
    #[error("cannot read template override {}: {source}", path.display())]
    Override {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Render options are invalid (names the option).
    #[error("render option {option}: {message}")]
    Options {
        /// The option.
        option: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A site extension (template plugin) refused to produce fragments, or produced
    /// fragments that failed the allow-list.
    #[error("server {server}, site {site}: {source}")]
    Extension {
        /// Server name.
        server: String,
        /// Site domain.
        site: String,
        /// The extension's error (it names the plugin and why).
        #[source]
        source: rpcc_core::fragment::ExtensionError,
    },
    /// The server is not in the inventory or serves nothing renderable.
    #[error("server {server}: {message}")]
    Server {
        /// Server name.
        server: String,
        /// Why.
        message: String,
    },
}

impl RenderError {
    /// Rendering is deterministic: retrying the same input never helps.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn from_template(err: &minijinja::Error) -> Self {
        let mut message = err.detail().map_or_else(|| err.kind().to_string(), |d| format!("{}: {d}", err.kind()));
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            message.push_str(&format!(" ({inner})"));
            source = inner.source();
        }
        Self::Template { template: err.name().unwrap_or("<unknown>").to_owned(), line: err.line(), message }
    }
}
