//! The whole desired state, cross-checked.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::inventory::{Decoder, Node, NodeKind, TOP_LEVEL, cross_check, decode_group, decode_server, decode_site};
use crate::model::{DomainGroup, Server, Site};
use crate::validate::{FieldPath, Location, ValidationErrors};

/// The desired state of a fleet: servers, groups and sites, validated and cross-checked.
///
/// ```
/// use rpcc_core::model::Inventory;
///
/// let inv = Inventory::from_toml_str(r#"
///     [[servers]]
///     name = "edge-1"
///     host = "203.0.113.10"
///     user = "deploy"
///     auth = { agent = true }
///
///     [[groups]]
///     name = "eu"
///     servers = ["edge-1"]
///
///     [[sites]]
///     domain = "app.example.com"
///     group = "eu"
///     upstream = { backends = ["10.0.0.5:8080"] }
/// "#).unwrap();
/// assert_eq!(inv.sites_for_server("edge-1").count(), 1);
///
/// let err = Inventory::from_toml_str("[[sites]]\ndomain = \"bad;name\"\n").unwrap_err();
/// assert!(err.to_string().contains("sites[0].domain"));
/// ```
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Inventory {
    /// Servers, in input order.
    pub servers: Vec<Server>,
    /// Groups, in input order.
    pub groups: Vec<DomainGroup>,
    /// Sites, in input order.
    pub sites: Vec<Site>,
    /// Directory that relative paths (key files) are resolved against.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl Inventory {
    /// Parse and validate TOML text. Every problem is reported, each with its path and
    /// line/column.
    pub fn from_toml_str(source: &str) -> Result<Self, Error> {
        let node = Node::from_toml(source).map_err(|e| Error::Syntax {
            message: e.message,
            location: e.span.map(|s| Location::of_offset(source, s.start)),
        })?;
        Self::decode(&node, Some(source)).map_err(Error::Invalid)
    }

    /// Read, parse and validate a TOML file; relative key paths resolve against its
    /// directory.
    pub fn from_toml_file(path: &Path) -> Result<Self, Error> {
        let source =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let mut inv = Self::from_toml_str(&source)?;
        inv.base_dir = path.parent().map(Path::to_path_buf);
        Ok(inv)
    }

    /// Validate a tree from any source (JSON, Python dicts via serde). Errors carry
    /// paths but no line numbers.
    pub fn from_node(node: &Node) -> Result<Self, ValidationErrors> {
        Self::decode(node, None)
    }

    fn decode(root: &Node, source: Option<&str>) -> Result<Self, ValidationErrors> {
        let mut d = Decoder::new(source);
        let top = FieldPath::root();
        let mut servers = Vec::new();
        let mut groups = Vec::new();
        let mut sites = Vec::new();
        if let Some(mut t) = d.table(root, &top, TOP_LEVEL) {
            if let Some((n, p)) = t.get("servers") {
                servers = each(&mut d, n, &p, decode_server);
            }
            if let Some((n, p)) = t.get("groups") {
                groups = each(&mut d, n, &p, decode_group);
            }
            if let Some((n, p)) = t.get("sites") {
                sites = each(&mut d, n, &p, decode_site);
            }
            t.finish(&mut d);
        }
        cross_check(&mut d, root);
        if let Some(errors) = ValidationErrors::from_vec(d.into_errors()) {
            return Err(errors);
        }
        Ok(Self {
            servers: servers.into_iter().flatten().collect(),
            groups: groups.into_iter().flatten().collect(),
            sites: sites.into_iter().flatten().collect(),
            base_dir: None,
        })
    }

    /// The server with this name.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name.as_str() == name)
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&DomainGroup> {
        self.groups.iter().find(|g| g.name.as_str() == name)
    }

    /// Groups a server belongs to.
    pub fn groups_of_server<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a DomainGroup> + 'a {
        self.groups.iter().filter(move |g| g.servers.iter().any(|s| s.as_str() == server))
    }

    /// Every site a server serves (through any of its groups), in inventory order.
    pub fn sites_for_server<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a Site> + 'a {
        self.sites.iter().filter(move |site| {
            self.group(site.group.as_str()).is_some_and(|g| g.servers.iter().any(|s| s.as_str() == server))
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
