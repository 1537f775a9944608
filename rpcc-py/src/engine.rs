//! `Engine` (plan / apply / rollback / status / drift over one inventory and its state)
//! and `SshSession` / `run_command` (the legacy `execute_command`, with pinned host keys).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use rpcc::certs::CertificateOptions;
use rpcc::engine::{ApplyOptions, Engine, EngineError, Selection};
use rpcc::ssh::{SshPool, SshTarget, SshTransport};
use rpcc_core::deploy::{DeployOptions, ProgressEvent, RolloutOverrides};
use rpcc_core::keyring::Keyring;
use rpcc_core::model::{Inventory, RolloutStrategy};
use rpcc_core::transport::{Argv, ExecRequest, ExitStatus, Transport as _};

use crate::errors::{self, RpccError, guarded};
use crate::inventory::PyInventory;
use crate::runtime::runtime;

fn engine_error(py: Python<'_>, e: EngineError) -> PyErr {
    let text = e.to_string();
    match e {
        EngineError::Unknown { what, name } => {
            errors::validation(py, text, vec![(what.to_owned(), format!("{name:?} is not in the inventory"))])
        }
        EngineError::Server { .. } => errors::TransportError::new_err(text),
        EngineError::Deploy(d) => errors::deploy(py, d),
        EngineError::Plugin(_) | EngineError::Lint { .. } => errors::PluginError::new_err(text),
        EngineError::CertificateKeys { .. }
        | EngineError::State { source: rpcc_core::deploy::StoreError::AuditKeyRequired { .. }, .. } => {
            errors::KeyringError::new_err(text)
        }
        _ => RpccError::new_err(text),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| RpccError::new_err(format!("cannot encode a result: {e}")))
}

/// The keyring: required when the inventory holds sealed secrets; otherwise the
/// configured one if any (it also keys the audit log), as the CLI does.
fn keyring_for(inv: &Inventory, key_file: Option<&std::path::Path>) -> PyResult<Option<Keyring>> {
    if inv.secrets().iter().any(|s| s.envelope().is_some()) {
        return Keyring::load(key_file).map(Some).map_err(errors::keyring);
    }
    match Keyring::load(key_file) {
        Ok(ring) => Ok(Some(ring)),
        Err(rpcc_core::keyring::KeyringError::NoKeys) => Ok(None),
        Err(e) => Err(errors::keyring(e)),
    }
}

/// The fleet operations over one inventory and its state database. Safe to share
/// between threads; after `os.fork()` a child reconnects on first use.
#[pyclass(name = "Engine", module = "rpcc._rpcc", frozen)]
pub struct PyEngine {
    inv: Arc<Inventory>,
    state: String,
    key_file: Option<PathBuf>,
    actor: Option<String>,
    inner: Mutex<Option<(u32, Arc<Engine>)>>,
}

impl PyEngine {
    /// This process's engine (rebuilt after a fork: the parent's connections and database
    /// handles belong to threads that do not exist in the child).
    fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
        let pid = std::process::id();
        let mut slot = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((owner, e)) = slot.as_ref()
            && *owner == pid
        {
            return Ok(e.clone());
        }
        if let Some((_, inherited)) = slot.take() {
            std::mem::forget(inherited);
        }
        let rt = runtime()?;
        let keyring = keyring_for(&self.inv, self.key_file.as_deref())?;
        let inv = (*self.inv).clone();
        let state = self.state.clone();
        let opened = py.detach(|| rt.block_on(Engine::open_url(inv, &state, keyring)));
        let mut engine = opened.map_err(|e| engine_error(py, e))?;
        if let Some(a) = &self.actor {
            engine = engine.with_actor(a);
        }
        let engine = Arc::new(engine);
        *slot = Some((pid, engine.clone()));
        Ok(engine)
    }
}

fn selection(servers: Option<Vec<String>>, groups: Option<Vec<String>>) -> Selection {
    Selection { servers: servers.unwrap_or_default(), groups: groups.unwrap_or_default() }
}

#[pymethods]
impl PyEngine {
    /// An engine for `inventory` with its state in `state`: a SQLite file path, or a
    /// `postgres://` URL shared with other control planes.
    #[new]
    #[pyo3(signature = (inventory, state, *, key_file = None, actor = None))]
    fn new(inventory: &PyInventory, state: String, key_file: Option<PathBuf>, actor: Option<String>) -> Self {
        Self { inv: inventory.inv.clone(), state, key_file, actor, inner: Mutex::new(None) }
    }

