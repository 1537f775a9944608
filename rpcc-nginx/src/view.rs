//! Template data built from the validated model. Every string here comes from a
//! validated core value or from a fixed literal; the templates' filters check again.

use std::collections::BTreeSet;

use rpcc_core::model::{
    Balance, HashKey, LocationMatch, NginxMode, RateLimit, Server, Site, TlsMode, Upstream, UpstreamScheme, WwwRedirect,
};
use rpcc_core::value::{Rate, RateUnit};

use crate::options::{MOZILLA_INTERMEDIATE_CIPHERS, RenderOptions};

/// nginx 1.25.1 introduced `http2 on;` and deprecated `listen … http2`.
const HTTP2_DIRECTIVE_SINCE: (u16, u16, u16) = (1, 25, 1);

#[derive(serde::Serialize)]
pub(crate) struct ServerView {
    pub(crate) name: String,
    pub(crate) owned: bool,
    pub(crate) user: Option<String>,
    pub(crate) pid: String,
    pub(crate) log_dir: String,
    pub(crate) managed_root: String,
    pub(crate) acme_root: String,
    /// Absolute path of this generation's directory on the server (empty while the
    /// generation id is being computed).
    pub(crate) gen_dir: String,
    pub(crate) worker_connections: u32,
    pub(crate) worker_rlimit_nofile: u32,
    pub(crate) listen_http: String,
    pub(crate) listen_https: String,
    pub(crate) http2_directive: bool,
    pub(crate) ecdh_curve: String,
    pub(crate) ciphers: &'static str,
    pub(crate) json_access_log: bool,
    pub(crate) req_zones: Vec<ZoneView>,
    pub(crate) conn_zone: bool,
    pub(crate) any_tls: bool,
    pub(crate) names_hash_max_size: u32,
}

/// The part of the server a site's template sees. Kept small on purpose: a site's file
/// depends only on the site and these fields.
#[derive(serde::Serialize, Clone)]
pub(crate) struct SiteServerView {
    pub(crate) listen_http: String,
    pub(crate) listen_https: String,
    pub(crate) http2_directive: bool,
    pub(crate) acme_root: String,
}

#[derive(serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ZoneView {
    pub(crate) name: String,
    pub(crate) rate: String,
}

#[derive(serde::Serialize)]
pub(crate) struct SiteView {
    pub(crate) id: String,
    pub(crate) domain: String,
    pub(crate) names: Vec<String>,
    pub(crate) upstreams: Vec<UpstreamView>,
    pub(crate) tls: Option<TlsView>,
    /// TLS is wanted but its certificate is not issued yet: HTTP answers ACME
    /// challenges only.
    pub(crate) cert_pending: bool,
    /// Plain HTTP only redirects (TLS on and `redirect_http`).
    pub(crate) http_redirects_only: bool,
    pub(crate) www: Option<WwwView>,
    pub(crate) http2: bool,
    pub(crate) redirect_to: Option<String>,
    pub(crate) main: Option<ProxyView>,
    pub(crate) locations: Vec<LocationView>,
    pub(crate) redirects: Vec<RedirectView>,
    pub(crate) body_size: String,
    pub(crate) limit_req: Option<String>,
    pub(crate) limit_conn: Option<u32>,
    pub(crate) timeouts: [String; 3],
    pub(crate) buffering: bool,
    pub(crate) gzip: bool,
    pub(crate) static_cache: Option<String>,
    pub(crate) health_path: Option<String>,
    pub(crate) maintenance: bool,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) security: SecurityView,
}

#[derive(serde::Serialize)]
pub(crate) struct UpstreamView {
    pub(crate) name: String,
    /// `least_conn`, `ip_hash` or `hash` (round robin: none).
    pub(crate) balance: Option<&'static str>,
    /// The nginx variable (without `$`) a `hash` upstream keys on, from a closed set.
    pub(crate) hash_var: Option<&'static str>,
    pub(crate) servers: Vec<String>,
    pub(crate) keepalive: u32,
}

#[derive(serde::Serialize)]
pub(crate) struct TlsView {
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) hsts: Option<String>,
    pub(crate) ocsp_stapling: bool,
}

#[derive(serde::Serialize)]
pub(crate) struct WwwView {
    pub(crate) from: String,
    pub(crate) to: String,
}

#[derive(serde::Serialize)]
pub(crate) struct ProxyView {
    pub(crate) pass: String,
    pub(crate) websocket: bool,
    pub(crate) https_backend: bool,
}

#[derive(serde::Serialize)]
pub(crate) struct LocationView {
    pub(crate) modifier: &'static str,
    pub(crate) path: String,
    pub(crate) proxy: ProxyView,
    pub(crate) limit_req: Option<String>,
    pub(crate) body_size: Option<String>,
}

#[derive(serde::Serialize)]
pub(crate) struct RedirectView {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) code: u16,
}

#[derive(serde::Serialize)]
pub(crate) struct SecurityView {
    pub(crate) frame_options: Option<String>,
    pub(crate) referrer_policy: String,
    pub(crate) csp: Option<String>,
    pub(crate) permissions_policy: Option<String>,
}

