//! `Inventory`, `render`, `render_site`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc_core::LoadOptions;
use rpcc_core::generation::Renderer as _;
use rpcc_core::inventory::Node;
use rpcc_core::model::Inventory;

use crate::errors::{self, RpccError, guarded};

/// A validated inventory (servers, groups, sites). Built only through the constructors,
/// which raise `ValidationError` listing every problem with its path.
#[pyclass(name = "Inventory", module = "rpcc._rpcc", frozen)]
pub struct PyInventory {
    pub(crate) inv: Arc<Inventory>,
    pub(crate) source: Option<PathBuf>,
    /// This process's renderer (templates compiled, plugins loaded once, content cache):
    /// built on the first render, rebuilt after a fork (the plugin host's epoch thread
    /// belongs to the parent).
    renderer: std::sync::Mutex<Option<(u32, Arc<NginxRenderer>)>>,
}

impl PyInventory {
    fn new(inv: Inventory, source: Option<PathBuf>) -> Self {
        Self { inv: Arc::new(inv), source, renderer: std::sync::Mutex::new(None) }
    }

    /// The renderer for this inventory, with its template plugins when it configures any.
    fn renderer(&self) -> PyResult<Arc<NginxRenderer>> {
        let pid = std::process::id();
        let mut slot = self.renderer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((owner, r)) = slot.as_ref()
            && *owner == pid
        {
            return Ok(Arc::clone(r));
        }
        if let Some((_, inherited)) = slot.take() {
            // Dropping it would wait for a thread that does not exist in this process.
            std::mem::forget(inherited);
        }
        let r = NginxRenderer::new(RenderOptions::default()).map_err(|e| RpccError::new_err(e.to_string()))?;
        let r = Arc::new(match rpcc::engine::load_plugins(&self.inv) {
            Ok(None) => r,
            Ok(Some(set)) => r.with_extension(set),
            Err(e) => return Err(errors::PluginError::new_err(e.to_string())),
        });
        *slot = Some((pid, Arc::clone(&r)));
        Ok(r)
    }
}

#[pymethods]
impl PyInventory {
    /// Load and validate a TOML file (`env`: the `[env.<name>]` of an inventory that
    /// defines environments).
    #[staticmethod]
    #[pyo3(signature = (path, *, allow_plaintext = false, env = None))]
    fn from_toml(py: Python<'_>, path: PathBuf, allow_plaintext: bool, env: Option<String>) -> PyResult<Self> {
        guarded(|| {
            let opts = LoadOptions::allow_plaintext(allow_plaintext).with_environment(env.as_deref());
            let loaded = py.detach(|| Inventory::from_toml_file_with(&path, &opts));
            loaded.map(|inv| Self::new(inv, Some(path))).map_err(|e| errors::core_error(py, e))
        })
    }

    /// Validate TOML text (`env` as for `from_toml`).
    #[staticmethod]
    #[pyo3(signature = (text, *, allow_plaintext = false, env = None))]
    fn from_toml_str(py: Python<'_>, text: &str, allow_plaintext: bool, env: Option<String>) -> PyResult<Self> {
        guarded(|| {
            let opts = LoadOptions::allow_plaintext(allow_plaintext).with_environment(env.as_deref());
            let text = text.to_owned();
            let loaded = py.detach(|| Inventory::from_toml_str_with(&text, &opts));
            loaded.map(|inv| Self::new(inv, None)).map_err(|e| errors::core_error(py, e))
        })
    }

    /// Validate a JSON document `{"servers": [...], "groups": [...], "sites": [...]}` (what
    /// `rpcc.Inventory.from_dicts` sends).
    #[staticmethod]
    #[pyo3(signature = (text, *, allow_plaintext = false))]
    fn from_json(py: Python<'_>, text: &str, allow_plaintext: bool) -> PyResult<Self> {
        guarded(|| {
            let node: Node = serde_json::from_str(text).map_err(|e| {
                errors::validation(py, format!("not a JSON document: {e}"), vec![("(root)".into(), e.to_string())])
            })?;
            let opts = LoadOptions::allow_plaintext(allow_plaintext);
            Inventory::from_node_with(&node, &opts)
                .map(|inv| Self::new(inv, None))
                .map_err(|e| errors::validation_errors(py, &e))
        })
    }

