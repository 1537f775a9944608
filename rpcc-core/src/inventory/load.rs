//! The loader's entry points: TOML text or file, or any serde tree, decoded and
//! cross-checked into an [`Inventory`] (every problem reported, each with its path).

use std::path::Path;

use super::{
    Decoder, Node, NodeKind, TOP_LEVEL, cross_check, decode_acme, decode_group, decode_monitor, decode_plugin,
    decode_server, decode_site,
};
use crate::Error;
use crate::model::{
    AcmeSettings, DeploySettings, DomainGroup, Inventory, LoadOptions, MonitorSettings, PluginSettings, Site,
};
use crate::validate::{FieldPath, Location, ValidationErrors};

impl Inventory {
    /// Parse and validate TOML text. Every problem is reported, each with its path and
    /// line/column. Secret fields must be envelopes (see [`Self::from_toml_str_with`]).
    pub fn from_toml_str(source: &str) -> Result<Self, Error> {
        Self::from_toml_str_with(source, &LoadOptions::default())
    }

    /// [`Self::from_toml_str`] with options.
    pub fn from_toml_str_with(source: &str, options: &LoadOptions) -> Result<Self, Error> {
        let node = Node::from_toml(source).map_err(|e| Error::Syntax {
            message: e.message,
            location: e.span.map(|s| Location::of_offset(source, s.start)),
        })?;
        Self::decode(&node, Some(source), options).map_err(Error::Invalid)
    }

    /// Read, parse and validate a TOML file; relative key paths resolve against its
    /// directory.
    pub fn from_toml_file(path: &Path) -> Result<Self, Error> {
        Self::from_toml_file_with(path, &LoadOptions::default())
    }

    /// [`Self::from_toml_file`] with options.
    pub fn from_toml_file_with(path: &Path, options: &LoadOptions) -> Result<Self, Error> {
        let source =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let mut inv = Self::from_toml_str_with(&source, options)?;
        inv.base_dir = path.parent().map(Path::to_path_buf);
        Ok(inv)
    }

