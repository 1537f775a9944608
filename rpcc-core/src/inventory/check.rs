//! Cross-checks between servers, groups and sites: references exist, names are unique,
//! every site is served by at least one server.
//!
//! They read names straight from the input tree, so they still run for entries that
//! have other errors (a server with a bad `user` still counts as `edge-1`). Values that
//! do not parse are skipped here: the decoder has already reported them.

use std::collections::HashMap;

use super::decoder::{Decoder, did_you_mean};
use super::node::{Node, NodeKind};
use crate::validate::FieldPath;
use crate::value::{DomainName, Host, Identifier, Port};

fn field<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        NodeKind::Table(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    }
}

fn str_field<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    match &field(node, key)?.kind {
        NodeKind::String(s) => Some(s),
        _ => None,
    }
}

fn list<'n>(root: &'n Node, key: &str) -> &'n [Node] {
    match field(root, key).map(|n| &n.kind) {
        Some(NodeKind::Array(items)) => items,
        _ => &[],
    }
}

fn strings(node: Option<&Node>) -> Vec<Option<&str>> {
    match node.map(|n| &n.kind) {
        Some(NodeKind::Array(items)) => items
            .iter()
            .map(|n| match &n.kind {
                NodeKind::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Run every cross-check over the input tree.
pub(crate) fn cross_check(d: &mut Decoder<'_>, root: &Node) {
    let all = FieldPath::root();

    // Servers: unique names, unique host:port.
    let mut server_names: HashMap<String, usize> = HashMap::new();
    let mut unparsed_server_name = false;
    let mut endpoints: HashMap<String, usize> = HashMap::new();
    for (i, s) in list(root, "servers").iter().enumerate() {
        let path = all.field("servers").index(i);
        match str_field(s, "name").map(Identifier::parse) {
            Some(Ok(name)) => {
                if let Some(first) = server_names.get(name.as_str()) {
                    d.error(
                        &path.field("name"),
                        field(s, "name"),
                        format!("\"{name}\" is already the name of servers[{first}]"),
                    );
                } else {
                    server_names.insert(name.as_str().to_owned(), i);
                }
            }
            _ => unparsed_server_name = true,
        }
        let host = str_field(s, "host").and_then(|h| Host::parse(h).ok());
        let port = match field(s, "port").map(|n| &n.kind) {
            None => Port::new(22).ok(),
            Some(NodeKind::Integer(p)) => i64::try_from(*p).ok().and_then(|p| Port::from_i64(p).ok()),
            Some(_) => None,
        };
        if let (Some(host), Some(port)) = (host, port) {
            let endpoint = host.to_authority(port);
            if let Some(first) = endpoints.get(&endpoint) {
                d.error(
                    &path.field("host"),
                    field(s, "host"),
                    format!("\"{endpoint}\" is already used by servers[{first}]; each server needs its own host:port"),
                );
            } else {
                endpoints.insert(endpoint, i);
            }
        }
    }

    // Groups: unique names, known and distinct servers, not empty.
    let mut groups: HashMap<String, (usize, bool)> = HashMap::new();
    let mut unparsed_group_name = false;
    let known_servers: Vec<&str> = server_names.keys().map(String::as_str).collect();
    for (i, g) in list(root, "groups").iter().enumerate() {
        let path = all.field("groups").index(i);
        let members = strings(field(g, "servers"));
        let empty = matches!(field(g, "servers").map(|n| &n.kind), Some(NodeKind::Array(items)) if items.is_empty());
        match str_field(g, "name").map(Identifier::parse) {
            Some(Ok(name)) => {
                if let Some((first, _)) = groups.get(name.as_str()) {
                    d.error(
                        &path.field("name"),
                        field(g, "name"),
                        format!("\"{name}\" is already the name of groups[{first}]"),
                    );
                } else {
                    groups.insert(name.as_str().to_owned(), (i, empty));
                }
            }
            _ => unparsed_group_name = true,
        }
        if empty {
            d.error(&path.field("servers"), field(g, "servers"), "is empty; a group needs at least one server");
        }
        for (j, member) in members.iter().enumerate() {
            let Some(member) = member else { continue };
            let at = field(g, "servers");
            if members[..j].contains(&Some(member)) {
                d.error(&path.field("servers").index(j), at, format!("\"{member}\" is listed twice"));
            } else if !server_names.contains_key(*member) && !unparsed_server_name && Identifier::parse(member).is_ok()
            {
                d.error(&path.field("servers").index(j), at, unknown("server", member, &known_servers));
            }
        }
    }

    // Sites: known group with servers; every name (domain or alias) on one site only.
    let known_groups: Vec<&str> = groups.keys().map(String::as_str).collect();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, site) in list(root, "sites").iter().enumerate() {
        let path = all.field("sites").index(i);
        if let Some(group) = str_field(site, "group").filter(|g| Identifier::parse(g).is_ok()) {
            match groups.get(group) {
                Some((_, true)) => d.error(
                    &path.field("group"),
                    field(site, "group"),
                    format!("\"{group}\" has no servers, so this site would be served by none"),
                ),
                Some((_, false)) => {}
                None if !unparsed_group_name => {
                    d.error(&path.field("group"), field(site, "group"), unknown("group", group, &known_groups))
                }
                None => {}
            }
        }
        let domain = (path.field("domain"), field(site, "domain"), str_field(site, "domain"));
        let aliases = strings(field(site, "aliases"));
        let alias_items =
            aliases.iter().enumerate().map(|(j, a)| (path.field("aliases").index(j), field(site, "aliases"), *a));
        // `www = "to_www"`/`"to_apex"` makes the site answer www.<domain> too.
        let implied_www = match (str_field(site, "www"), str_field(site, "domain")) {
            (Some("to_www" | "to_apex"), Some(d)) => Some(format!("www.{d}")),
            _ => None,
        };
        let www_item = implied_www.as_deref().map(|w| (path.field("www"), field(site, "www"), Some(w)));
        let mut own: Vec<String> = Vec::new();
        for (fpath, at, raw) in std::iter::once(domain).chain(alias_items).chain(www_item) {
            let Some(name) = raw.and_then(|r| DomainName::parse(r).ok()) else { continue };
            let key = name.as_str().to_owned();
            if own.contains(&key) {
                d.error(&fpath, at, format!("\"{name}\" is listed twice for this site"));
                continue;
            }
            own.push(key.clone());
            match names.get(&key) {
                Some(other) => d.error(
                    &fpath,
                    at,
                    format!("\"{name}\" is already served by sites[{other}]; a name belongs to one site"),
                ),
                None => {
                    names.insert(key, i);
                }
            }
        }
    }
}

fn unknown(kind: &str, name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known) {
        Some(m) => format!("\"{name}\" is not a {kind} in this inventory; did you mean \"{m}\"?"),
        None if known.is_empty() => format!("\"{name}\" is not a {kind} in this inventory (it defines none)"),
        None => {
            let mut k = known.to_vec();
            k.sort_unstable();
            format!("\"{name}\" is not a {kind} in this inventory (known: {})", k.join(", "))
        }
    }
}