/// A file-safe id for a site: its domain with `*` spelled out.
pub(crate) fn site_id(site: &Site) -> String {
    site.domain.as_str().replace('*', "_wildcard_")
}

fn upstream_name(site_id: &str, suffix: Option<usize>) -> String {
    let base = site_id.replace(['.', '-'], "_");
    match suffix {
        Some(i) => format!("rpcc_{base}_loc{i}"),
        None => format!("rpcc_{base}"),
    }
}

fn zone_name(rate: Rate) -> String {
    let unit = match rate.unit() {
        RateUnit::PerSecond => "rs",
        RateUnit::PerMinute => "rm",
    };
    format!("rpcc_req_{}{unit}", rate.requests())
}

fn limit_req(limit: &RateLimit) -> String {
    let mut s = format!("zone={} burst={}", zone_name(limit.rate), limit.burst);
    if limit.nodelay {
        s.push_str(" nodelay");
    }
    s
}

fn upstream_view(name: String, up: &Upstream) -> UpstreamView {
    let (balance, hash_var) = match up.balance {
        Balance::RoundRobin => (None, None),
        Balance::LeastConn => (Some("least_conn"), None),
        Balance::IpHash => (Some("ip_hash"), None),
        Balance::Hash(key) => {
            let var = match key {
                HashKey::RequestUri => "request_uri",
                HashKey::RemoteAddr => "remote_addr",
                HashKey::Host => "host",
                HashKey::Uri => "uri",
            };
            (Some("hash"), Some(var))
        }
    };
    let servers = up
        .backends
        .iter()
        .map(|b| {
            let mut s = b.address.as_str().to_owned();
            if b.weight != 1 {
                s.push_str(&format!(" weight={}", b.weight));
            }
            s.push_str(&format!(" max_fails={}", b.max_fails.unwrap_or(up.max_fails)));
            s.push_str(&format!(" fail_timeout={}", b.fail_timeout.unwrap_or(up.fail_timeout)));
            if b.backup {
                s.push_str(" backup");
            }
            s
        })
        .collect();
    UpstreamView { name, balance, hash_var, servers, keepalive: up.keepalive }
}

fn proxy(up_name: &str, up: &Upstream, websocket: bool) -> ProxyView {
    let https = up.scheme == UpstreamScheme::Https;
    ProxyView { pass: format!("{}://{up_name}", if https { "https" } else { "http" }), websocket, https_backend: https }
}

/// Stands for the generation id in a site's certificate paths until the id is known
/// (site files are cached and digested without it). Letters only, so the `arg` filter
/// passes it through unchanged.
pub(crate) const GENERATION_PLACEHOLDER: &str = "RPCCGENERATIONID";

/// Absolute paths of a site's certificate and key inside its generation (ACME and
/// self-signed), with the generation id still a placeholder.
fn cert_paths(managed_root: &str, site: &Site) -> (String, String) {
    let id = site_id(site);
    let dir = format!("{managed_root}/generations/{GENERATION_PLACEHOLDER}");
    (format!("{dir}/{}", rpcc_core::certs::chain_path(&id)), format!("{dir}/{}", rpcc_core::certs::key_path(&id)))
}

/// What a render knows about an ACME or self-signed site's certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CertState {
    /// No certificate set was given (a render for review): paths only.
    Assumed,
    /// The certificate goes into the generation.
    Present,
    /// None yet: the site is served over HTTP for ACME challenges only.
    Pending,
}

