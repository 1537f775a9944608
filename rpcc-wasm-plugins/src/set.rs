//! `PluginSet`: the plugins of one inventory, applied where groups and sites ask.

use std::collections::BTreeMap;
use std::sync::Arc;

use rpcc_core::fragment::{SiteExtension, SiteFragments};
use rpcc_core::generation::Generation;
use rpcc_core::model::{Inventory, Server, Site};

use crate::PluginError;
use crate::host::PluginHost;
use crate::plugin::Plugin;
use crate::spec::{CheckOutcome, Finding, PluginKind, PluginSpec, SiteHttp};

/// A lint finding with the plugin that reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginFinding {
    /// Plugin name.
    pub plugin: String,
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
}

/// Every `[[plugins]]` entry of an inventory, loaded. Implements
/// [`SiteExtension`] so an `NginxRenderer` runs the template plugins.
#[derive(Clone, Debug, Default)]
pub struct PluginSet {
    plugins: BTreeMap<String, Plugin>,
}

impl PluginSet {
    /// Load every plugin the inventory configures (paths relative to its directory).
    /// The first plugin that fails to load fails the whole set.
    pub fn load(host: &PluginHost, inventory: &Inventory) -> Result<Self, PluginError> {
        let mut plugins = BTreeMap::new();
        for settings in &inventory.plugins {
            let spec = PluginSpec::from_settings(settings, inventory.base_dir.as_deref());
            plugins.insert(settings.name.to_string(), host.load(&spec)?);
        }
        Ok(Self { plugins })
    }

    /// True when the inventory configures no plugin.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The loaded plugins by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    fn for_site<'a>(&'a self, inventory: &'a Inventory, site: &'a Site, kind: PluginKind) -> Vec<&'a Plugin> {
        inventory
            .plugins_for_site(site)
            .into_iter()
            .filter_map(|s| self.plugins.get(s.name.as_str()))
            .filter(|p| p.kind() == kind)
            .collect()
    }

    /// Template plugins' fragments for `site` on `server`, merged in order.
    pub fn fragments(&self, inventory: &Inventory, server: &Server, site: &Site) -> Result<SiteFragments, PluginError> {
        let mut merged = SiteFragments::default();
        let mut body_from: Option<&str> = None;
        for plugin in self.for_site(inventory, site, PluginKind::Template) {
            let f = plugin.render(inventory, server, site)?;
            merged.server.extend(f.server);
            merged.main_location.extend(f.main_location);
            if let Some(body) = f.server_body {
                if let Some(first) = body_from {
                    return Err(PluginError::Rejected {
                        plugin: plugin.name().to_owned(),
                        message: format!("plugin {first} already replaced the server block of {}", site.domain),
                    });
                }
                body_from = Some(plugin.name());
                merged.server_body = Some(body);
            }
        }
        Ok(merged)
    }

    /// Lint plugins of `server` (its groups' and sites') over its rendered generation.
    /// A failing plugin becomes an error-severity finding naming it.
    pub fn lint(&self, inventory: &Inventory, server: &Server, generation: &Generation) -> Vec<PluginFinding> {
        let lints: Vec<&Plugin> = inventory
            .plugins_for_server(server.name.as_str())
            .into_iter()
            .filter_map(|s| self.plugins.get(s.name.as_str()))
            .filter(|p| p.kind() == PluginKind::Lint)
            .collect();
        if lints.is_empty() {
            return Vec::new();
        }
        let files = crate::plugin::generation_files(generation);
        let mut out = Vec::new();
        for plugin in lints {
            match plugin.lint(inventory, server, &files) {
                Ok(findings) => out.extend(
                    findings.into_iter().map(|finding| PluginFinding { plugin: plugin.name().to_owned(), finding }),
                ),
                Err(e) => out.push(PluginFinding {
                    plugin: plugin.name().to_owned(),
                    finding: Finding {
                        file: String::new(),
                        line: 0,
                        severity: crate::Severity::Error,
                        message: e.to_string(),
                    },
                }),
            }
        }
        out
    }

    /// Check plugins of `site`, each run against `server` through `http`.
    pub fn checks(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
        http: &Arc<dyn SiteHttp>,
    ) -> Vec<(String, Result<CheckOutcome, PluginError>)> {
        self.for_site(inventory, site, PluginKind::Check)
            .into_iter()
            .map(|p| (p.name().to_owned(), p.check(inventory, server, site, Arc::clone(http))))
            .collect()
    }

    /// True when `site` has a check plugin.
    pub fn has_checks(&self, inventory: &Inventory, site: &Site) -> bool {
        !self.for_site(inventory, site, PluginKind::Check).is_empty()
    }
}

impl SiteExtension for PluginSet {
    fn site_fragments(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
    ) -> Result<SiteFragments, rpcc_core::fragment::ExtensionError> {
        self.fragments(inventory, server, site)
            .map_err(|e| std::sync::Arc::new(e) as rpcc_core::fragment::ExtensionError)
    }
}
