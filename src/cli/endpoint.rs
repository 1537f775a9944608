//! `rpcc watch --listen`: `/metrics` (Prometheus text) and `/healthz` over plain HTTP/1.1,
//! meant for loopback. One request per connection, request heads capped at 8 KiB and
//! 5 s, nothing else served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::watch::WatchStats;
use rpcc_store::WatchStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the endpoint reads.
pub(crate) struct Endpoint {
    pub(crate) stats: Arc<WatchStats>,
    pub(crate) store: Arc<dyn WatchStore>,
    pub(crate) started: Instant,
    pub(crate) interval: Duration,
}

impl Endpoint {
    /// Serve until the runtime stops.
    pub(crate) async fn serve(self, listener: std::net::TcpListener) {
        let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "metrics endpoint not started");
                return;
            }
        };
        let me = Arc::new(self);
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let me = Arc::clone(&me);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), me.answer(sock)).await;
            });
        }
    }

    async fn answer(&self, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let mut words = line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, kind, body) = match (method, path) {
            ("GET", "/metrics") => {
                let deploys = self.store.deployment_counts().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "deployment counts not read for /metrics");
                    Vec::new()
                });
                ("200 OK", "text/plain; version=0.0.4", self.stats.prometheus(&deploys))
            }
            ("GET", "/healthz") if self.stats.healthy(self.started, self.interval) => {
                ("200 OK", "text/plain", format!("ok: {} rounds\n", self.stats.rounds()))
            }
            ("GET", "/healthz") => {
                ("503 Service Unavailable", "text/plain", "stale: no round finished lately\n".into())
            }
            ("GET", _) => ("404 Not Found", "text/plain", "not found: /metrics or /healthz\n".into()),
            _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(response.as_bytes()).await?;
        sock.shutdown().await
    }
}
