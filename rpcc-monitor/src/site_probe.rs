//! [`SiteProber`]: per site and per serving server, the HTTP(S) status and latency with
//! `Host`/SNI pointed at that server (not at DNS), and the certificate that server
//! actually presents: expiry, issuer, names, whether it covers the site, whether it
//! chains to a trusted root.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rpcc_core::model::{Server, Site, TlsMode};
use rpcc_core::value::ListenAddr;

/// What to probe: one site as one server serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteTarget {
    /// The site's domain (Host and SNI).
    pub domain: String,
    /// The server's name.
    pub server: String,
    /// The server's HTTP listener.
    pub http: SocketAddr,
    /// The server's HTTPS listener, when the site has TLS.
    pub https: Option<SocketAddr>,
    /// Path to request (`probe.path`, else `health_path`, else `/`).
    pub path: String,
}

impl SiteTarget {
    /// The target for `site` on `server` (`None` when the server's address is a host
    /// name that does not resolve).
    pub async fn for_site(server: &Server, site: &Site) -> Option<Self> {
        let http = listener(server, &server.nginx.listen_http).await?;
        let https =
            if site.tls.mode == TlsMode::Off { None } else { listener(server, &server.nginx.listen_https).await };
        Some(Self {
            domain: site.domain.to_string(),
            server: server.name.to_string(),
            http,
            https,
            path: site.probe_path().to_owned(),
        })
    }
}

/// Where `listen` is reachable: its IP when specific, else the server's address.
async fn listener(server: &Server, listen: &ListenAddr) -> Option<SocketAddr> {
    let port = listen.port().get();
    match listen.ip() {
        Some(ip) if !ip.is_unspecified() => Some(SocketAddr::new(ip, port)),
        _ => match server.host.to_string().parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, port)),
            Err(_) => tokio::net::lookup_host((server.host.to_string(), port)).await.ok()?.next(),
        },
    }
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HttpCheck {
    /// Status code.
    pub status: u16,
    /// Time to the response head, milliseconds.
    pub latency_ms: f64,
}

/// The certificate a server presented for a site.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CertInfo {
    /// Subject (RFC 4514 text).
    pub subject: String,
    /// Issuer (RFC 4514 text).
    pub issuer: String,
    /// DNS names (subjectAltName, else the subject CN).
    pub names: Vec<String>,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Days until expiry (negative: expired).
    pub days_left: f64,
    /// Whether a name covers the site (wildcards one label deep).
    pub name_matches: bool,
    /// Why a verifying client refused the chain (`None`: trusted).
    pub untrusted: Option<String>,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub fingerprint: String,
}

/// One probe's outcome; failures are values naming what failed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SiteReport {
    /// Site domain.
    pub site: String,
    /// Server name.
    pub server: String,
    /// The HTTPS answer when the site has TLS, else the HTTP one.
    pub http: Result<HttpCheck, String>,
    /// The served certificate (TLS sites).
    pub cert: Option<Result<CertInfo, String>>,
}

/// Probes sites through their servers. Plain HTTP shares one client (the `Host` header
/// names the site); TLS needs the site as SNI at the server's address, so those clients
/// are built once per (site, server) and kept for later rounds.
#[derive(Debug)]
pub struct SiteProber {
    timeout: Duration,
    plain: std::sync::OnceLock<reqwest::Client>,
    tls: std::sync::Mutex<std::collections::HashMap<(String, SocketAddr, bool), reqwest::Client>>,
}