    /// Per server: the planned changes (JSON list).
    #[pyo3(signature = (*, servers = None, groups = None))]
    fn plan(&self, py: Python<'_>, servers: Option<Vec<String>>, groups: Option<Vec<String>>) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let result = {
                let engine = self.engine(py)?;
                let rt = runtime()?;
                py.detach(|| rt.block_on(engine.plan(&sel)))
            }
            .map_err(|e| engine_error(py, e))?;
            to_json(&result)
        })
    }

    /// Deploy (JSON report). `on_progress` is called with one dict per event.
    #[pyo3(signature = (*, servers = None, groups = None, strategy = None, batch = None, concurrency = None,
                        max_failed = None, rollback_on_failure = None, keep = None, probe = true, on_progress = None,
                        certificates = true))]
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        py: Python<'_>,
        servers: Option<Vec<String>>,
        groups: Option<Vec<String>>,
        strategy: Option<&str>,
        batch: Option<usize>,
        concurrency: Option<usize>,
        max_failed: Option<u32>,
        rollback_on_failure: Option<bool>,
        keep: Option<u32>,
        probe: bool,
        on_progress: Option<Py<PyAny>>,
        certificates: bool,
    ) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let engine = self.engine(py)?;
            let strategy = match strategy {
                None => None,
                Some("all") => Some(RolloutStrategy::All),
                Some("canary") => Some(RolloutStrategy::Canary),
                Some(other) => {
                    return Err(errors::validation(
                        py,
                        format!("strategy {other:?} is not one of \"all\", \"canary\""),
                        vec![("strategy".into(), format!("{other:?} is not one of \"all\", \"canary\""))],
                    ));
                }
            };
            let rollout = RolloutOverrides { strategy, batch, concurrency, max_failed, rollback_on_failure };
            let mut deploy = DeployOptions::default();
            if let Some(k) = keep {
                deploy = deploy.keep(k);
            }
            let progress = on_progress.map(|cb| {
                let cb = Arc::new(cb);
                Arc::new(move |e: &ProgressEvent| {
                    let Ok(json) = serde_json::to_string(e) else { return };
                    Python::attach(|py| {
                        let call = py
                            .import("json")
                            .and_then(|m| m.call_method1("loads", (json,)))
                            .and_then(|event| cb.call1(py, (event,)));
                        if let Err(err) = call {
                            err.write_unraisable(py, None);
                        }
                    });
                }) as Arc<rpcc_core::deploy::ProgressFn>
            });
            let options = ApplyOptions {
                deploy,
                rollout,
                skip_probe: !probe,
                progress,
                skip_certificates: !certificates,
                ..ApplyOptions::default()
            };
            let rt = runtime()?;
            let report = py.detach(|| rt.block_on(engine.apply(&sel, options))).map_err(|e| engine_error(py, e))?;
            to_json(&report)
        })
    }

    /// Renew what is due (names changed, expiring within `days`, or all with `force`)
    /// and deploy it to the servers of those sites only (JSON, `apply`'s shape).
    #[pyo3(signature = (*, servers = None, groups = None, days = None, force = false, probe = true))]
    fn renew(
        &self,
        py: Python<'_>,
        servers: Option<Vec<String>>,
        groups: Option<Vec<String>>,
        days: Option<u32>,
        force: bool,
        probe: bool,
    ) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let engine = self.engine(py)?;
            let options = ApplyOptions {
                skip_probe: !probe,
                certificates: CertificateOptions { renew_days: days, force, ..Default::default() },
                ..ApplyOptions::default()
            };
            let rt = runtime()?;
            let report = py.detach(|| rt.block_on(engine.renew_due(&sel, options))).map_err(|e| engine_error(py, e))?;
            let deployed = report.deploy.as_ref();
            to_json(&serde_json::json!({
                "servers": report.unreachable.iter().chain(deployed.iter().flat_map(|d| &d.servers)).collect::<Vec<_>>(),
                "stopped": deployed.and_then(|d| d.stopped.clone()),
                "rolled_back": deployed.iter().flat_map(|d| &d.rolled_back).collect::<Vec<_>>(),
                "certificates": report.certificates,
                "failed": report.failed(),
            }))
        })
    }

    /// Per ACME or self-signed site: stored certificate, days left, due, served
    /// fingerprints per server (JSON list).
    #[pyo3(signature = (*, servers = None, groups = None, days = None))]
    fn certificates(
        &self,
        py: Python<'_>,
        servers: Option<Vec<String>>,
        groups: Option<Vec<String>>,
        days: Option<u32>,
    ) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let rows = {
                let engine = self.engine(py)?;
                let rt = runtime()?;
                py.detach(|| rt.block_on(engine.certificate_status(&sel, days)))
            }
            .map_err(|e| engine_error(py, e))?;
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["in_service"] = serde_json::Value::Bool(r.in_service());
                    v
                })
                .collect();
            to_json(&out)
        })
    }

    /// One monitoring round over the whole inventory (JSON: servers' metrics, sites,
    /// DNS, check plugins, and whether anything failed), as `rpcc check --json`.
    fn check(&self, py: Python<'_>) -> PyResult<String> {
        guarded(|| {
            let engine = self.engine(py)?;
            let rt = runtime()?;
            let round = py.detach(|| {
                rt.block_on(async {
                    let monitor = rpcc::watch::Monitor::new(engine.inventory().clone(), engine.keyring()).await?;
                    Ok::<_, rpcc::watch::WatchError>(monitor.round().await)
                })
            });
            to_json(&round.map_err(|e| RpccError::new_err(e.to_string()))?)
        })
    }

    /// Start `rpcc watch` in this process (rounds on the inventory's interval, samples,
    /// alerts to the audit log and the notifiers, certificate renewal) until the
    /// returned watcher is stopped or dropped. Set-up errors raise here.
    fn watch(&self, py: Python<'_>) -> PyResult<crate::watch::PyWatcher> {
        guarded(|| {
            let engine = self.engine(py)?;
            crate::watch::start(py, engine, &self.state)
        })
    }

    /// The audit log in sequence order (JSON list of records).
    fn audit(&self, py: Python<'_>) -> PyResult<String> {
        guarded(|| {
            let engine = self.engine(py)?;
            let rt = runtime()?;
            let records = py.detach(|| rt.block_on(async { engine.store().audit_log().await }));
            to_json(&records.map_err(|e| RpccError::new_err(e.to_string()))?)
        })
    }

    /// Send `text` to the inventory's notifiers routed to `groups` (all default
    /// notifiers when empty); returns the notifiers that failed, with why.
    #[pyo3(signature = (text, *, groups = None))]
    fn notify(&self, py: Python<'_>, text: String, groups: Option<Vec<String>>) -> PyResult<Vec<String>> {
        guarded(|| {
            let engine = self.engine(py)?;
            let rt = runtime()?;
            let groups = groups.unwrap_or_default();
            let note = rpcc::monitor::Notification::deploy(text, groups.first().cloned());
            let failed = py.detach(|| rt.block_on(engine.notify(&note, &groups))).map_err(|e| engine_error(py, e))?;
            Ok(failed.iter().map(ToString::to_string).collect())
        })
    }

    /// Activate generation `to` (default: the previous one) on `server` (JSON report).
    #[pyo3(signature = (server, *, to = None))]
    fn rollback(&self, py: Python<'_>, server: String, to: Option<String>) -> PyResult<String> {
        guarded(|| {
            let r = {
                let engine = self.engine(py)?;
                let rt = runtime()?;
                py.detach(|| rt.block_on(engine.rollback(&server, to.as_deref())))
            }
            .map_err(|e| engine_error(py, e))?;
            to_json(&r)
        })
    }

    /// Per server: live generation, last deployment, lock (JSON list).
    #[pyo3(signature = (*, servers = None, groups = None))]
    fn status(&self, py: Python<'_>, servers: Option<Vec<String>>, groups: Option<Vec<String>>) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let r = {
                let engine = self.engine(py)?;
                let rt = runtime()?;
                py.detach(|| rt.block_on(engine.status(&sel)))
            }
            .map_err(|e| engine_error(py, e))?;
            to_json(&r)
        })
    }

    /// Per server: hand edits against the recorded generation (JSON list).
    #[pyo3(signature = (*, servers = None, groups = None))]
    fn drift(&self, py: Python<'_>, servers: Option<Vec<String>>, groups: Option<Vec<String>>) -> PyResult<String> {
        guarded(|| {
            let sel = selection(servers, groups);
            let result = {
                let engine = self.engine(py)?;
                let rt = runtime()?;
                py.detach(|| rt.block_on(engine.drift(&sel)))
            }
            .map_err(|e| engine_error(py, e))?;
            to_json(&result)
        })
    }

    fn __repr__(&self) -> String {
        format!("Engine({} servers, state={})", self.inv.servers.len(), rpcc::store::redacted_url(&self.state))
    }
}