pub(crate) fn site_view(site: &Site, managed_root: &str, ocsp_ok: bool, cert: CertState) -> SiteView {
    let id = site_id(site);
    let mut upstreams = Vec::new();
    let main = site.upstream.as_ref().map(|up| {
        let name = upstream_name(&id, None);
        let p = proxy(&name, up, site.websocket);
        upstreams.push(upstream_view(name, up));
        p
    });
    let mut locations = Vec::new();
    for (i, loc) in site.locations.iter().enumerate() {
        let websocket = loc.websocket.unwrap_or(site.websocket);
        let proxy_view = match (&loc.upstream, &site.upstream) {
            (Some(up), _) => {
                let name = upstream_name(&id, Some(i));
                let p = proxy(&name, up, websocket);
                upstreams.push(upstream_view(name, up));
                Some(p)
            }
            (None, Some(up)) => Some(proxy(&upstream_name(&id, None), up, websocket)),
            (None, None) => None,
        };
        if let Some(p) = proxy_view {
            locations.push(LocationView {
                modifier: match loc.matching {
                    LocationMatch::Prefix => "",
                    LocationMatch::Exact => "= ",
                },
                path: loc.path.to_string(),
                proxy: p,
                limit_req: loc.rate_limit.as_ref().map(limit_req),
                body_size: loc.body_size.map(|s| s.to_string()),
            });
        }
    }
    let pending = cert == CertState::Pending && matches!(site.tls.mode, TlsMode::Acme | TlsMode::SelfSigned);
    let tls = match &site.tls.mode {
        TlsMode::Off => None,
        _ if pending => None,
        mode => {
            let (cert, key) = match mode {
                TlsMode::Custom { cert, key } => (cert.to_string(), key.to_string()),
                _ => cert_paths(managed_root, site),
            };
            let hsts = site.tls.hsts.then(|| {
                if site.tls.hsts_preload {
                    "max-age=63072000; includeSubDomains; preload".to_owned()
                } else {
                    "max-age=63072000; includeSubDomains".to_owned()
                }
            });
            Some(TlsView { cert, key, hsts, ocsp_stapling: site.tls.ocsp_stapling && ocsp_ok })
        }
    };
    let (names, www) = {
        let mut names: Vec<String> = site.names().map(|n| n.to_string()).collect();
        let www = match site.www {
            WwwRedirect::None => None,
            WwwRedirect::ToWww => {
                let to = format!("www.{}", site.domain);
                names[0] = to.clone();
                Some(WwwView { from: site.domain.to_string(), to })
            }
            WwwRedirect::ToApex => Some(WwwView { from: format!("www.{}", site.domain), to: site.domain.to_string() }),
        };
        (names, www)
    };
    SiteView {
        cert_pending: pending,
        http_redirects_only: tls.is_some() && site.tls.redirect_http,
        tls,
        id,
        domain: site.domain.to_string(),
        names,
        upstreams,
        www,
        http2: site.http2,
        redirect_to: site.redirect_to.as_ref().map(ToString::to_string),
        main,
        locations,
        redirects: site
            .redirects
            .iter()
            .map(|r| RedirectView { from: r.from.to_string(), to: r.to.to_string(), code: r.code.code() })
            .collect(),
        body_size: site.limits.body_size.to_string(),
        limit_req: site.limits.rate.as_ref().map(limit_req),
        limit_conn: site.limits.connections,
        timeouts: [site.timeouts.connect.to_string(), site.timeouts.read.to_string(), site.timeouts.send.to_string()],
        buffering: site.buffering,
        gzip: site.gzip,
        static_cache: site.static_cache.map(|d| d.to_string()),
        health_path: site.health_path.as_ref().map(ToString::to_string),
        maintenance: site.maintenance,
        headers: site.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        security: SecurityView {
            frame_options: site.security.frame_options.as_ref().map(ToString::to_string),
            referrer_policy: site.security.referrer_policy.to_string(),
            csp: site.security.csp.as_ref().map(ToString::to_string),
            permissions_policy: site.security.permissions_policy.as_ref().map(ToString::to_string),
        },
    }
}

pub(crate) fn site_server_view(server: &Server, opts: &RenderOptions) -> SiteServerView {
    let nginx = &server.nginx;
    SiteServerView {
        listen_http: nginx.listen_http.to_string(),
        listen_https: nginx.listen_https.to_string(),
        http2_directive: nginx.version.unwrap_or(opts.default_version) >= HTTP2_DIRECTIVE_SINCE,
        acme_root: format!("{}/acme", nginx.managed_root),
    }
}

pub(crate) fn server_view(server: &Server, sites: &[&Site], opts: &RenderOptions) -> ServerView {
    let mut zones = BTreeSet::new();
    let mut conn_zone = false;
    let mut any_tls = false;
    let mut names = 0u32;
    for site in sites {
        let limits = site.limits.rate.iter().chain(site.locations.iter().filter_map(|l| l.rate_limit.as_ref()));
        for l in limits {
            zones.insert(ZoneView { name: zone_name(l.rate), rate: l.rate.to_string() });
        }
        conn_zone |= site.limits.connections.is_some();
        any_tls |= site.tls.enabled();
        names += 2 + u32::try_from(site.aliases.len()).unwrap_or(u32::MAX / 4);
    }
    let version = server.nginx.version.unwrap_or(opts.default_version);
    let nginx = &server.nginx;
    ServerView {
        name: server.name.to_string(),
        owned: nginx.mode == NginxMode::Owned,
        user: nginx.user.as_ref().map(ToString::to_string),
        pid: nginx.pid.to_string(),
        log_dir: nginx.log_dir.to_string(),
        managed_root: nginx.managed_root.to_string(),
        acme_root: format!("{}/acme", nginx.managed_root),
        gen_dir: String::new(),
        worker_connections: opts.worker_connections,
        worker_rlimit_nofile: opts.worker_connections.saturating_mul(2),
        listen_http: nginx.listen_http.to_string(),
        listen_https: nginx.listen_https.to_string(),
        http2_directive: version >= HTTP2_DIRECTIVE_SINCE,
        ecdh_curve: opts.ecdh_curves.join(":"),
        ciphers: MOZILLA_INTERMEDIATE_CIPHERS,
        json_access_log: opts.json_access_log,
        req_zones: zones.into_iter().collect(),
        conn_zone,
        any_tls,
        names_hash_max_size: names.saturating_mul(2).max(512).next_power_of_two(),
    }
}
