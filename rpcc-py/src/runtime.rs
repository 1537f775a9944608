//! The per-process tokio runtime: rpcc's one documented global. Created on first use,
//! and recreated in a child process after `os.fork()` (gunicorn's preload): the
//! parent's worker threads do not exist in the child, so its runtime is leaked there,
//! never used or dropped.

use std::sync::{Arc, Mutex};

use pyo3::PyResult;

use crate::errors::RpccError;

static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// The runtime of this process.
pub(crate) fn runtime() -> PyResult<Arc<tokio::runtime::Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((owner, rt)) = slot.as_ref()
        && *owner == pid
    {
        return Ok(rt.clone());
    }
    if let Some((_, inherited)) = slot.take() {
        // Forked: dropping would wait for threads that only exist in the parent.
        std::mem::forget(inherited);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rpcc-py")
        .enable_all()
        .build()
        .map_err(|e| RpccError::new_err(format!("cannot start the rpcc runtime: {e}")))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}
