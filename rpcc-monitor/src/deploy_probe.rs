//! Post-reload health probe: plain HTTP for plain sites, HTTPS with the site's name as
//! SNI for TLS sites, with per-site expectations.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rpcc_core::deploy::{HealthProbe, ProbeError};
use rpcc_core::model::{ProbeExpectation, Server, Site, TlsMode};
use rpcc_core::value::ListenAddr;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Sends `GET <path>` for a site to the server itself (never through DNS) and judges
/// the answer against the site's expectations.
///
/// - Plain sites: HTTP with the site's `Host`.
/// - TLS sites: HTTPS to the server's TLS listener with the site's name as SNI and
///   `Host`; the certificate presented must cover the name (a site missing from the
///   new config gets rpcc's catch-all, which refuses the handshake). The chain is not
///   judged here: self-signed and private-CA certificates are deployed on purpose, and
///   certificate status is `rpcc certs status`'s job. A site that redirects HTTP must
///   also answer `301` on the plain listener.
/// - Expectations ([`ProbeExpectation`]): the path (`probe.path`, else `health_path`,
///   else `/`), the status (`probe.status`, else 200 on `health_path`, else any HTTP
///   answer: rpcc's catch-all closes the connection without one, so an answer proves
///   the site's own server block is loaded), and a text the body must contain.
#[derive(Clone)]
pub struct HttpHealthProbe {
    timeout: Duration,
    /// The TLS client (an error only if the provider supported no safe TLS version).
    tls: Result<tokio_rustls::TlsConnector, String>,
}

impl std::fmt::Debug for HttpHealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHealthProbe").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Default for HttpHealthProbe {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl HttpHealthProbe {
    /// A probe with a per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        // Its own provider: an application may link rustls with several, and then there
        // is no process default to fall back on.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(ReadAnyCertificate(provider.clone()));
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
            .map(|mut config| {
                // Every probe sees the certificate the new config presents: a resumed
                // session would report the one from an earlier handshake.
                config.resumption = rustls::client::Resumption::disabled();
                tokio_rustls::TlsConnector::from(Arc::new(config))
            })
            .map_err(|e| format!("TLS client: {e}"));
        Self { timeout, tls }
    }

    /// `host:port` of one of the server's listeners: its IP when specific, otherwise
    /// the server's address.
    fn target(server: &Server, listen: &ListenAddr) -> String {
        let host = match listen.ip() {
            Some(ip) if !ip.is_unspecified() => ip.to_string(),
            _ => server.host.to_string(),
        };
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", listen.port()),
            _ => format!("{host}:{}", listen.port()),
        }
    }

    /// One plain-HTTP exchange.
    async fn http(&self, server: &Server, site: &Site, path: &str) -> Result<Answer, ProbeError> {
        let addr = Self::target(server, &server.nginx.listen_http);
        let exchange = async {
            let stream = TcpStream::connect(&addr).await.map_err(unreachable(format!("cannot connect to {addr}")))?;
            exchange(stream, &addr, site, path).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProbeError::Timeout { addr: addr.clone(), timeout: self.timeout })?
    }

    /// One HTTPS exchange with the site's name as SNI; the presented certificate must
    /// cover that name.
    async fn https(&self, server: &Server, site: &Site, path: &str) -> Result<Answer, ProbeError> {
        let addr = Self::target(server, &server.nginx.listen_https);
        let domain = site.domain.to_string();
        let exchange = async {
            let name = ServerName::try_from(domain.clone())
                .map_err(|e| ProbeError::Unexpected(format!("{domain} as SNI: {e}")))?;
            let tcp = TcpStream::connect(&addr).await.map_err(unreachable(format!("cannot connect to {addr}")))?;
            let connector = self.tls.as_ref().map_err(|e| ProbeError::Setup(e.clone()))?;
            let tls = connector.connect(name, tcp).await.map_err(unreachable(format!(
                "TLS handshake with {addr} for {domain} failed (site not served over TLS?)"
            )))?;
            let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
            let der =
                der.ok_or_else(|| ProbeError::Unexpected(format!("{addr} presented no certificate for {domain}")))?;
            let cert = crate::site_probe::parse_cert(&der, &domain).map_err(ProbeError::Unexpected)?;
            if !cert.name_matches {
                return Err(ProbeError::Unexpected(format!(
                    "{addr} presented a certificate for {} (subject {}), which does not cover {domain}",
                    cert.names.join(", "),
                    cert.subject
                )));
            }
            exchange(tls, &addr, site, path).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProbeError::Timeout { addr: addr.clone(), timeout: self.timeout })?
    }
}