    /// The names of the `[env.<name>]` tables in TOML text, in order (empty when it
    /// defines none or does not parse: loading it then reports why).
    pub fn environment_names(source: &str) -> Vec<String> {
        let Ok(node) = Node::from_toml(source) else { return Vec::new() };
        let NodeKind::Table(entries) = &node.kind else { return Vec::new() };
        match entries.iter().find(|e| e.key == "env").map(|e| &e.value.kind) {
            Some(NodeKind::Table(envs)) => envs.iter().map(|e| e.key.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Validate a tree from any source (JSON, Python dicts via serde). Errors carry
    /// paths but no line numbers.
    pub fn from_node(node: &Node) -> Result<Self, ValidationErrors> {
        Self::decode(node, None, &LoadOptions::default())
    }

    /// [`Self::from_node`] with options.
    pub fn from_node_with(node: &Node, options: &LoadOptions) -> Result<Self, ValidationErrors> {
        Self::decode(node, None, options)
    }

    fn decode(root: &Node, source: Option<&str>, options: &LoadOptions) -> Result<Self, ValidationErrors> {
        let mut d = Decoder::new(source, options.allow_plaintext_secrets);
        let Some((selected, environment)) = super::env::select(&mut d, root, options.environment.as_deref()) else {
            // `select` reports why before giving up, so the list is never empty.
            let mut errors = d.into_errors();
            if errors.is_empty() {
                errors.push(crate::validate::FieldError {
                    path: FieldPath::root().field("env"),
                    message: "no environment could be chosen".into(),
                    location: None,
                });
            }
            return Err(ValidationErrors::from_vec(errors).unwrap_or_else(|| unreachable!("errors is not empty")));
        };
        let root = &selected;
        let top = FieldPath::root();
        let mut servers = Vec::new();
        let mut groups = Vec::new();
        let mut sites = Vec::new();
        let mut monitor = Some(MonitorSettings::default());
        let mut plugins = Vec::new();
        let mut acme = Some(AcmeSettings::default());
        let mut deploy = Some(DeploySettings::default());
        if let Some(mut t) = d.table(root, &top, TOP_LEVEL) {
            if let Some((n, p)) = t.get("servers") {
                servers = each(&mut d, n, &p, decode_server);
            }
            if let Some((n, p)) = t.get("groups") {
                groups = each(&mut d, n, &p, decode_group);
                d.group_names = groups.iter().flatten().map(|g| g.name.to_string()).collect();
            }
            if let Some((n, p)) = t.get("sites") {
                sites = each(&mut d, n, &p, decode_site);
            }
            if let Some((n, p)) = t.get("monitor") {
                monitor = decode_monitor(&mut d, n, &p);
            }
            if let Some((n, p)) = t.get("plugins") {
                plugins = each(&mut d, n, &p, decode_plugin);
            }
            if let Some((n, p)) = t.get("acme") {
                acme = decode_acme(&mut d, n, &p);
            }
            if let Some((n, p)) = t.get("deploy") {
                deploy = decode_deploy(&mut d, n, &p);
            }
            // `env` was applied (and removed) by env::select.
            let _ = t.get("env");
            t.finish(&mut d);
        }
        cross_check(&mut d, root);
        check_plugin_refs(&mut d, &plugins, &groups, &sites);
        let plaintext_secrets = d.take_plaintext();
        if let Some(errors) = ValidationErrors::from_vec(d.into_errors()) {
            return Err(errors);
        }
        Ok(Self {
            servers: servers.into_iter().flatten().collect(),
            groups: groups.into_iter().flatten().collect(),
            sites: sites.into_iter().flatten().collect(),
            monitor: monitor.unwrap_or_default(),
            plugins: plugins.into_iter().flatten().collect(),
            acme: acme.unwrap_or_default(),
            deploy: deploy.unwrap_or_default(),
            base_dir: None,
            plaintext_secrets,
            environment,
        })
    }
}

/// Decode each item of an array, keeping a slot per index (None for failures) so that
/// cross-checks can still report positions.
fn each<T>(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &FieldPath,
    f: fn(&mut Decoder<'_>, &Node, &FieldPath) -> Option<T>,
) -> Vec<Option<T>> {
    match &node.kind {
        NodeKind::Array(items) => items.iter().enumerate().map(|(i, n)| f(d, n, &path.index(i))).collect(),
        _ => {
            d.error(path, Some(node), format!("expected an array of tables ([[{path}]]), found {}", node.type_name()));
            Vec::new()
        }
    }
}

/// Every `plugins = [...]` name must be a `[[plugins]]` entry; plugin names are unique.
fn check_plugin_refs(
    d: &mut Decoder<'_>,
    plugins: &[Option<PluginSettings>],
    groups: &[Option<DomainGroup>],
    sites: &[Option<Site>],
) {
    let known: Vec<&str> = plugins.iter().flatten().map(|p| p.name.as_str()).collect();
    for (i, name) in known.iter().enumerate() {
        if known[..i].contains(name) {
            d.error(
                &FieldPath::root().field("plugins").index(i).field("name"),
                None,
                format!("{name:?} is used twice"),
            );
        }
    }
    let mut check = |path: FieldPath, names: &[crate::value::Identifier]| {
        for (j, n) in names.iter().enumerate() {
            if !known.contains(&n.as_str()) {
                let hint = if known.is_empty() {
                    "no [[plugins]] are configured".to_owned()
                } else {
                    format!("configured plugins: {}", known.join(", "))
                };
                d.error(&path.index(j), None, format!("{:?} is not a [[plugins]] name ({hint})", n.as_str()));
            }
        }
    };
    for (i, g) in groups.iter().enumerate() {
        if let Some(g) = g {
            check(FieldPath::root().field("groups").index(i).field("plugins"), &g.plugins);
        }
    }
    for (i, s) in sites.iter().enumerate() {
        if let Some(s) = s {
            check(FieldPath::root().field("sites").index(i).field("plugins"), &s.plugins);
        }
    }
}

/// `[deploy]`: `signing_key` (a sealed secret).
fn decode_deploy(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<DeploySettings> {
    let mut t = d.table(node, path, &["signing_key"])?;
    let record = crate::keyring::RecordId::parse(DeploySettings::SIGNING_KEY_RECORD).ok();
    let signing_key = match t.get("signing_key") {
        Some((n, p)) => Some(d.secret(n, &p, record.as_ref())?),
        None => None,
    };
    t.finish(d);
    Some(DeploySettings { signing_key })
}
