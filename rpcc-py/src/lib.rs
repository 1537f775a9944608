//! # rpcc-py
//!
//! pyo3 bindings, built with maturin into the Python package `rpcc` (this is its native
//! module `rpcc._rpcc`; the typed API is the pure-Python package in `python/rpcc`).
//!
//! - Every call that does I/O or heavy CPU work releases the GIL ([`Python::detach`]).
//! - Async work runs on one lazily created tokio runtime per process, recreated in a
//!   child after `os.fork()` (the one documented global of rpcc: see [`runtime`]).
//! - Errors are real exception classes under `RpccError`; a Rust panic becomes
//!   `RpccError`, never `PanicException`.
//! - Results cross as JSON text that the Python layer turns into typed dataclasses;
//!   secrets never cross at all except where the caller asked for a value
//!   (`Keyring.decrypt`).

use pyo3::prelude::*;

mod engine;
mod errors;
mod inventory;
mod keyring;
mod plugin;
mod runtime;
mod watch;

pub use errors::{
    AuthError, ConfigRejected, DeployError, HostKeyError, KeyringError, PluginError, ReloadFailed, RolledBack,
    RpccError, TimeoutError, TransportError, ValidationError,
};

/// The native module `rpcc._rpcc`.
#[pymodule]
fn _rpcc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<inventory::PyInventory>()?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<keyring::PyKeyring>()?;
    m.add_class::<engine::PySshSession>()?;
    m.add_class::<plugin::PyPlugin>()?;
    m.add_class::<watch::PyWatcher>()?;
    m.add_function(wrap_pyfunction!(inventory::render, m)?)?;
    m.add_function(wrap_pyfunction!(inventory::render_site, m)?)?;
    m.add_function(wrap_pyfunction!(engine::run_command, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