/// An I/O failure while `context`.
fn unreachable(context: String) -> impl FnOnce(std::io::Error) -> ProbeError {
    move |source| ProbeError::Unreachable { context, source }
}

/// A response: status and the first [`ProbeExpectation::BODY_WINDOW`] bytes of the body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Send the request, read the status and (when needed) the start of the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: &str,
    site: &Site,
    path: &str,
) -> Result<Answer, ProbeError> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rpcc-health\r\nConnection: close\r\n\r\n", site.domain);
    stream.write_all(request.as_bytes()).await.map_err(unreachable(format!("cannot send to {addr}")))?;
    // A TLS stream may hold the request's records until flushed.
    stream.flush().await.map_err(unreachable(format!("cannot send to {addr}")))?;
    let want_body = site.probe.body.is_some();
    let limit = if want_body { 16 * 1024 + ProbeExpectation::BODY_WINDOW } else { 4096 };
    let mut data = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let done = if want_body { data.len() >= limit } else { data.contains(&b'\n') || data.len() >= limit };
        if done {
            break;
        }
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            // A TLS peer that closes without close_notify still sent a whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !data.is_empty() => break,
            Err(e) => return Err(ProbeError::Unreachable { context: format!("reading from {addr}"), source: e }),
        }
    }
    let status = parse_status(&data).ok_or_else(|| {
        ProbeError::Unexpected(if data.is_empty() {
            format!("{addr} closed the connection without a response (site not served?)")
        } else {
            format!("{addr} sent no HTTP status line")
        })
    })?;
    let body = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => data.split_off(end + 4),
        None => Vec::new(),
    };
    Ok(Answer { status, body })
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok().filter(|c| (100..600).contains(c))
}

/// Judge an answer against the site's expectations.
fn judge(site: &Site, scheme: &str, path: &str, answer: &Answer) -> Result<(), ProbeError> {
    if let Some(want) = site.probe_status()
        && answer.status != want
    {
        return Err(ProbeError::Unexpected(format!("{scheme} GET {path} answered {}, expected {want}", answer.status)));
    }
    if let Some(text) = &site.probe.body {
        let window = &answer.body[..answer.body.len().min(ProbeExpectation::BODY_WINDOW)];
        let found = window.windows(text.len()).any(|w| w == text.as_bytes());
        if !found {
            return Err(ProbeError::Unexpected(format!(
                "{scheme} GET {path} answered {} without {text:?} in the first {} KiB of its body \
                 (chunked or compressed bodies are searched as sent)",
                answer.status,
                ProbeExpectation::BODY_WINDOW / 1024
            )));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl HealthProbe for HttpHealthProbe {
    async fn probe(&self, server: &Server, site: &Site) -> Result<(), ProbeError> {
        let path = site.probe_path();
        if site.tls.mode == TlsMode::Off {
            let answer = self.http(server, site, path).await?;
            return judge(site, "HTTP", path, &answer);
        }
        let answer = self.https(server, site, path).await?;
        judge(site, "HTTPS", path, &answer)?;
        if site.tls.redirect_http {
            let plain = self.http(server, site, path).await?;
            if plain.status != 301 {
                return Err(ProbeError::Unexpected(format!(
                    "HTTP GET {path} answered {}, expected a 301 redirect to HTTPS",
                    plain.status
                )));
            }
        }
        Ok(())
    }
}

/// Reads whatever certificate the server presents (judged by name above), while the
/// handshake's signatures are still checked with the provider's algorithms.
#[derive(Debug)]
struct ReadAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for ReadAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable\r\nx"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 999 What\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
