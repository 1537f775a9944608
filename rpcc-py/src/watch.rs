//! `Watcher`: `rpcc watch` running inside the Python process (rounds on the inventory's
//! interval, samples, alerts to the audit log and the notifiers, certificate renewal)
//! until `stop()`, the end of a `with` block, or the watcher being dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use rpcc::engine::Engine;
use rpcc::watch::{Alerting, Monitor, Watch};
use tokio::sync::oneshot;

use crate::errors::{RpccError, guarded};
use crate::runtime::runtime;

/// A running watch. Stops on `stop()`, at the end of a `with` block, or when dropped.
#[pyclass(name = "Watcher", module = "rpcc._rpcc", frozen)]
pub struct PyWatcher {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Signalled (or disconnected) when the watch thread ends.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Set by the watch thread as it ends.
    finished: Arc<AtomicBool>,
    servers: usize,
    sites: usize,
    interval: Duration,
}

/// Set the watch up (errors raise here, before anything runs) and start it on the
/// process's runtime.
pub(crate) fn start(py: Python<'_>, engine: Arc<Engine>, state: &str) -> PyResult<PyWatcher> {
    let rt = runtime()?;
    let err = |e: &dyn std::fmt::Display| RpccError::new_err(e.to_string());
    let alerting = Alerting::new(engine.inventory()).map_err(|e| err(&e))?;
    engine.notifiers().map_err(|e| err(&e))?;
    let (monitor, store) = py.detach(|| {
        rt.block_on(async {
            let monitor = Monitor::new(engine.inventory().clone(), engine.keyring()).await.map_err(|e| err(&e))?;
            let seal = engine.keyring().and_then(|k| rpcc_core::deploy::AuditSeal::for_keyring(k).ok());
            let environment = engine.inventory().environment.as_ref().map(|e| e.name.as_str());
            let store = rpcc::store::open_watch_url(state, seal, rpcc::store::EnvironmentClaim::For(environment))
                .await
                .map_err(|e| err(&format!("state {}: {e}", rpcc::store::redacted_url(state))))?;
            Ok::<_, PyErr>((monitor, store))
        })
    })?;
    let (servers, sites) = (monitor.glances_servers(), monitor.site_checks());
    let interval = engine.inventory().monitor.interval.as_duration();
    let (tx, rx) = oneshot::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let finished_by_thread = Arc::clone(&finished);
    // A thread of its own driving the watch on the process's runtime (its future borrows
    // the monitor and the engine, so it is not spawned as a task).
    std::thread::Builder::new()
        .name("rpcc-watch".into())
        .spawn(move || {
            if let Ok(notifiers) = engine.notifiers() {
                let member = rpcc::watch::member_name();
                let watch = Watch {
                    monitor: &monitor,
                    notifiers,
                    store: &*store,
                    alerting,
                    renewals: Some(&engine),
                    member,
                    stats: None,
                    alive: None,
                };
                // A dropped sender (the watcher garbage-collected) stops the watch too.
                rt.block_on(watch.run(async move {
                    let _ = rx.await;
                }));
            }
            finished_by_thread.store(true, Ordering::SeqCst);
            let _ = done_tx.send(());
        })
        .map_err(|e| err(&format!("cannot start the watch thread: {e}")))?;
    Ok(PyWatcher { stop: Mutex::new(Some(tx)), done: Mutex::new(Some(done)), finished, servers, sites, interval })
}

#[pymethods]
impl PyWatcher {
    /// Stop watching and wait (at most `timeout` seconds) for the round in progress to
    /// be abandoned. Returns whether the watch had stopped by then; calling it again is
    /// harmless.
    #[pyo3(signature = (timeout = 30.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        guarded(|| {
            if let Some(tx) = self.stop.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                let _ = tx.send(());
            }
            let wait = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::from_secs(30));
            let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            let Some(rx) = done else { return Ok(true) };
            let (stopped, rx) = py.detach(move || {
                let r = rx.recv_timeout(wait);
                (!matches!(r, Err(std::sync::mpsc::RecvTimeoutError::Timeout)), rx)
            });
            if !stopped {
                *self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rx);
            }
            Ok(stopped)
        })
    }

    /// Whether the watch is still running.
    #[getter]
    fn running(&self) -> bool {
        !self.finished.load(Ordering::SeqCst)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py, 30.0)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Watcher({} server(s) with Glances, {} site check(s), every {:?}, {})",
            self.servers,
            self.sites,
            self.interval,
            if self.running() { "running" } else { "stopped" }
        )
    }
}
