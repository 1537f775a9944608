//! The error type of rpcc-wasm-plugins.

use std::path::PathBuf;

/// A plugin failed to load or a call into it failed. Every variant names the plugin;
/// the host stays usable after any of them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be read.
    #[error("plugin {plugin}: cannot read {}: {message}", path.display())]
    Read {
        /// Plugin name (from the inventory, or the file name).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file's SHA-256 is not the pinned one.
    #[error("plugin {plugin}: {} has sha256 {actual}, the inventory pins {expected}", path.display())]
    Digest {
        /// Plugin name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Not a valid WebAssembly component.
    #[error("plugin {plugin}: not a valid WebAssembly component: {message}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component imports something the host never provides (filesystem, sockets,
    /// clocks, another WIT version …).
    #[error("plugin {plugin}: imports {import}, which rpcc does not provide to plugins ({reason})")]
    ForbiddenImport {
        /// Plugin name.
        plugin: String,
        /// The import's name.
        import: String,
        /// What is allowed instead.
        reason: String,
    },
    /// The component exports none of the three worlds.
    #[error(
        "plugin {plugin}: exports {exports}, not one of rpcc:plugin/template, check or lint (this host loads rpcc:plugin {}; is it built with the rpcc-plugin-sdk?)",
        crate::WIT_VERSIONS
    )]
    WrongWorld {
        /// Plugin name.
        plugin: String,
        /// What it exports.
        exports: String,
    },
    /// The manifest requests a capability the operator did not grant.
    #[error(
        "plugin {plugin}: requests capability {capability:?}, which is not granted (add it to grant = [...] in its [[plugins]] entry if you trust it)"
    )]
    Ungranted {
        /// Plugin name.
        plugin: String,
        /// The capability.
        capability: String,
    },
    /// The plugin used up its instruction budget.
    #[error("plugin {plugin}: {call} used all its fuel ({fuel} instructions)")]
    OutOfFuel {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
        /// The budget.
        fuel: u64,
    },
    /// The plugin ran past its wall-clock limit.
    #[error("plugin {plugin}: {call} ran past its time limit of {limit_ms} ms")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
        /// The limit.
        limit_ms: u64,
    },
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin {plugin}: {call} tried to use {wanted} bytes of memory (limit {limit})")]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
        /// Bytes it asked for.
        wanted: u64,
        /// The limit.
        limit: u64,
    },
    /// The plugin overflowed its stack (deep recursion).
    #[error("plugin {plugin}: {call} overflowed its stack (recursion too deep)")]
    StackOverflow {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
    },
    /// The plugin trapped (a panic, `unreachable`, a bad memory access …).
    #[error("plugin {plugin}: {call} crashed: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
        /// The trap, and what the plugin printed to stderr (capped).
        message: String,
    },
    /// The call returned more than the output cap (refused before the host copied it
    /// all: `size` is what was counted when it stopped).
    #[error("plugin {plugin}: {call} returned at least {size} bytes (limit {limit})")]
    OutputTooLarge {
        /// Plugin name.
        plugin: String,
        /// Which call.
        call: &'static str,
        /// Bytes counted (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A template plugin's output failed the allow-list or value rules.
    #[error("plugin {plugin}: output refused: {message}")]
    Rejected {
        /// Plugin name.
        plugin: String,
        /// Why (names the directive/argument).
        message: String,
    },
    /// The plugin returned an error of its own.
    #[error("plugin {plugin}: {message}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// A plugin of one kind was used as another (a lint plugin on a site template).
    #[error("plugin {plugin} is a {actual} plugin; {wanted} was needed")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// What it is.
        actual: &'static str,
        /// What the caller needed.
        wanted: &'static str,
    },
    /// The host itself could not be set up.
    #[error("plugin host: {0}")]
    Host(String),
}

impl PluginError {
    /// Plugins are deterministic sandboxes: only reading the file may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Read { .. })
    }
}
