//! `Plugin`: load a WASM plugin the way rpcc does and run it on an inventory's sites.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::plugins::{Plugin, PluginHost, PluginKind, PluginSpec};
use rpcc_core::fragment::FragmentPolicy;
use rpcc_core::generation::Renderer as _;
use rpcc_core::model::{Inventory, PluginCapability, Server};

use crate::errors::{self, PluginError, guarded};
use crate::inventory::PyInventory;

/// A loaded WASM plugin (every call in a fresh sandbox, with its limits).
#[pyclass(name = "Plugin", module = "rpcc._rpcc", frozen)]
pub struct PyPlugin {
    plugin: Plugin,
}

fn plugin_err(e: impl std::fmt::Display) -> PyErr {
    PluginError::new_err(e.to_string())
}

fn server<'a>(py: Python<'_>, inv: &'a Inventory, name: &str) -> PyResult<&'a Server> {
    inv.server(name).ok_or_else(|| {
        errors::validation(
            py,
            format!("server {name:?} is not in the inventory"),
            vec![("server".into(), format!("{name:?} is not in the inventory"))],
        )
    })
}

#[pymethods]
impl PyPlugin {
    /// Load a component: `grant` capabilities (`"http-get"`, `"clock"`), `config` passed
    /// with every site, `allow` the directives a template plugin may emit (default set
    /// when `None`). Raises `PluginError` naming the plugin and the reason.
    #[staticmethod]
    #[pyo3(signature = (path, *, grant = Vec::new(), config = BTreeMap::new(), allow = None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        grant: Vec<String>,
        config: BTreeMap<String, String>,
        allow: Option<Vec<String>>,
    ) -> PyResult<Self> {
        guarded(|| {
            let mut spec = PluginSpec::from_file(path);
            for g in grant {
                spec = spec.grant(match g.as_str() {
                    "http-get" => PluginCapability::HttpGet,
                    "clock" => PluginCapability::Clock,
                    other => {
                        return Err(errors::validation(
                            py,
                            format!("grant: {other:?} is not a capability"),
                            vec![("grant".into(), format!("{other:?} is not a capability (http-get, clock)"))],
                        ));
                    }
                });
            }
            for (k, v) in &config {
                spec = spec.config(k, v);
            }
            if let Some(allow) = allow {
                spec = spec.allow(FragmentPolicy::new(&allow).map_err(plugin_err)?);
            }
            let plugin = py.detach(|| PluginHost::new().and_then(|h| h.load(&spec))).map_err(plugin_err)?;
            Ok(Self { plugin })
        })
    }

    /// The plugin's name (from its manifest).
    #[getter]
    fn name(&self) -> String {
        self.plugin.manifest().name.clone()
    }

    /// Its version.
    #[getter]
    fn version(&self) -> String {
        self.plugin.manifest().version.clone()
    }

    /// Its one-line description.
    #[getter]
    fn description(&self) -> String {
        self.plugin.manifest().description.clone()
    }

    /// `template`, `check` or `lint`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.plugin.kind().as_str()
    }

    /// Capabilities it requested (all granted).
    #[getter]
    fn capabilities(&self) -> Vec<&'static str> {
        self.plugin.manifest().capabilities.iter().map(|c| c.as_str()).collect()
    }

    /// SHA-256 of the component file.
    #[getter]
    fn sha256(&self) -> String {
        self.plugin.sha256().to_owned()
    }

    /// A template plugin: the site's configuration as `server` serves it, with this
    /// plugin's fragments.
    fn render_site(&self, py: Python<'_>, inventory: &PyInventory, server: &str, domain: &str) -> PyResult<String> {
        guarded(|| {
            let inv = Arc::clone(&inventory.inv);
            let s = self::server(py, &inv, server)?;
            let ext = Arc::new(self.plugin.clone());
            py.detach(|| {
                let r = NginxRenderer::new(RenderOptions::default()).map_err(plugin_err)?.with_extension(ext);
                r.render_site(&inv, s, domain).map_err(plugin_err)
            })
        })
    }

    /// A lint plugin: findings over `server`'s rendered configuration, as JSON text
    /// (`[{"file", "line", "severity", "message"}]`).
    fn lint_json(&self, py: Python<'_>, inventory: &PyInventory, server: &str) -> PyResult<String> {
        guarded(|| {
            if self.plugin.kind() != PluginKind::Lint {
                return Err(plugin_err(format!("plugin {} is a {} plugin", self.plugin.name(), self.kind())));
            }
            let inv = Arc::clone(&inventory.inv);
            let s = self::server(py, &inv, server)?;
            py.detach(|| {
                let r = NginxRenderer::new(RenderOptions::default()).map_err(plugin_err)?;
                let g = r.render(&inv, s).map_err(plugin_err)?;
                let findings = self.plugin.lint_generation(&inv, s, &g).map_err(plugin_err)?;
                serde_json::to_string(&findings).map_err(plugin_err)
            })
        })
    }

    fn __repr__(&self) -> String {
        let m = self.plugin.manifest();
        format!("<rpcc.Plugin {} {} ({})>", m.name, m.version, self.plugin.kind().as_str())
    }
}
