//! A site: a domain with aliases, proxied to an upstream, with TLS and HTTP policy.
//!
//! Every type here is `Hash` so renderers can key caches on a site's exact content.

use crate::value::{
    Backend, ContentSecurityPolicy, DomainName, DurationValue, HeaderName, HeaderValue, Identifier, PermissionsPolicy,
    Rate, RedirectUrl, RemotePath, Size, UrlPath,
};

/// One site (virtual host) served by every server of its group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Site {
    /// The primary name (never a wildcard).
    pub domain: DomainName,
    /// Other names served the same way (wildcards allowed).
    pub aliases: Vec<DomainName>,
    /// The group whose servers serve this site.
    pub group: Identifier,
    /// Where requests go. `None` only for a site that redirects everything (`redirect_to`).
    pub upstream: Option<Upstream>,
    /// Send every request to this URL instead of proxying.
    pub redirect_to: Option<RedirectUrl>,
    /// TLS policy.
    pub tls: TlsPolicy,
    /// Pass websocket upgrades.
    pub websocket: bool,
    /// Serve HTTP/2 on TLS listeners.
    pub http2: bool,
    /// www ↔ apex redirect.
    pub www: WwwRedirect,
    /// Extra locations.
    pub locations: Vec<Location>,
    /// Path redirects.
    pub redirects: Vec<Redirect>,
    /// Body size, rate and connection limits.
    pub limits: Limits,
    /// Proxy timeouts.
    pub timeouts: ProxyTimeouts,
    /// Security headers.
    pub security: SecurityHeaders,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// gzip compression of text responses.
    pub gzip: bool,
    /// Cache lifetime for static assets (`expires`), if set.
    pub static_cache: Option<DurationValue>,
    /// Proxy buffering.
    pub buffering: bool,
    /// Path of a health endpoint answered by nginx itself.
    pub health_path: Option<UrlPath>,
    /// What the post-deploy probe expects of this site.
    pub probe: ProbeExpectation,
    /// Serve a maintenance page (503) instead of proxying.
    pub maintenance: bool,
    /// Plugins applied to this site after its group's, in order.
    pub plugins: Vec<Identifier>,
}

impl Site {
    /// The primary domain and all aliases.
    pub fn names(&self) -> impl Iterator<Item = &DomainName> {
        std::iter::once(&self.domain).chain(&self.aliases)
    }

    /// The names its certificate must cover: the domain, the aliases and, with a `www`
    /// redirect, the other `www.` name (it is served over TLS too), without repeats.
    ///
    /// ```
    /// # use rpcc_core::model::Inventory;
    /// let inv = Inventory::from_toml_str(r#"
    ///     [[servers]]
    ///     name = "e"
    ///     host = "203.0.113.10"
    ///     user = "deploy"
    ///     auth = { agent = true }
    ///     [[groups]]
    ///     name = "g"
    ///     servers = ["e"]
    ///     [[sites]]
    ///     domain = "example.com"
    ///     aliases = ["shop.example.com"]
    ///     www = "to_apex"
    ///     group = "g"
    ///     upstream = { backends = ["10.0.0.5:80"] }
    /// "#).unwrap();
    /// assert_eq!(inv.sites[0].certificate_names(), ["example.com", "shop.example.com", "www.example.com"]);
    /// ```
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names().map(ToString::to_string).collect();
        if self.www != WwwRedirect::None {
            names.push(format!("www.{}", self.domain));
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// The id of the site in file names and records (`*` written `_wildcard_`).
    pub fn id(&self) -> String {
        self.domain.as_str().replace('*', "_wildcard_")
    }
}

/// What the post-deploy probe expects (`probe = { path, status, body }`). TLS sites are
/// probed over HTTPS with the site's name as SNI, and the certificate presented must
/// cover that name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct ProbeExpectation {
    /// Path to request (default: `health_path`, else `/`).
    pub path: Option<UrlPath>,
    /// Expected status (default: 200 on `health_path`, else any HTTP answer from the
    /// site's own server block).
    pub status: Option<u16>,
    /// Text the first 64 KiB of the body must contain (1–256 printable characters).
    pub body: Option<String>,
}

impl ProbeExpectation {
    /// The largest `body` accepted, in bytes.
    pub const MAX_BODY_TEXT: usize = 256;
    /// How much of a response body is searched for `body`.
    pub const BODY_WINDOW: usize = 64 * 1024;
}

impl Site {
    /// The path the probe requests: `probe.path`, else `health_path`, else `/`.
    pub fn probe_path(&self) -> &str {
        self.probe.path.as_ref().or(self.health_path.as_ref()).map_or("/", UrlPath::as_str)
    }

    /// The status the probe expects, when one is expected: `probe.status`, else 200
    /// when it requests `health_path` (nginx answers that path itself).
    pub fn probe_status(&self) -> Option<u16> {
        self.probe.status.or_else(|| {
            let on_health = self.health_path.as_ref().is_some_and(|h| h.as_str() == self.probe_path());
            on_health.then_some(200)
        })
    }
}

/// An upstream: one or more backends and how to balance between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Upstream {
    /// Backends; never empty.
    pub backends: Vec<BackendSpec>,
    /// Balancing method.
    pub balance: Balance,
    /// Idle keepalive connections to keep per worker (0 = off).
    pub keepalive: u32,
    /// Default `max_fails` of each backend.
    pub max_fails: u32,
    /// Default `fail_timeout` of each backend.
    pub fail_timeout: DurationValue,
    /// Protocol to the backends.
    pub scheme: UpstreamScheme,
}