/// One pooled SSH connection per server (pinned host key), reused across calls.
#[pyclass(name = "SshSession", module = "rpcc._rpcc", frozen)]
pub struct PySshSession {
    inv: Arc<Inventory>,
    server: String,
    key_file: Option<PathBuf>,
    inner: Mutex<Option<(u32, Arc<SshTransport>, SshPool)>>,
}

impl PySshSession {
    fn transport(&self) -> PyResult<Arc<SshTransport>> {
        let pid = std::process::id();
        let mut slot = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((owner, t, _)) = slot.as_ref()
            && *owner == pid
        {
            return Ok(t.clone());
        }
        if let Some(inherited) = slot.take() {
            std::mem::forget(inherited);
        }
        let server = self
            .inv
            .server(&self.server)
            .ok_or_else(|| RpccError::new_err(format!("server {:?} is not in the inventory", self.server)))?;
        let keyring = keyring_for(&self.inv, self.key_file.as_deref())?;
        let base = self.inv.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let target = SshTarget::from_server(server, &base, keyring.as_ref()).map_err(errors::transport)?;
        let pool = SshPool::new();
        let t = pool.transport(target).map_err(errors::transport)?;
        *slot = Some((pid, t.clone(), pool));
        Ok(t)
    }
}

#[pymethods]
impl PySshSession {
    /// A session to `server` of `inventory` (connects on first use).
    #[new]
    #[pyo3(signature = (inventory, server, *, key_file = None))]
    fn new(py: Python<'_>, inventory: &PyInventory, server: String, key_file: Option<PathBuf>) -> PyResult<Self> {
        if inventory.inv.server(&server).is_none() {
            return Err(errors::validation(
                py,
                format!("server {server:?} is not in the inventory"),
                vec![("server".into(), format!("{server:?} is not in the inventory"))],
            ));
        }
        Ok(Self { inv: inventory.inv.clone(), server, key_file, inner: Mutex::new(None) })
    }

