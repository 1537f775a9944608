//! Decoding the parts of a `[[sites]]` entry: locations, rate limits, redirects, limits,
//! proxy timeouts, security headers and extra headers.

use super::decoder::Decoder;
use super::node::{Node, NodeKind};
use super::site::{
    LIMIT_FIELDS, LOCATION_FIELDS, MAX_HEADERS, RATE_FIELDS, REDIRECT_FIELDS, SECURITY_FIELDS, TIMEOUT_FIELDS,
    decode_upstream, dur,
};
use crate::model::{
    Limits, Location, LocationMatch, ProxyTimeouts, RateLimit, Redirect, RedirectCode, SecurityHeaders,
};
use crate::validate::FieldPath;
use crate::value::{
    ContentSecurityPolicy, DurationValue, HeaderName, HeaderValue, PermissionsPolicy, Rate, RedirectUrl, Size, UrlPath,
};

/// True when the table node sets `key = true` explicitly.
pub(super) fn t_has_true(node: &Node, key: &str) -> bool {
    matches!(&node.kind, NodeKind::Table(entries) if entries.iter().any(|e| e.key == key && e.value.kind == NodeKind::Bool(true)))
}

pub(super) fn decode_location(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Location> {
    let mut t = d.table(node, path, LOCATION_FIELDS)?;
    let lpath = t.require(d, "path", "a URL path such as /api/").and_then(|(n, p)| d.parse(n, &p, UrlPath::parse));
    let matching = opt!(t, d, "match", LocationMatch::Prefix, |n, p| d.choice(
        n,
        &p,
        &[("prefix", LocationMatch::Prefix), ("exact", LocationMatch::Exact)]
    ));
    let upstream = match t.get("upstream") {
        Some((n, p)) => decode_upstream(d, n, &p).map(Some),
        None => Some(None),
    };
    let websocket = match t.get("websocket") {
        Some((n, p)) => d.bool(n, &p).map(Some),
        None => Some(None),
    };
    let rate_limit = match t.get("rate_limit") {
        Some((n, p)) => decode_rate_limit(d, n, &p).map(Some),
        None => Some(None),
    };
    let body_size = match t.get("body_size") {
        Some((n, p)) => d.parse(n, &p, Size::parse).map(Some),
        None => Some(None),
    };
    t.finish(d);
    Some(Location {
        path: lpath?,
        matching: matching?,
        upstream: upstream?,
        websocket: websocket?,
        rate_limit: rate_limit?,
        body_size: body_size?,
    })
}

pub(super) fn decode_rate_limit(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<RateLimit> {
    let mut t = d.table(node, path, RATE_FIELDS)?;
    let rate = t.require(d, "rate", "a rate such as \"10r/s\"").and_then(|(n, p)| d.parse(n, &p, Rate::parse));
    let burst =
        opt!(t, d, "burst", 0, |n, p| d.int(n, &p, 0, 100_000, "a burst size").and_then(|v| u32::try_from(v).ok()));
    let nodelay = opt!(t, d, "nodelay", false, |n, p| d.bool(n, &p));
    t.finish(d);
    Some(RateLimit { rate: rate?, burst: burst?, nodelay: nodelay? })
}

pub(super) fn decode_redirect(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Redirect> {
    let mut t = d.table(node, path, REDIRECT_FIELDS)?;
    let from = t.require(d, "from", "a source path").and_then(|(n, p)| d.parse(n, &p, UrlPath::parse));
    let to = t.require(d, "to", "a target URL").and_then(|(n, p)| d.parse(n, &p, RedirectUrl::parse));
    let code =
        opt!(t, d, "code", RedirectCode::MovedPermanently, |n, p| match d.int(n, &p, 300, 399, "a redirect status") {
            Some(301) => Some(RedirectCode::MovedPermanently),
            Some(302) => Some(RedirectCode::Found),
            Some(307) => Some(RedirectCode::Temporary),
            Some(308) => Some(RedirectCode::Permanent),
            Some(other) => {
                d.error(&p, Some(n), format!("{other} is not a redirect status rpcc emits (301, 302, 307, 308)"));
                None
            }
            None => None,
        });
    t.finish(d);
    Some(Redirect { from: from?, to: to?, code: code? })
}

pub(super) fn decode_limits(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Limits> {
    let mut t = d.table(node, path, LIMIT_FIELDS)?;
    let body_size = match t.get("body_size") {
        Some((n, p)) => d.parse(n, &p, Size::parse),
        None => Size::parse("10m").ok(),
    };
    let rate = match t.get("rate_limit") {
        Some((n, p)) => decode_rate_limit(d, n, &p).map(Some),
        None => Some(None),
    };
    let connections = match t.get("connections") {
        Some((n, p)) => d.int(n, &p, 1, 100_000, "a connection limit").and_then(|v| u32::try_from(v).ok()).map(Some),
        None => Some(None),
    };
    t.finish(d);
    Some(Limits { body_size: body_size?, rate: rate?, connections: connections? })
}

pub(super) fn default_timeouts() -> ProxyTimeouts {
    ProxyTimeouts { connect: dur(5), read: dur(60), send: dur(60) }
}

pub(super) fn decode_timeouts(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<ProxyTimeouts> {
    let def = default_timeouts();
    let mut t = d.table(node, path, TIMEOUT_FIELDS)?;
    let connect = opt!(t, d, "connect", def.connect, |n, p| d.parse(n, &p, DurationValue::parse));
    let read = opt!(t, d, "read", def.read, |n, p| d.parse(n, &p, DurationValue::parse));
    let send = opt!(t, d, "send", def.send, |n, p| d.parse(n, &p, DurationValue::parse));
    t.finish(d);
    Some(ProxyTimeouts { connect: connect?, read: read?, send: send? })
}

pub(super) fn default_security() -> SecurityHeaders {
    SecurityHeaders {
        frame_options: Some(HeaderValue::from_static("SAMEORIGIN")),
        referrer_policy: HeaderValue::from_static("strict-origin-when-cross-origin"),
        csp: None,
        permissions_policy: None,
    }
}

pub(super) fn decode_security(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<SecurityHeaders> {
    let def = default_security();
    let mut t = d.table(node, path, SECURITY_FIELDS)?;
    let frame_options = opt!(t, d, "frame_options", def.frame_options.clone(), |n, p| d
        .choice(n, &p, &[("DENY", Some("DENY")), ("SAMEORIGIN", Some("SAMEORIGIN")), ("none", None)])
        .map(|v| v.and_then(|s| HeaderValue::parse(s).ok())));
    const POLICIES: &[(&str, &str)] = &[
        ("no-referrer", "no-referrer"),
        ("no-referrer-when-downgrade", "no-referrer-when-downgrade"),
        ("origin", "origin"),
        ("origin-when-cross-origin", "origin-when-cross-origin"),
        ("same-origin", "same-origin"),
        ("strict-origin", "strict-origin"),
        ("strict-origin-when-cross-origin", "strict-origin-when-cross-origin"),
    ];
    let referrer_policy = opt!(t, d, "referrer_policy", def.referrer_policy.clone(), |n, p| d
        .choice(n, &p, POLICIES)
        .and_then(|s| HeaderValue::parse(s).ok()));
    let csp = match t.get("csp") {
        Some((n, p)) => d.parse(n, &p, ContentSecurityPolicy::parse).map(Some),
        None => Some(None),
    };
    let permissions_policy = match t.get("permissions_policy") {
        Some((n, p)) => d.parse(n, &p, PermissionsPolicy::parse).map(Some),
        None => Some(None),
    };
    t.finish(d);
    Some(SecurityHeaders {
        frame_options: frame_options?,
        referrer_policy: referrer_policy?,
        csp: csp?,
        permissions_policy: permissions_policy?,
    })
}

/// Headers that rpcc sets itself; setting them here would duplicate or weaken them.
const RESERVED_HEADERS: &[&str] = &[
    "strict-transport-security",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "content-security-policy",
    "permissions-policy",
];

pub(super) fn decode_headers(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &FieldPath,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let NodeKind::Table(entries) = &node.kind else {
        d.error(
            path,
            Some(node),
            format!("expected a table of \"Header-Name\" = \"value\", found {}", node.type_name()),
        );
        return None;
    };
    if entries.len() > MAX_HEADERS {
        d.error(path, Some(node), format!("has {} entries; at most {MAX_HEADERS} are allowed per site", entries.len()));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for e in entries {
        let p = path.field(&e.key);
        let name = match HeaderName::parse(&e.key) {
            Ok(n) => Some(n),
            Err(err) => {
                d.error_at(&p, e.key_span.as_ref(), format!("{} {err}", crate::validate::quote_value(&e.key)));
                None
            }
        };
        if name.as_ref().is_some_and(|n| RESERVED_HEADERS.contains(&n.as_str().to_ascii_lowercase().as_str())) {
            d.error(&p, Some(&e.value), "is set by rpcc from the tls/security settings; configure it there");
            ok = false;
            continue;
        }
        let value = d.parse(&e.value, &p, HeaderValue::parse);
        match (name, value) {
            (Some(n), Some(v)) => out.push((n, v)),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}