/// One backend with its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct BackendSpec {
    /// `host:port`.
    pub address: Backend,
    /// Weight (1-100).
    pub weight: u32,
    /// Only used when the others are down.
    pub backup: bool,
    /// Overrides the upstream's `max_fails`.
    pub max_fails: Option<u32>,
    /// Overrides the upstream's `fail_timeout`.
    pub fail_timeout: Option<DurationValue>,
}

impl BackendSpec {
    /// A backend with default parameters.
    pub fn new(address: Backend) -> Self {
        Self { address, weight: 1, backup: false, max_fails: None, fail_timeout: None }
    }
}

/// Load-balancing method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted round robin (nginx's default).
    RoundRobin,
    /// Fewest active connections.
    LeastConn,
    /// By client IP.
    IpHash,
    /// Consistent hash of a request property.
    Hash(HashKey),
}

/// Request properties a `hash` upstream may key on (nginx variables, emitted by the
/// renderer from this closed set, never from input text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// `$request_uri`
    RequestUri,
    /// `$remote_addr`
    RemoteAddr,
    /// `$host`
    Host,
    /// `$uri`
    Uri,
}

/// Protocol to backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS to the backend.
    Https,
}

/// TLS policy of a site.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct TlsPolicy {
    /// Where the certificate comes from.
    pub mode: TlsMode,
    /// Redirect plain HTTP to HTTPS (except the ACME challenge path).
    pub redirect_http: bool,
    /// Send `Strict-Transport-Security`.
    pub hsts: bool,
    /// Add `preload` to HSTS.
    pub hsts_preload: bool,
    /// OCSP stapling (only rendered when the certificate carries an OCSP URL).
    pub ocsp_stapling: bool,
    /// Which ACME client obtains an `acme` site's certificate.
    pub client: CertificateClient,
}

/// The ACME client of an `acme` site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateClient {
    /// rpcc's own client: answers uploaded to every server of the site's group.
    Rpcc,
    /// `certbot certonly --webroot` on the first server of the site's group (for
    /// operators who already run certbot; DNS must send the CA to that server). Never
    /// `certbot --nginx`.
    Certbot,
}

impl TlsPolicy {
    /// True unless the mode is `off`.
    pub fn enabled(&self) -> bool {
        !matches!(self.mode, TlsMode::Off)
    }
}

/// Where a site's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TlsMode {
    /// Issued by ACME (HTTP-01).
    Acme,
    /// Files already on the server.
    Custom {
        /// Certificate chain path on the server.
        cert: RemotePath,
        /// Private key path on the server.
        key: RemotePath,
    },
    /// Generated self-signed certificate.
    SelfSigned,
    /// Plain HTTP only.
    Off,
}

/// `www.` handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WwwRedirect {
    /// Nothing.
    None,
    /// `www.example.com` → `example.com`.
    ToApex,
    /// `example.com` → `www.example.com`.
    ToWww,
}

/// How a location matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationMatch {
    /// Prefix match (`location /api/`).
    Prefix,
    /// Exact match (`location = /login`).
    Exact,
}

/// An extra location with its own policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Location {
    /// The path.
    pub path: UrlPath,
    /// Prefix or exact.
    pub matching: LocationMatch,
    /// Its own upstream; otherwise the site's.
    pub upstream: Option<Upstream>,
    /// Override websocket handling.
    pub websocket: Option<bool>,
    /// Rate limit for this location.
    pub rate_limit: Option<RateLimit>,
    /// Body size limit for this location.
    pub body_size: Option<Size>,
}

/// A request-rate limit (`limit_req`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct RateLimit {
    /// The rate.
    pub rate: Rate,
    /// Burst size.
    pub burst: u32,
    /// Serve bursts without delay.
    pub nodelay: bool,
}

/// A path redirect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Redirect {
    /// Source path (exact match).
    pub from: UrlPath,
    /// Target URL.
    pub to: RedirectUrl,
    /// Status code.
    pub code: RedirectCode,
}

/// Redirect status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RedirectCode {
    /// 301 Moved Permanently
    MovedPermanently,
    /// 302 Found
    Found,
    /// 307 Temporary Redirect
    Temporary,
    /// 308 Permanent Redirect
    Permanent,
}

impl RedirectCode {
    /// The numeric status.
    pub fn code(self) -> u16 {
        match self {
            Self::MovedPermanently => 301,
            Self::Found => 302,
            Self::Temporary => 307,
            Self::Permanent => 308,
        }
    }
}

/// Site-wide limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// `client_max_body_size`.
    pub body_size: Size,
    /// Site-wide request rate per client IP.
    pub rate: Option<RateLimit>,
    /// Concurrent connections per client IP.
    pub connections: Option<u32>,
}

/// Proxy timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct ProxyTimeouts {
    /// `proxy_connect_timeout`
    pub connect: DurationValue,
    /// `proxy_read_timeout`
    pub read: DurationValue,
    /// `proxy_send_timeout`
    pub send: DurationValue,
}

/// Security response headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct SecurityHeaders {
    /// `X-Frame-Options` (`DENY` or `SAMEORIGIN`), `None` to omit.
    pub frame_options: Option<HeaderValue>,
    /// `Referrer-Policy`.
    pub referrer_policy: HeaderValue,
    /// `Content-Security-Policy`.
    pub csp: Option<ContentSecurityPolicy>,
    /// `Permissions-Policy`.
    pub permissions_policy: Option<PermissionsPolicy>,
}