impl SiteProber {
    /// A prober with a per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, plain: std::sync::OnceLock::new(), tls: std::sync::Mutex::default() }
    }

    fn base(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }

    /// The TLS client for `t` at `addr`; `verify` false reads any certificate.
    fn tls_client(&self, t: &SiteTarget, addr: SocketAddr, verify: bool) -> Result<reqwest::Client, String> {
        let key = (t.domain.clone(), addr, verify);
        let mut cache = self.tls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let mut b = self.base().resolve(&t.domain, addr);
        if !verify {
            b = b.danger_accept_invalid_certs(true).tls_info(true);
        }
        let c = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        cache.insert(key, c.clone());
        Ok(c)
    }

    fn plain_client(&self) -> Result<reqwest::Client, String> {
        if let Some(c) = self.plain.get() {
            return Ok(c.clone());
        }
        let c = self.base().build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(self.plain.get_or_init(|| c).clone())
    }

    /// Probe one target.
    pub async fn probe(&self, t: &SiteTarget) -> SiteReport {
        let (http, cert) = match t.https {
            None => (self.get(t, t.http, false).await.map(|(c, _)| c), None),
            Some(addr) => match self.get(t, addr, true).await {
                Ok((check, der)) => {
                    let cert = match der {
                        Some(der) => {
                            let mut info = parse_cert(&der, &t.domain);
                            if let Ok(i) = &mut info {
                                i.untrusted = self.verified(t, addr).await.err();
                            }
                            Some(info)
                        }
                        None => Some(Err("no certificate was presented".to_owned())),
                    };
                    (Ok(check), cert)
                }
                Err(e) => (Err(e.clone()), Some(Err(e))),
            },
        };
        SiteReport { site: t.domain.clone(), server: t.server.clone(), http, cert }
    }

    async fn get(&self, t: &SiteTarget, addr: SocketAddr, tls: bool) -> Result<(HttpCheck, Option<Vec<u8>>), String> {
        // Certificates are judged below, not trusted here: an expired or misnamed one must
        // still be read to be reported.
        let request = if tls {
            self.tls_client(t, addr, false)?.get(format!("https://{}:{}{}", t.domain, addr.port(), t.path))
        } else {
            self.plain_client()?
                .get(format!("http://{addr}{}", t.path))
                .header(reqwest::header::HOST, t.domain.as_str())
        };
        let started = Instant::now();
        let resp = request.send().await.map_err(|e| crate::http_error::describe(&e, tls))?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let der =
            resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).map(<[u8]>::to_vec);
        Ok((HttpCheck { status: resp.status().as_u16(), latency_ms }, der))
    }

    /// GET `path` of the site `t` on its server (HTTPS when the site has TLS, the
    /// certificate verified; Host/SNI the site's name; redirects not followed), with the
    /// body cut at `max_body` bytes. For check plugins' `http-get`.
    pub async fn fetch(&self, t: &SiteTarget, path: &str, max_body: usize) -> Result<FetchedResponse, String> {
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(format!("path {path:?} must be an absolute path on the site"));
        }
        let request = match t.https {
            Some(addr) => self.tls_client(t, addr, true)?.get(format!("https://{}:{}{path}", t.domain, addr.port())),
            None => self
                .plain_client()?
                .get(format!("http://{}{path}", t.http))
                .header(reqwest::header::HOST, t.domain.as_str()),
        };
        let mut resp = request.send().await.map_err(|e| crate::http_error::describe(&e, t.https.is_some()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
            .collect();
        let mut body = Vec::new();
        while body.len() < max_body {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(crate::http_error::describe(&e, t.https.is_some())),
            }
        }
        body.truncate(max_body);
        Ok(FetchedResponse { status, headers, body })
    }

    /// Whether a verifying client accepts the chain and the name.
    async fn verified(&self, t: &SiteTarget, addr: SocketAddr) -> Result<(), String> {
        let client = self.tls_client(t, addr, true)?;
        let url = format!("https://{}:{}{}", t.domain, addr.port(), t.path);
        client.get(&url).send().await.map(|_| ()).map_err(|e| crate::http_error::describe(&e, true))
    }
}

/// A response read by [`SiteProber::fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedResponse {
    /// Status code.
    pub status: u16,
    /// Headers (values that are not visible ASCII are left out).
    pub headers: Vec<(String, String)>,
    /// Body, at most the requested size.
    pub body: Vec<u8>,
}

/// Parse a DER certificate and judge it for `domain`.
pub fn parse_cert(der: &[u8], domain: &str) -> Result<CertInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names =
            cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect();
    }
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let days_left = (not_after as f64 - now) / 86_400.0;
    let domain = domain.to_ascii_lowercase();
    let name_matches = names.iter().any(|n| covers(n, &domain));
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_after,
        days_left,
        name_matches,
        untrusted: None,
        fingerprint: rpcc_core::generation::Sha256Digest::of(der).to_hex(),
    })
}

/// Whether certificate name `pattern` covers `domain` (`*.example.com` covers one label).
fn covers(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => domain.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == domain,
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("app.example.com", "app.example.com"));
        assert!(!covers("app.example.com", "www.app.example.com"));
    }
}
