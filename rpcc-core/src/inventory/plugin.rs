//! Decoding `[[plugins]]`.

use super::decoder::Decoder;
use super::node::{Node, NodeKind};
use crate::fragment::FragmentPolicy;
use crate::model::{PluginCapability, PluginLimits, PluginSettings};
use crate::validate::FieldPath;
use crate::value::{DurationValue, Identifier, Size, ValueError};

const PLUGIN_FIELDS: &[&str] =
    &["name", "path", "sha256", "grant", "allow_directives", "allow_proxy_hosts", "limits", "config"];
const LIMIT_FIELDS: &[&str] = &["fuel", "memory", "timeout", "max_output"];

fn plugin_path(s: &str) -> Result<String, ValueError> {
    if s.is_empty() || s.len() > 4096 || s.contains('\0') {
        return Err(ValueError::new("must be the path of a .wasm file"));
    }
    if !s.ends_with(".wasm") {
        return Err(ValueError::new("must name a .wasm component file"));
    }
    Ok(s.to_owned())
}

fn sha256(s: &str) -> Result<String, ValueError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ValueError::new("must be 64 hexadecimal digits (sha256sum of the .wasm file)"))
    }
}

fn config_value(s: &str) -> Result<String, ValueError> {
    if s.len() > 4096 {
        return Err(ValueError::new("is longer than 4096 bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(ValueError::new("contains a control character"));
    }
    Ok(s.to_owned())
}

pub(crate) fn decode_plugin(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<PluginSettings> {
    let mut t = d.table(node, path, PLUGIN_FIELDS)?;
    let name = t.require(d, "name", "a plugin name").and_then(|(n, p)| d.parse(n, &p, Identifier::parse));
    let file = t.require(d, "path", "the plugin's .wasm file").and_then(|(n, p)| d.parse(n, &p, plugin_path));
    let digest = match t.get("sha256") {
        Some((n, p)) => d.parse(n, &p, sha256).map(Some),
        None => Some(None),
    };
    let grant = match t.get("grant") {
        Some((n, p)) => d.array(n, &p, |d, n, p| {
            d.choice(n, p, &[("http-get", PluginCapability::HttpGet), ("clock", PluginCapability::Clock)])
        }),
        None => Some(Vec::new()),
    };
    let allow = match t.get("allow_directives") {
        Some((n, p)) => {
            // Each name on its own first, so an error names its element (…allow_directives[2]).
            let names = d.array(n, &p, |d, n, p| {
                let name = d.string(n, p)?;
                match FragmentPolicy::new([name]) {
                    Ok(_) => Some(name.to_owned()),
                    Err(e) => {
                        d.error(p, Some(n), e.to_string());
                        None
                    }
                }
            });
            names.and_then(|names| match FragmentPolicy::new(&names) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    d.error(&p, Some(n), e.to_string());
                    None
                }
            })
        }
        None => Some(FragmentPolicy::default_set()),
    };
    let allow = match (allow, t.get("allow_proxy_hosts")) {
        (Some(policy), Some((n, p))) => {
            let hosts = d.array(n, &p, |d, n, p| {
                let host = d.string(n, p)?;
                match FragmentPolicy::default_set().with_proxy_hosts([host]) {
                    Ok(_) => Some(host.to_owned()),
                    Err(e) => {
                        d.error(p, Some(n), e.to_string());
                        None
                    }
                }
            });
            hosts.and_then(|hosts| policy.with_proxy_hosts(&hosts).ok())
        }
        (allow, _) => allow,
    };
    let limits = match t.get("limits") {
        Some((n, p)) => decode_limits(d, n, &p),
        None => Some(PluginLimits::default()),
    };
    let config = match t.get("config") {
        Some((n, p)) => match &n.kind {
            NodeKind::Table(entries) => {
                let mut out = Vec::new();
                let mut ok = true;
                for e in entries {
                    let vp = p.field(&e.key);
                    match d.parse(&e.value, &vp, config_value) {
                        Some(v) => out.push((e.key.clone(), v)),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            _ => {
                d.error(&p, Some(n), format!("expected a table of strings, found {}", n.type_name()));
                None
            }
        },
        None => Some(Vec::new()),
    };
    t.finish(d);
    Some(PluginSettings {
        name: name?,
        path: file?,
        sha256: digest?,
        grant: grant?,
        allow_directives: allow?,
        limits: limits?,
        config: config?,
    })
}

fn decode_limits(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<PluginLimits> {
    let def = PluginLimits::default();
    let mut t = d.table(node, path, LIMIT_FIELDS)?;
    let fuel = t.get("fuel").map_or(Some(def.fuel), |(n, p)| {
        d.int(n, &p, 10_000, 100_000_000_000, "an instruction budget").and_then(|v| u64::try_from(v).ok())
    });
    let memory = t.get("memory").map_or(Some(def.memory), |(n, p)| {
        d.parse(n, &p, |s| {
            let size = Size::parse(s)?;
            if !(1 << 20..=1 << 30).contains(&size.bytes()) {
                return Err(ValueError::new("must be between 1m and 1g"));
            }
            Ok(size)
        })
    });
    let timeout = t.get("timeout").map_or(Some(def.timeout), |(n, p)| {
        d.parse(n, &p, |s| {
            let v = DurationValue::parse(s)?;
            if v.as_duration() > std::time::Duration::from_secs(60) {
                return Err(ValueError::new("must be at most 60s"));
            }
            Ok(v)
        })
    });
    let max_output = t.get("max_output").map_or(Some(def.max_output), |(n, p)| {
        d.parse(n, &p, |s| {
            let size = Size::parse(s)?;
            if !(1 << 10..=64 << 20).contains(&size.bytes()) {
                return Err(ValueError::new("must be between 1k and 64m"));
            }
            Ok(size)
        })
    });
    t.finish(d);
    Some(PluginLimits { fuel: fuel?, memory: memory?, timeout: timeout?, max_output: max_output? })
}
