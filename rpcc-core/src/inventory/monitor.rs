//! Decoding `[monitor]`.

use super::decoder::Decoder;
use super::node::Node;
use crate::keyring::RecordId;
use crate::model::{AlertRuleSettings, DnsResolver, GroupRules, MonitorSettings, NotifierKind, NotifierSettings};
use crate::validate::FieldPath;
use crate::value::{DurationValue, Identifier, ListenAddr, RedirectUrl, ValueError};

const MONITOR_FIELDS: &[&str] =
    &["interval", "timeout", "concurrency", "notifiers", "dns", "rules", "group_rules", "retention", "notify_deploys"];
const RULE_FIELDS: &[&str] = &[
    "cpu_above",
    "cpu_for",
    "memory_above",
    "memory_for",
    "disk_above",
    "cert_days",
    "site_down_checks",
    "dns_mismatch_checks",
    "metrics_down_checks",
    "clear_for",
];
const NOTIFIER_FIELDS: &[&str] = &["name", "kind", "groups", "chat_id", "token", "url", "secret", "insecure_http"];

fn chat_id(s: &str) -> Result<String, ValueError> {
    let numeric = s.strip_prefix('-').unwrap_or(s);
    let ok_numeric = !numeric.is_empty() && numeric.len() <= 20 && numeric.bytes().all(|b| b.is_ascii_digit());
    let ok_channel = s
        .strip_prefix('@')
        .is_some_and(|c| (5..=32).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if ok_numeric || ok_channel {
        Ok(s.to_owned())
    } else {
        Err(ValueError::new("is not a Telegram chat id (a number such as -1001234567890, or @channelname)"))
    }
}

fn resolver(s: &str) -> Result<DnsResolver, ValueError> {
    if s == "system" {
        return Ok(DnsResolver::System);
    }
    let listen = ListenAddr::parse(s)
        .map_err(|_| ValueError::new("must be \"system\" or a name server's ip:port (e.g. 127.0.0.1:53)"))?;
    match listen.ip() {
        Some(ip) => Ok(DnsResolver::Server(std::net::SocketAddr::new(ip, listen.port().get()))),
        None => Err(ValueError::new("must be \"system\" or a name server's ip:port (e.g. 127.0.0.1:53)")),
    }
}

pub(crate) fn decode_monitor(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<MonitorSettings> {
    let def = MonitorSettings::default();
    let mut t = d.table(node, path, MONITOR_FIELDS)?;
    let interval = t.get("interval").map_or(Some(def.interval), |(n, p)| d.parse(n, &p, DurationValue::parse));
    let timeout = t.get("timeout").map_or(Some(def.timeout), |(n, p)| d.parse(n, &p, DurationValue::parse));
    let concurrency = t.get("concurrency").map_or(Some(def.concurrency), |(n, p)| {
        d.int(n, &p, 1, 1024, "a concurrency").and_then(|v| u32::try_from(v).ok())
    });
    let notifiers = match t.get("notifiers") {
        Some((n, p)) => d.array(n, &p, decode_notifier).map(|v| v.into_iter().flatten().collect::<Vec<_>>()),
        None => Some(Vec::new()),
    };
    let dns = match t.get("dns") {
        Some((n, p)) => d.parse(n, &p, resolver).map(Some),
        None => Some(None),
    };
    let rules = match t.get("rules") {
        Some((n, p)) => decode_rules(d, n, &p),
        None => Some(AlertRuleSettings::default()),
    };
    let group_rules = match t.get("group_rules") {
        Some((n, p)) => d.array(n, &p, decode_group_rules),
        None => Some(Vec::new()),
    };
    let retention = t.get("retention").map_or(Some(def.retention), |(n, p)| {
        d.parse(n, &p, |s| {
            let v = DurationValue::parse(s)?;
            if v.as_duration() < std::time::Duration::from_secs(3600) {
                return Err(ValueError::new("must be at least 1h"));
            }
            Ok(v)
        })
    });
    let notify_deploys = t.get("notify_deploys").map_or(Some(false), |(n, p)| d.bool(n, &p));
    if let Some(list) = &notifiers {
        for (i, a) in list.iter().enumerate() {
            if list[..i].iter().any(|b: &NotifierSettings| b.name == a.name) {
                d.error(
                    &path.field("notifiers").index(i).field("name"),
                    Some(node),
                    format!("{:?} is used twice", a.name.as_str()),
                );
            }
        }
    }
    t.finish(d);
    Some(MonitorSettings {
        interval: interval?,
        timeout: timeout?,
        concurrency: concurrency?,
        notifiers: notifiers?,
        dns: dns?,
        rules: rules?,
        group_rules: group_rules?,
        retention: retention?,
        notify_deploys: notify_deploys?,
    })
}

fn decode_rules(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<AlertRuleSettings> {
    let mut t = d.table(node, path, RULE_FIELDS)?;
    let rules = rule_fields(d, &mut t);
    t.finish(d);
    rules
}

/// A `[[monitor.group_rules]]` entry: (rules, group name when valid).
fn decode_rules_with_group(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &FieldPath,
) -> Option<(AlertRuleSettings, Option<Identifier>)> {
    let mut t = d.table(node, path, GROUP_RULE_FIELDS)?;
    let group = t.require(d, "group", "the group these rules apply to").and_then(|(n, p)| {
        let g = d.parse(n, &p, Identifier::parse)?;
        if d.group_names.iter().any(|x| x == g.as_str()) {
            Some(g)
        } else {
            d.error(&p, Some(n), format!("{:?} is not a group of this inventory", g.as_str()));
            None
        }
    });
    let rules = rule_fields(d, &mut t);
    t.finish(d);
    Some((rules?, group))
}

/// An optional field: `Some(None)` when absent, `None` when present but invalid
/// (already reported).
fn optional<T>(
    d: &mut Decoder<'_>,
    t: &mut super::decoder::Table<'_>,
    key: &str,
    read: impl FnOnce(&mut Decoder<'_>, &Node, &FieldPath) -> Option<T>,
) -> Option<Option<T>> {
    match t.get(key) {
        None => Some(None),
        Some((n, p)) => read(d, n, &p).map(Some),
    }
}

fn rule_fields(d: &mut Decoder<'_>, t: &mut super::decoder::Table<'_>) -> Option<AlertRuleSettings> {
    let percent = |d: &mut Decoder<'_>, n: &Node, p: &FieldPath| {
        d.int(n, p, 1, 100, "a percentage").and_then(|v| u8::try_from(v).ok())
    };
    let count = |max: i64, what: &'static str| {
        move |d: &mut Decoder<'_>, n: &Node, p: &FieldPath| {
            d.int(n, p, 1, max, what).and_then(|v| u32::try_from(v).ok())
        }
    };
    let duration = |d: &mut Decoder<'_>, n: &Node, p: &FieldPath| d.parse(n, p, DurationValue::parse);
    // Every field is read before any `?`, so each bad one is reported.
    let cpu_above = optional(d, t, "cpu_above", percent);
    let memory_above = optional(d, t, "memory_above", percent);
    let disk_above = optional(d, t, "disk_above", percent);
    let cert_days = optional(d, t, "cert_days", count(365, "a number of days"));
    let site_down_checks = optional(d, t, "site_down_checks", count(100, "a number of checks"));
    let dns_mismatch_checks = optional(d, t, "dns_mismatch_checks", count(100, "a number of checks"));
    let metrics_down_checks = optional(d, t, "metrics_down_checks", count(100, "a number of rounds"));
    let cpu_for = optional(d, t, "cpu_for", duration);
    let memory_for = optional(d, t, "memory_for", duration);
    let clear_for = optional(d, t, "clear_for", duration);
    Some(AlertRuleSettings {
        cpu_above: cpu_above?,
        cpu_for: cpu_for?,
        memory_above: memory_above?,
        memory_for: memory_for?,
        disk_above: disk_above?,
        cert_days: cert_days?,
        site_down_checks: site_down_checks?,
        dns_mismatch_checks: dns_mismatch_checks?,
        metrics_down_checks: metrics_down_checks?,
        clear_for: clear_for?,
    })
}

const GROUP_RULE_FIELDS: &[&str] = &[
    "group",
    "cpu_above",
    "cpu_for",
    "memory_above",
    "memory_for",
    "disk_above",
    "cert_days",
    "site_down_checks",
    "dns_mismatch_checks",
    "metrics_down_checks",
    "clear_for",
];

fn decode_group_rules(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<GroupRules> {
    let (rules, group) = decode_rules_with_group(d, node, path)?;
    Some(GroupRules { group: group?, rules })
}

fn decode_notifier(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Option<NotifierSettings>> {
    let mut t = d.table(node, path, NOTIFIER_FIELDS)?;
    let name = t.require(d, "name", "a notifier name").and_then(|(n, p)| d.parse(n, &p, Identifier::parse));
    let kind = t
        .require(d, "kind", "\"telegram\" or \"webhook\"")
        .and_then(|(n, p)| d.choice(n, &p, &[("telegram", 0u8), ("webhook", 1u8)]));
    let groups = match t.get("groups") {
        Some((n, p)) => d.array(n, &p, |d, n, p| d.parse(n, p, Identifier::parse)),
        None => Some(Vec::new()),
    };
    let record = |field: &str| name.as_ref().and_then(|n| RecordId::parse(&format!("notifier/{n}/{field}")).ok());
    let decoded = match kind {
        Some(0) => {
            let chat = t.require(d, "chat_id", "the chat id").and_then(|(n, p)| d.parse(n, &p, chat_id));
            let token = t.require(d, "token", "the bot token (an rpcc:v1 envelope)").and_then(|(n, p)| {
                let r = record("token");
                d.secret(n, &p, r.as_ref())
            });
            for stray in ["url", "secret", "insecure_http"] {
                if let Some((n, p)) = t.get(stray) {
                    d.error(&p, Some(n), "only applies to kind = \"webhook\"");
                }
            }
            match (chat, token) {
                (Some(chat_id), Some(token)) => Some(NotifierKind::Telegram { chat_id, token }),
                _ => None,
            }
        }
        Some(_) => {
            let url = t.require(d, "url", "the webhook URL").and_then(|(n, p)| d.parse(n, &p, RedirectUrl::parse));
            let secret = t.require(d, "secret", "the signing secret (an rpcc:v1 envelope)").and_then(|(n, p)| {
                let r = record("secret");
                d.secret(n, &p, r.as_ref())
            });
            for stray in ["chat_id", "token"] {
                if let Some((n, p)) = t.get(stray) {
                    d.error(&p, Some(n), "only applies to kind = \"telegram\"");
                }
            }
            let insecure_http = t.get("insecure_http").map_or(Some(false), |(n, p)| d.bool(n, &p));
            if let (Some(url), Some(false)) = (&url, insecure_http)
                && url.as_str().starts_with("http://")
                && let Some((n, p)) = t.get("url")
            {
                d.error(
                    &p,
                    Some(n),
                    "is plain http://: notifications and their signatures would travel in clear; use https://, \
                     or insecure_http = true (e.g. a receiver on this host)",
                );
            }
            match (url, secret, insecure_http) {
                (Some(url), Some(secret), Some(insecure_http)) => {
                    Some(NotifierKind::Webhook { url, secret, insecure_http })
                }
                _ => None,
            }
        }
        None => None,
    };
    t.finish(d);
    Some(Some(NotifierSettings { name: name?, groups: groups?, kind: decoded? }))
}
