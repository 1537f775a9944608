//! Decoding `[[sites]]`: upstreams, TLS, locations, redirects, limits, headers.

use super::decoder::Decoder;
use super::node::{Node, NodeKind};
use super::site_parts::{
    decode_headers, decode_limits, decode_location, decode_redirect, decode_security, decode_timeouts,
    default_security, default_timeouts, t_has_true,
};
use crate::model::{
    BackendSpec, Balance, CertificateClient, HashKey, Limits, ProbeExpectation, Site, TlsMode, TlsPolicy, Upstream,
    UpstreamScheme, WwwRedirect,
};
use crate::validate::FieldPath;
use crate::value::{Backend, DomainName, DurationValue, Identifier, RedirectUrl, RemotePath, Size, UrlPath};

const SITE_FIELDS: &[&str] = &[
    "domain",
    "aliases",
    "group",
    "upstream",
    "redirect_to",
    "tls",
    "websocket",
    "http2",
    "www",
    "locations",
    "redirects",
    "limits",
    "timeouts",
    "security",
    "headers",
    "gzip",
    "static_cache",
    "buffering",
    "health_path",
    "probe",
    "maintenance",
    "plugins",
];
const UPSTREAM_FIELDS: &[&str] =
    &["backends", "balance", "hash_key", "keepalive", "max_fails", "fail_timeout", "scheme"];
const BACKEND_FIELDS: &[&str] = &["address", "weight", "backup", "max_fails", "fail_timeout"];
const TLS_FIELDS: &[&str] =
    &["mode", "cert", "key", "redirect_http", "hsts", "hsts_preload", "ocsp_stapling", "client"];
pub(super) const LOCATION_FIELDS: &[&str] = &["path", "match", "upstream", "websocket", "rate_limit", "body_size"];
pub(super) const RATE_FIELDS: &[&str] = &["rate", "burst", "nodelay"];
pub(super) const REDIRECT_FIELDS: &[&str] = &["from", "to", "code"];
pub(super) const LIMIT_FIELDS: &[&str] = &["body_size", "rate_limit", "connections"];
pub(super) const TIMEOUT_FIELDS: &[&str] = &["connect", "read", "send"];
pub(super) const SECURITY_FIELDS: &[&str] = &["frame_options", "referrer_policy", "csp", "permissions_policy"];

/// Read an optional field with a decoder, falling back to a default.
/// Per-site limits: far above any real site, low enough that rendering and the checks
/// between entries stay cheap whatever an inventory (or a Python caller) hands in.
pub const MAX_ALIASES: usize = 256;
/// At most this many `locations` per site.
pub const MAX_LOCATIONS: usize = 256;
/// At most this many `redirects` per site.
pub const MAX_REDIRECTS: usize = 2048;
/// At most this many `headers` per site.
pub const MAX_HEADERS: usize = 64;

pub(super) fn dur(secs: u64) -> DurationValue {
    DurationValue::secs(secs)
}

