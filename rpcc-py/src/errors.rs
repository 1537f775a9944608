//! The exception hierarchy and the mapping of Rust errors onto it.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rpcc_core::deploy::DeployError as CoreDeployError;
use rpcc_core::transport::TransportError as CoreTransportError;

create_exception!(_rpcc, RpccError, PyException, "Base class of every rpcc error.");
create_exception!(_rpcc, ValidationError, RpccError, "Invalid input; `.errors` lists (path, message) pairs.");
create_exception!(_rpcc, TransportError, RpccError, "A server could not be reached or a command failed to run.");
create_exception!(_rpcc, HostKeyError, TransportError, "The server's host key was refused (unknown or changed).");
create_exception!(_rpcc, AuthError, TransportError, "SSH authentication failed.");
create_exception!(_rpcc, TimeoutError, TransportError, "A connect, authentication or command timeout fired.");
create_exception!(_rpcc, DeployError, RpccError, "A deploy or rollback did not succeed.");
create_exception!(
    _rpcc,
    ConfigRejected,
    DeployError,
    "`nginx -t` rejected the configuration; `.message` holds its output."
);
create_exception!(_rpcc, ReloadFailed, DeployError, "nginx did not take the new configuration.");
create_exception!(_rpcc, RolledBack, DeployError, "The deploy failed and the last good generation was restored.");
create_exception!(_rpcc, KeyringError, RpccError, "A key or an envelope is missing, malformed or does not open.");
create_exception!(_rpcc, PluginError, RpccError, "A WASM plugin failed to load or run.");

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RpccError", py.get_type::<RpccError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("HostKeyError", py.get_type::<HostKeyError>())?;
    m.add("AuthError", py.get_type::<AuthError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("DeployError", py.get_type::<DeployError>())?;
    m.add("ConfigRejected", py.get_type::<ConfigRejected>())?;
    m.add("ReloadFailed", py.get_type::<ReloadFailed>())?;
    m.add("RolledBack", py.get_type::<RolledBack>())?;
    m.add("KeyringError", py.get_type::<KeyringError>())?;
    m.add("PluginError", py.get_type::<PluginError>())?;
    Ok(())
}

/// A `ValidationError` whose `.errors` is a list of `(path, message)`.
pub(crate) fn validation(py: Python<'_>, message: String, errors: Vec<(String, String)>) -> PyErr {
    let err = ValidationError::new_err(message);
    if let Ok(list) = PyList::new(py, errors) {
        let _ = err.value(py).setattr("errors", list);
    }
    err
}

/// Map an rpcc-core error (inventory loading) to an exception.
pub(crate) fn core_error(py: Python<'_>, e: rpcc_core::Error) -> PyErr {
    match e {
        rpcc_core::Error::Invalid(errors) => validation_errors(py, &errors),
        rpcc_core::Error::Syntax { message, location } => {
            let at = location.map(|l| format!("line {}, column {}", l.line, l.column)).unwrap_or_default();
            validation(py, format!("TOML syntax error {at}: {message}"), vec![("(root)".into(), message)])
        }
        rpcc_core::Error::Read { path, source } => validation(
            py,
            format!("cannot read {}: {source}", path.display()),
            vec![("(file)".into(), source.to_string())],
        ),
        rpcc_core::Error::Transport(t) => transport(t),
        other => RpccError::new_err(other.to_string()),
    }
}

pub(crate) fn validation_errors(py: Python<'_>, errors: &rpcc_core::ValidationErrors) -> PyErr {
    let pairs = errors.errors().iter().map(|e| (e.path.to_string(), e.message.clone())).collect();
    validation(py, errors.to_string(), pairs)
}

/// Map a transport error.
pub(crate) fn transport(e: CoreTransportError) -> PyErr {
    let text = e.to_string();
    match e {
        CoreTransportError::HostKey { .. } => HostKeyError::new_err(text),
        CoreTransportError::Auth { .. } => AuthError::new_err(text),
        CoreTransportError::Timeout { .. } => TimeoutError::new_err(text),
        CoreTransportError::Credentials { .. } => KeyringError::new_err(text),
        _ => TransportError::new_err(text),
    }
}

/// Map a deploy error.
pub(crate) fn deploy(py: Python<'_>, e: CoreDeployError) -> PyErr {
    let text = e.to_string();
    match e {
        CoreDeployError::Transport(t) => transport(t),
        CoreDeployError::Rejected { message } => {
            let err = ConfigRejected::new_err(text);
            let _ = err.value(py).setattr("message", message);
            err
        }
        CoreDeployError::ReloadFailed { .. } => ReloadFailed::new_err(text),
        _ => DeployError::new_err(text),
    }
}

/// Map a keyring error.
pub(crate) fn keyring(e: rpcc_core::keyring::KeyringError) -> PyErr {
    KeyringError::new_err(e.to_string())
}

/// Run `f`, turning a Rust panic into `RpccError` (never `PanicException`).
pub(crate) fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(RpccError::new_err(format!("internal error in rpcc (please report): {what}")))
        }
    }
}