    /// The environment it was loaded for (`None`: it defines none).
    #[getter]
    fn environment(&self) -> Option<String> {
        self.inv.environment.as_ref().map(|e| e.name.clone())
    }

    /// Server names, in order.
    #[getter]
    fn servers(&self) -> Vec<String> {
        self.inv.servers.iter().map(|s| s.name.to_string()).collect()
    }

    /// Group names, in order.
    #[getter]
    fn groups(&self) -> Vec<String> {
        self.inv.groups.iter().map(|g| g.name.to_string()).collect()
    }

    /// Site domains, in order.
    #[getter]
    fn sites(&self) -> Vec<String> {
        self.inv.sites.iter().map(|s| s.domain.to_string()).collect()
    }

    /// Paths of secret fields accepted as plain text (only with `allow_plaintext`).
    #[getter]
    fn plaintext_secrets(&self) -> Vec<String> {
        self.inv.plaintext_secrets.iter().map(ToString::to_string).collect()
    }

    /// Domains served by `server`.
    fn sites_for_server(&self, server: &str) -> Vec<String> {
        self.inv.sites_for_server(server).map(|s| s.domain.to_string()).collect()
    }

    /// The inventory as JSON (secrets never included).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.inv).map_err(|e| RpccError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Inventory({} servers, {} groups, {} sites{})",
            self.inv.servers.len(),
            self.inv.groups.len(),
            self.inv.sites.len(),
            self.source.as_ref().map(|p| format!(", from {}", p.display())).unwrap_or_default()
        )
    }
}

/// Render one server's configuration tree: `{path: text}`.
#[pyfunction]
pub fn render(py: Python<'_>, inventory: &PyInventory, server: &str) -> PyResult<BTreeMap<String, String>> {
    guarded(|| {
        let inv = inventory.inv.clone();
        let Some(s) = inv.server(server).cloned() else {
            return Err(errors::validation(
                py,
                format!("server {server:?} is not in the inventory"),
                vec![("server".into(), format!("{server:?} is not in the inventory"))],
            ));
        };
        py.detach(|| {
            let r = inventory.renderer()?;
            let generation = r.render(&inv, &s).map_err(|e| match e {
                rpcc::nginx::RenderError::Extension { .. } => errors::PluginError::new_err(e.to_string()),
                e => RpccError::new_err(e.to_string()),
            })?;
            Ok::<_, PyErr>(
                generation
                    .files()
                    .iter()
                    .map(|(p, f)| (p.as_str().to_owned(), String::from_utf8_lossy(&f.bytes).into_owned()))
                    .collect(),
            )
        })
    })
}

/// Render the configuration of one site as `server` serves it (the legacy panel's
/// "generate config for one domain").
#[pyfunction]
pub fn render_site(py: Python<'_>, inventory: &PyInventory, server: &str, domain: &str) -> PyResult<String> {
    guarded(|| {
        let wanted = domain.trim_end_matches('.').to_ascii_lowercase();
        let Some(site) = inventory.inv.sites.iter().find(|s| s.domain.as_str() == wanted) else {
            return Err(errors::validation(
                py,
                format!("site {domain:?} is not in the inventory"),
                vec![("domain".into(), format!("{domain:?} is not in the inventory"))],
            ));
        };
        let path = rpcc::nginx::site_conf_path(site);
        let mut files = render(py, inventory, server)?;
        files.remove(&path).ok_or_else(|| {
            errors::validation(
                py,
                format!("server {server:?} does not serve {domain:?}"),
                vec![("server".into(), format!("does not serve {domain:?}"))],
            )
        })
    })
}