pub(crate) fn decode_site(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Site> {
    let mut t = d.table(node, path, SITE_FIELDS)?;
    let domain = t.require(d, "domain", "the site's domain name").and_then(|(n, p)| {
        let v = d.parse(n, &p, DomainName::parse)?;
        if v.is_wildcard() {
            d.error(
                &p,
                Some(n),
                format!("\"{v}\" is a wildcard; the primary domain must be a plain name (put wildcards in aliases)"),
            );
            return None;
        }
        Some(v)
    });
    let aliases = opt!(t, d, "aliases", Vec::new(), |n, p| d.bounded_array(n, &p, MAX_ALIASES, |d, n, p| d.parse(
        n,
        p,
        DomainName::parse
    )));
    let group = t
        .require(d, "group", "the name of the group that serves this site")
        .and_then(|(n, p)| d.parse(n, &p, Identifier::parse));
    let upstream = match t.get("upstream") {
        Some((n, p)) => decode_upstream(d, n, &p).map(Some),
        None => Some(None),
    };
    let redirect_to = match t.get("redirect_to") {
        Some((n, p)) => d.parse(n, &p, RedirectUrl::parse).map(Some),
        None => Some(None),
    };
    if !t.has("upstream") && !t.has("redirect_to") {
        d.error(
            &path.field("upstream"),
            Some(node),
            "is missing; a site needs upstream = { backends = [\"host:port\"] } or redirect_to = \"https://…\"",
        );
    }
    if t.has("upstream") && t.has("redirect_to") {
        d.error(
            &path.field("redirect_to"),
            Some(node),
            "cannot be combined with upstream; a site either proxies or redirects",
        );
    }
    let tls = match t.get("tls") {
        Some((n, p)) => decode_tls(d, n, &p),
        None => Some(default_tls(TlsMode::Acme)),
    };
    let websocket = opt!(t, d, "websocket", false, |n, p| d.bool(n, &p));
    let http2 = opt!(t, d, "http2", true, |n, p| d.bool(n, &p));
    let www = opt!(t, d, "www", WwwRedirect::None, |n, p| d.choice(
        n,
        &p,
        &[("none", WwwRedirect::None), ("to_apex", WwwRedirect::ToApex), ("to_www", WwwRedirect::ToWww)]
    ));
    let locations = opt!(t, d, "locations", Vec::new(), |n, p| d.bounded_array(n, &p, MAX_LOCATIONS, decode_location));
    let redirects = opt!(t, d, "redirects", Vec::new(), |n, p| d.bounded_array(n, &p, MAX_REDIRECTS, decode_redirect));
    let limits = match t.get("limits") {
        Some((n, p)) => decode_limits(d, n, &p),
        None => Size::parse("10m").ok().map(|body_size| Limits { body_size, rate: None, connections: None }),
    };
    let timeouts = match t.get("timeouts") {
        Some((n, p)) => decode_timeouts(d, n, &p),
        None => Some(default_timeouts()),
    };
    let security = match t.get("security") {
        Some((n, p)) => decode_security(d, n, &p),
        None => Some(default_security()),
    };
    let headers = opt!(t, d, "headers", Vec::new(), |n, p| decode_headers(d, n, &p));
    let gzip = opt!(t, d, "gzip", true, |n, p| d.bool(n, &p));
    let static_cache = match t.get("static_cache") {
        Some((n, p)) => d.parse(n, &p, DurationValue::parse).map(Some),
        None => Some(None),
    };
    let buffering = opt!(t, d, "buffering", true, |n, p| d.bool(n, &p));
    let health_path = match t.get("health_path") {
        Some((n, p)) => d.parse(n, &p, UrlPath::parse).map(Some),
        None => Some(None),
    };
    let probe = match t.get("probe") {
        Some((n, p)) => super::probe::decode_probe(d, n, &p),
        None => Some(ProbeExpectation::default()),
    };
    let maintenance = opt!(t, d, "maintenance", false, |n, p| d.bool(n, &p));
    let plugins = super::server::plugin_names(d, &mut t);
    t.finish(d);

    let site = Site {
        domain: domain?,
        aliases: aliases?,
        group: group?,
        upstream: upstream?,
        redirect_to: redirect_to?,
        tls: tls?,
        websocket: websocket?,
        http2: http2?,
        www: www?,
        locations: locations?,
        redirects: redirects?,
        limits: limits?,
        timeouts: timeouts?,
        security: security?,
        headers: headers?,
        gzip: gzip?,
        static_cache: static_cache?,
        buffering: buffering?,
        health_path: health_path?,
        probe: probe?,
        maintenance: maintenance?,
        plugins: plugins?,
    };
    check_site(d, &site, node, path);
    Some(site)
}

/// Rules that involve several fields of one site.
fn check_site(d: &mut Decoder<'_>, site: &Site, node: &Node, path: &FieldPath) {
    if site.tls.mode == TlsMode::Acme
        && let Some(w) = site.aliases.iter().find(|a| a.is_wildcard())
    {
        d.error(
            &path.field("tls").field("mode"),
            Some(node),
            format!("\"acme\" issues over HTTP-01, which cannot validate the wildcard alias \"{w}\"; use mode = \"custom\" with a certificate from a DNS-01 client"),
        );
    }
    if site.www != WwwRedirect::None && site.domain.as_str().starts_with("www.") {
        d.error(
            &path.field("www"),
            Some(node),
            "needs the apex name as the site's domain (e.g. example.com, not www.example.com)",
        );
    }
    if !site.tls.enabled() {
        for (flag, set) in [
            ("hsts", site.tls.hsts),
            ("hsts_preload", site.tls.hsts_preload),
            ("ocsp_stapling", site.tls.ocsp_stapling),
        ] {
            if set {
                d.error(
                    &path.field("tls").field(flag),
                    Some(node),
                    "needs TLS; it cannot be set with tls.mode = \"off\"",
                );
            }
        }
    }
    // Duplicate checks in linear time (sets), on lists already bounded per site.
    let mut seen = std::collections::HashSet::new();
    for (i, loc) in site.locations.iter().enumerate() {
        if !seen.insert((loc.path.as_str(), loc.matching)) {
            d.error(
                &path.field("locations").index(i).field("path"),
                Some(node),
                format!("\"{}\" is defined twice", loc.path),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, r) in site.redirects.iter().enumerate() {
        if !seen.insert(&r.from) {
            d.error(
                &path.field("redirects").index(i).field("from"),
                Some(node),
                format!("\"{}\" is redirected twice", r.from),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &site.headers {
        if !seen.insert(name.as_str().to_ascii_lowercase()) {
            d.error(
                &path.field("headers").field(name.as_str()),
                Some(node),
                "is set twice (header names are case-insensitive)",
            );
        }
    }
}

pub(super) fn decode_upstream(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Upstream> {
    let mut t = d.table(node, path, UPSTREAM_FIELDS)?;
    let backends = t.require(d, "backends", "a list of backends (\"host:port\")").and_then(|(n, p)| {
        let list = d.array(n, &p, decode_backend)?;
        if list.is_empty() {
            d.error(&p, Some(n), "is empty; at least one backend (\"host:port\") is required");
            return None;
        }
        for (i, b) in list.iter().enumerate() {
            if list[..i].iter().any(|o| o.address == b.address) {
                d.error(&p.index(i), Some(n), format!("\"{}\" is listed twice", b.address));
            }
        }
        if list.iter().all(|b| b.backup) {
            d.error(&p, Some(n), "has only backup backends; at least one must be a primary");
        }
        Some(list)
    });
    let balance_kind = opt!(t, d, "balance", "round_robin", |n, p| d.choice(
        n,
        &p,
        &[("round_robin", "round_robin"), ("least_conn", "least_conn"), ("ip_hash", "ip_hash"), ("hash", "hash")]
    ));
    let hash_key = match t.get("hash_key") {
        Some((n, p)) => d
            .choice(
                n,
                &p,
                &[
                    ("request_uri", HashKey::RequestUri),
                    ("remote_addr", HashKey::RemoteAddr),
                    ("host", HashKey::Host),
                    ("uri", HashKey::Uri),
                ],
            )
            .map(Some),
        None => Some(None),
    };
    let keepalive = opt!(t, d, "keepalive", 16, |n, p| d
        .int(n, &p, 0, 10_000, "a keepalive pool size")
        .and_then(|v| u32::try_from(v).ok()));
    let max_fails =
        opt!(t, d, "max_fails", 3, |n, p| d.int(n, &p, 0, 1000, "a failure count").and_then(|v| u32::try_from(v).ok()));
    let fail_timeout = opt!(t, d, "fail_timeout", dur(10), |n, p| d.parse(n, &p, DurationValue::parse));
    let scheme = opt!(t, d, "scheme", UpstreamScheme::Http, |n, p| d.choice(
        n,
        &p,
        &[("http", UpstreamScheme::Http), ("https", UpstreamScheme::Https)]
    ));
    t.finish(d);

    let balance = match (balance_kind?, hash_key?) {
        ("hash", Some(k)) => Balance::Hash(k),
        ("hash", None) => {
            d.error(
                &path.field("hash_key"),
                Some(node),
                "is missing; balance = \"hash\" needs hash_key (request_uri, remote_addr, host or uri)",
            );
            return None;
        }
        (_, Some(_)) => {
            d.error(&path.field("hash_key"), Some(node), "only applies with balance = \"hash\"");
            return None;
        }
        ("least_conn", None) => Balance::LeastConn,
        ("ip_hash", None) => Balance::IpHash,
        _ => Balance::RoundRobin,
    };
    let backends = backends?;
    if matches!(balance, Balance::Hash(_) | Balance::IpHash)
        && let Some(i) = backends.iter().position(|b| b.backup)
    {
        d.error(
            &path.field("backends").index(i).field("backup"),
            Some(node),
            "cannot be used with hash or ip_hash balancing (nginx refuses it)",
        );
        return None;
    }
    Some(Upstream {
        backends,
        balance,
        keepalive: keepalive?,
        max_fails: max_fails?,
        fail_timeout: fail_timeout?,
        scheme: scheme?,
    })
}

fn decode_backend(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<BackendSpec> {
    if let NodeKind::String(_) = node.kind {
        return d.parse(node, path, Backend::parse).map(BackendSpec::new);
    }
    let mut t = d.table(node, path, BACKEND_FIELDS)?;
    let address = t.require(d, "address", "\"host:port\"").and_then(|(n, p)| d.parse(n, &p, Backend::parse));
    let weight = opt!(t, d, "weight", 1, |n, p| d.int(n, &p, 1, 100, "a weight").and_then(|v| u32::try_from(v).ok()));
    let backup = opt!(t, d, "backup", false, |n, p| d.bool(n, &p));
    let max_fails = match t.get("max_fails") {
        Some((n, p)) => d.int(n, &p, 0, 1000, "a failure count").and_then(|v| u32::try_from(v).ok()).map(Some),
        None => Some(None),
    };
    let fail_timeout = match t.get("fail_timeout") {
        Some((n, p)) => d.parse(n, &p, DurationValue::parse).map(Some),
        None => Some(None),
    };
    t.finish(d);
    Some(BackendSpec {
        address: address?,
        weight: weight?,
        backup: backup?,
        max_fails: max_fails?,
        fail_timeout: fail_timeout?,
    })
}

fn default_tls(mode: TlsMode) -> TlsPolicy {
    let on = !matches!(mode, TlsMode::Off);
    TlsPolicy {
        mode,
        redirect_http: on,
        hsts: on,
        hsts_preload: false,
        ocsp_stapling: false,
        client: CertificateClient::Rpcc,
    }
}

fn decode_tls(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<TlsPolicy> {
    #[derive(Clone, Copy)]
    enum Kind {
        Acme,
        Custom,
        SelfSigned,
        Off,
    }
    let mut t = d.table(node, path, TLS_FIELDS)?;
    let kind = t.require(d, "mode", "one of acme, custom, self_signed, off").and_then(|(n, p)| {
        d.choice(
            n,
            &p,
            &[("acme", Kind::Acme), ("custom", Kind::Custom), ("self_signed", Kind::SelfSigned), ("off", Kind::Off)],
        )
    });
    let cert = t.get("cert").map(|(n, p)| d.parse(n, &p, RemotePath::parse));
    let key = t.get("key").map(|(n, p)| d.parse(n, &p, RemotePath::parse));
    let mode = match kind {
        Some(Kind::Custom) => {
            if cert.is_none() {
                d.error(
                    &path.field("cert"),
                    Some(node),
                    "is missing; mode = \"custom\" needs cert and key paths on the server",
                );
            }
            if key.is_none() {
                d.error(
                    &path.field("key"),
                    Some(node),
                    "is missing; mode = \"custom\" needs cert and key paths on the server",
                );
            }
            match (cert.flatten(), key.flatten()) {
                (Some(cert), Some(key)) => Some(TlsMode::Custom { cert, key }),
                _ => None,
            }
        }
        Some(other) => {
            for (name, present) in [("cert", cert.is_some()), ("key", key.is_some())] {
                if present {
                    d.error(&path.field(name), Some(node), "only applies to mode = \"custom\"");
                }
            }
            Some(match other {
                Kind::Acme => TlsMode::Acme,
                Kind::SelfSigned => TlsMode::SelfSigned,
                _ => TlsMode::Off,
            })
        }
        None => None,
    };
    let def = default_tls(mode.clone().unwrap_or(TlsMode::Acme));
    let redirect_http = opt!(t, d, "redirect_http", def.redirect_http, |n, p| d.bool(n, &p));
    let hsts = opt!(t, d, "hsts", def.hsts, |n, p| d.bool(n, &p));
    let hsts_preload = opt!(t, d, "hsts_preload", false, |n, p| d.bool(n, &p));
    let ocsp_stapling = opt!(t, d, "ocsp_stapling", false, |n, p| d.bool(n, &p));
    let client = match t.get("client") {
        Some((n, p)) => {
            if !matches!(kind, Some(Kind::Acme)) {
                d.error(&p, Some(n), "only applies to mode = \"acme\"");
            }
            d.choice(n, &p, &[("rpcc", CertificateClient::Rpcc), ("certbot", CertificateClient::Certbot)])
        }
        None => Some(CertificateClient::Rpcc),
    };
    t.finish(d);
    let mode = mode?;
    if matches!(mode, TlsMode::Off) && redirect_http == Some(true) && t_has_true(node, "redirect_http") {
        d.error(&path.field("redirect_http"), Some(node), "needs TLS; it cannot be set with mode = \"off\"");
    }
    let policy = TlsPolicy {
        mode,
        redirect_http: redirect_http?,
        hsts: hsts?,
        hsts_preload: hsts_preload?,
        ocsp_stapling: ocsp_stapling?,
        client: client?,
    };
    if policy.hsts_preload && !policy.hsts {
        d.error(&path.field("hsts_preload"), Some(node), "needs hsts = true");
    }
    Some(policy)
}
