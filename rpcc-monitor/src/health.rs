//! Post-reload health probe over plain HTTP.

use std::net::IpAddr;
use std::time::Duration;

use rpcc_core::deploy::HealthProbe;
use rpcc_core::model::{Server, Site};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Sends `GET <health_path or />` with the site's `Host` to the server's HTTP listener
/// and reads the status line.
///
/// Expectations: a site with a `health_path` served over plain HTTP must answer `200`
/// (nginx answers that path itself, no backend involved); any other site must answer
/// with *some* HTTP status — rpcc's catch-all server closes the connection without a
/// response (444), so getting a status proves the site's own server block is loaded.
/// A site that redirects HTTP to HTTPS must answer `301`.
#[derive(Clone, Debug)]
pub struct HttpHealthProbe {
    timeout: Duration,
}

impl Default for HttpHealthProbe {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(5) }
    }
}

impl HttpHealthProbe {
    /// A probe with a per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// Where the server's HTTP listener is reachable: its listen IP when specific,
    /// otherwise the server's address.
    fn target(server: &Server) -> (String, u16) {
        let listen = &server.nginx.listen_http;
        let host = match listen.ip() {
            Some(ip) if !ip.is_unspecified() => ip.to_string(),
            _ => server.host.to_string(),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => host,
        };
        (host, listen.port().get())
    }

    async fn status(&self, server: &Server, site: &Site, path: &str) -> Result<u16, String> {
        let (host, port) = Self::target(server);
        let addr = format!("{host}:{port}");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rpcc-health\r\nConnection: close\r\n\r\n",
            site.domain
        );
        let exchange = async {
            let mut stream = TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send to {addr}: {e}"))?;
            let mut head = Vec::with_capacity(256);
            let mut buf = [0u8; 256];
            while !head.contains(&b'\n') && head.len() < 4096 {
                let n = stream.read(&mut buf).await.map_err(|e| format!("reading from {addr}: {e}"))?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            parse_status(&head).ok_or_else(|| {
                if head.is_empty() {
                    format!("{addr} closed the connection without a response (site not served?)")
                } else {
                    format!("{addr} sent no HTTP status line")
                }
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no response from {addr} within {:?}", self.timeout))?
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok().filter(|c| (100..600).contains(c))
}

#[async_trait::async_trait]
impl HealthProbe for HttpHealthProbe {
    async fn probe(&self, server: &Server, site: &Site) -> Result<(), String> {
        let redirects = site.tls.enabled() && site.tls.redirect_http;
        let path = site.health_path.as_ref().map_or("/", |p| p.as_str());
        let status = self.status(server, site, path).await?;
        let expected = if redirects {
            Some(301)
        } else if site.health_path.is_some() {
            Some(200)
        } else {
            None
        };
        match expected {
            Some(want) if status != want => Err(format!("GET {path} answered {status}, expected {want}")),
            _ => Ok(()),
        }
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