    /// Run `argv` (no shell; each element one argument). Returns
    /// `(exit_code | None, signal | None, stdout, stderr, truncated)`.
    #[pyo3(signature = (argv, *, timeout = 60.0, stdin = None))]
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        py: Python<'_>,
        argv: Vec<String>,
        timeout: f64,
        stdin: Option<Vec<u8>>,
    ) -> PyResult<(Option<i32>, Option<String>, Vec<u8>, Vec<u8>, bool)> {
        guarded(|| {
            let Some((program, args)) = argv.split_first() else {
                return Err(errors::validation(py, "argv is empty".into(), vec![("argv".into(), "is empty".into())]));
            };
            let argv = Argv::new(program, args.iter().cloned()).map_err(errors::transport)?;
            if !timeout.is_finite() || timeout <= 0.0 {
                return Err(errors::validation(
                    py,
                    format!("timeout {timeout} is not a positive number of seconds"),
                    vec![("timeout".into(), "must be a positive number of seconds".into())],
                ));
            }
            let mut req = ExecRequest::new(argv).timeout(Duration::from_secs_f64(timeout));
            if let Some(bytes) = stdin {
                req = req.stdin(bytes);
            }
            let t = self.transport()?;
            let rt = runtime()?;
            let out = py.detach(|| rt.block_on(t.exec(req))).map_err(errors::transport)?;
            let (code, signal) = match out.status {
                ExitStatus::Code(c) => (Some(c), None),
                ExitStatus::Signal(s) => (None, Some(s)),
            };
            Ok((code, signal, out.stdout, out.stderr, out.truncated))
        })
    }

    fn __repr__(&self) -> String {
        format!("SshSession({})", self.server)
    }
}

/// One command on one server (a session used once).
#[pyfunction]
#[pyo3(signature = (inventory, server, argv, *, timeout = 60.0, key_file = None))]
#[allow(clippy::type_complexity)]
pub fn run_command(
    py: Python<'_>,
    inventory: &PyInventory,
    server: String,
    argv: Vec<String>,
    timeout: f64,
    key_file: Option<PathBuf>,
) -> PyResult<(Option<i32>, Option<String>, Vec<u8>, Vec<u8>, bool)> {
    let session = PySshSession::new(py, inventory, server, key_file)?;
    session.run(py, argv, timeout, None)
}
