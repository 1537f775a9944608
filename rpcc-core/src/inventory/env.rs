//! Environments: `[env.<name>]` overlays on one inventory (its own servers, groups that
//! replace the base's of the same name, extra sites, its own `state` and `key_file`).
//! One environment is chosen at load; environments never share a state or a keyring
//! (the loader refuses two that name the same one).

use std::path::PathBuf;

use super::TableEntry;
use super::{Decoder, Node, NodeKind};
use crate::model::EnvironmentSettings;
use crate::validate::FieldPath;

const ENV_FIELDS: &[&str] = &["servers", "groups", "sites", "state", "key_file"];

/// The root to decode for environment `chosen` (the base with the overlay applied and
/// `env` removed) and the chosen environment's settings. Problems are reported to `d`;
/// `None` when no environment can be chosen.
pub(crate) fn select(
    d: &mut Decoder<'_>,
    root: &Node,
    chosen: Option<&str>,
) -> Option<(Node, Option<EnvironmentSettings>)> {
    let NodeKind::Table(entries) = &root.kind else { return Some((root.clone(), None)) };
    let env_path = FieldPath::root().field("env");
    let Some(env) = entries.iter().find(|e| e.key == "env") else {
        if let Some(name) = chosen {
            d.error(
                &env_path,
                None,
                format!("environment {name:?} was asked for, but this inventory defines no [env.*]"),
            );
            return None;
        }
        return Some((root.clone(), None));
    };
    let NodeKind::Table(envs) = &env.value.kind else {
        d.error(
            &env_path,
            Some(&env.value),
            format!("expected a table of environments ([env.<name>]), found {}", env.value.type_name()),
        );
        return None;
    };
    let mut settings: Vec<(String, EnvironmentSettings, &Node)> = Vec::new();
    for e in envs {
        let path = env_path.field(&e.key);
        if e.key.is_empty()
            || !e.key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            d.error(&path, Some(&e.value), format!("{:?} is not an environment name (a-z, 0-9, '-', '_')", e.key));
            continue;
        }
        let Some(mut t) = d.table(&e.value, &path, ENV_FIELDS) else { continue };
        let text = |d: &mut Decoder<'_>, field: &str, t: &mut super::decoder::Table<'_>| -> Option<String> {
            let (n, p) = t.get(field)?;
            match &n.kind {
                NodeKind::String(s) if !s.trim().is_empty() => Some(s.clone()),
                _ => {
                    d.error(&p, Some(n), format!("expected a non-empty string, found {}", n.type_name()));
                    None
                }
            }
        };
        let state = text(d, "state", &mut t);
        let key_file = text(d, "key_file", &mut t).map(PathBuf::from);
        for list in ["servers", "groups", "sites"] {
            if let Some((n, p)) = t.get(list)
                && !matches!(n.kind, NodeKind::Array(_))
            {
                d.error(
                    &p,
                    Some(n),
                    format!("expected an array of tables ([[env.{}.{list}]]), found {}", e.key, n.type_name()),
                );
            }
        }
        t.finish(d);
        settings.push((e.key.clone(), EnvironmentSettings { name: e.key.clone(), state, key_file }, &e.value));
    }
    // Environments never share a state or a keyring.
    for (i, (name, s, node)) in settings.iter().enumerate() {
        for (other, o, _) in &settings[..i] {
            if s.state.is_some() && s.state == o.state {
                d.error(
                    &env_path.field(name).field("state"),
                    Some(node),
                    format!("the same state as env.{other}: environments never share a state"),
                );
            }
            if s.key_file.is_some() && s.key_file == o.key_file {
                d.error(
                    &env_path.field(name).field("key_file"),
                    Some(node),
                    format!("the same keyring as env.{other}: environments never share keys"),
                );
            }
        }
    }
    let names: Vec<&str> = settings.iter().map(|(n, _, _)| n.as_str()).collect();
    let Some(name) = chosen else {
        d.error(
            &env_path,
            None,
            format!(
                "this inventory defines environments ({}); choose one with --env NAME (or RPCC_ENV)",
                names.join(", ")
            ),
        );
        return None;
    };
    let Some((_, chosen_settings, overlay)) = settings.iter().find(|(n, _, _)| n == name) else {
        d.error(&env_path, None, format!("no environment {name:?}; defined: {}", names.join(", ")));
        return None;
    };
    Some((overlaid(entries, overlay), Some(chosen_settings.clone())))
}

/// The base entries (without `env`) with `overlay`'s servers and sites appended and its
/// groups replacing the base's groups of the same name.
fn overlaid(base: &[TableEntry], overlay: &Node) -> Node {
    let extra = |key: &str| -> Vec<Node> {
        match &overlay.kind {
            NodeKind::Table(t) => match t.iter().find(|e| e.key == key).map(|e| &e.value.kind) {
                Some(NodeKind::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    let name_of = |n: &Node| match &n.kind {
        NodeKind::Table(t) => t.iter().find(|e| e.key == "name").and_then(|e| match &e.value.kind {
            NodeKind::String(s) => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    };
    let mut out: Vec<TableEntry> = base.iter().filter(|e| e.key != "env").cloned().collect();
    for key in ["servers", "groups", "sites"] {
        let added = extra(key);
        if added.is_empty() {
            continue;
        }
        let replaced: Vec<String> =
            if key == "groups" { added.iter().filter_map(name_of).collect() } else { Vec::new() };
        match out.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                if let NodeKind::Array(items) = &mut entry.value.kind {
                    items.retain(|n| name_of(n).is_none_or(|g| !replaced.contains(&g)));
                    items.extend(added);
                }
            }
            None => {
                out.push(TableEntry { key: key.to_owned(), key_span: None, value: Node::new(NodeKind::Array(added)) })
            }
        }
    }
    Node { kind: NodeKind::Table(out), span: None }
}
