//! `rpcc watch --listen`: `/metrics` (Prometheus text) and `/healthz` over plain HTTP/1.1,
//! meant for loopback (any other address only with `--metrics-public`). One request per
//! connection, request heads capped at 8 KiB and 5 s, at most [`MAX_CONNECTIONS`] at
//! once, nothing else served. Requests never reach the database: the deployment counts
//! are refreshed by one background task at most every [`COUNTS_REFRESH`] and served
//! from memory.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rpcc::watch::WatchStats;
use rpcc_store::WatchStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Connections served at once; further clients wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How often the deployment counts are read from the store.
pub(crate) const COUNTS_REFRESH: Duration = Duration::from_secs(15);
/// The first pause after a failed `accept` (EMFILE, ENOBUFS …), doubled up to
/// [`ACCEPT_BACKOFF_MAX`] while accepting keeps failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Refuse a `--listen` address that is not loopback unless `public` (`--metrics-public`):
/// the endpoint has no credentials.
pub(crate) fn check_listen(addr: SocketAddr, public: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || public {
        return Ok(());
    }
    Err(format!(
        "--listen {addr}: not a loopback address; /metrics and /healthz answer anyone without credentials, so \
         serve them on loopback (e.g. 127.0.0.1:{}) behind a proxy, or pass --metrics-public to serve them on {} \
         anyway",
        addr.port(),
        addr.ip()
    ))
}

/// What the endpoint reads.
pub(crate) struct Endpoint {
    pub(crate) stats: Arc<WatchStats>,
    pub(crate) store: Arc<dyn WatchStore>,
    pub(crate) started: Instant,
    pub(crate) interval: Duration,
    /// Connections served at once ([`MAX_CONNECTIONS`]).
    pub(crate) max_connections: usize,
    /// How often the deployment counts are refreshed ([`COUNTS_REFRESH`]).
    pub(crate) refresh: Duration,
}

/// The pause after the `failures`-th accept error in a row (1-based).
fn accept_backoff(failures: u32) -> Duration {
    let doubled = ACCEPT_BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    doubled.min(ACCEPT_BACKOFF_MAX)
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
        let counts = Arc::new(RwLock::new(Vec::new()));
        tokio::spawn(refresh_counts(Arc::clone(&self.store), Arc::clone(&counts), self.refresh));
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_connections.max(1)));
        let me = Arc::new(self);
        let mut failures = 0u32;
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let sock = match listener.accept().await {
                Ok((sock, _)) => {
                    failures = 0;
                    sock
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = accept_backoff(failures);
                    if failures == 1 {
                        tracing::warn!(error = %e, ?pause, "metrics endpoint: accept failed; backing off");
                    }
                    drop(slot);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let me = Arc::clone(&me);
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), me.answer(sock, &counts)).await;
                drop(slot);
            });
        }
    }

    async fn answer(
        &self,
        mut sock: tokio::net::TcpStream,
        counts: &RwLock<Vec<(String, u64)>>,
    ) -> std::io::Result<()> {
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
                let deploys = counts.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
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

/// Read the deployment counts every `every` into `counts` (the last good ones stay when
/// a read fails).
async fn refresh_counts(store: Arc<dyn WatchStore>, counts: Arc<RwLock<Vec<(String, u64)>>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.deployment_counts().await {
            Ok(fresh) => *counts.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh,
            Err(e) => tracing::warn!(error = %e, "deployment counts not read for /metrics"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcc_core::deploy::{AuditAction, DeploymentState, NewDeployment, StateStore as _};

    #[test]
    fn only_loopback_without_the_public_flag() {
        for ok in ["127.0.0.1:9810", "[::1]:9810", "127.0.0.2:1"] {
            assert_eq!(check_listen(ok.parse().expect("an address"), false), Ok(()), "{ok}");
        }
        for public in ["0.0.0.0:9810", "[::]:9810", "10.0.0.5:9810"] {
            let addr: SocketAddr = public.parse().expect("an address");
            let why = check_listen(addr, false).expect_err(public);
            assert!(why.contains("not a loopback address") && why.contains("--metrics-public"), "{why}");
            assert_eq!(check_listen(addr, true), Ok(()), "{public} with --metrics-public");
        }
    }

    #[test]
    fn accept_errors_back_off_from_100ms_doubling_to_1s() {
        let ms: Vec<u128> = (1..=7).map(|n| accept_backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX), ACCEPT_BACKOFF_MAX);
    }

    async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    /// A store with `n` finished deployments, and an endpoint on it (cap `cap`).
    async fn serving(
        cap: usize,
    ) -> Result<(tempfile::TempDir, rpcc_store::SqliteStore, SocketAddr), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let store = rpcc_store::SqliteStore::open(&path).await?;
        let watch =
            rpcc_store::open_watch_url(&path.to_string_lossy(), None, rpcc_store::EnvironmentClaim::Any).await?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let endpoint = Endpoint {
            stats: Arc::new(WatchStats::default()),
            store: watch,
            started: Instant::now(),
            interval: Duration::from_secs(60),
            max_connections: cap,
            refresh: Duration::from_secs(3600),
        };
        tokio::spawn(endpoint.serve(listener));
        Ok((dir, store, addr))
    }

    async fn deploy(store: &rpcc_store::SqliteStore) -> Result<(), Box<dyn std::error::Error>> {
        let id = store
            .start_deployment(&NewDeployment {
                server: "s0".into(),
                action: AuditAction::Deploy,
                generation: "g1".into(),
                previous: None,
                actor: "test".into(),
            })
            .await?;
        store.finish_deployment(id, DeploymentState::Succeeded, "ok").await?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_served_from_cached_counts_not_a_query_per_request() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, addr) = serving(MAX_CONNECTIONS).await?;
        deploy(&store).await?;
        // The refresher read the counts once at start (maybe before that deployment).
        let line = "rpcc_deployments_total{state=\"succeeded\"} ";
        let mut first = get(addr, "/metrics").await?;
        for _ in 0..50 {
            if first.contains(line) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            first = get(addr, "/metrics").await?;
        }
        let seen = first.lines().find(|l| l.starts_with(line)).map(str::to_owned);
        deploy(&store).await?;
        deploy(&store).await?;
        for _ in 0..5 {
            let again = get(addr, "/metrics").await?;
            assert!(again.starts_with("HTTP/1.1 200 OK"), "{again}");
            let now = again.lines().find(|l| l.starts_with(line)).map(str::to_owned);
            assert_eq!(now, seen, "a request read the database (the refresh is hourly here)");
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, _store, addr) = serving(2).await?;
        // Two clients that send nothing hold both slots (for up to 5 s each).
        let idle_a = tokio::net::TcpStream::connect(addr).await?;
        let idle_b = tokio::net::TcpStream::connect(addr).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = tokio::spawn(get(addr, "/healthz"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!third.is_finished(), "a third connection was served past the cap of 2");
        drop(idle_a);
        let answer = tokio::time::timeout(Duration::from_secs(3), third).await???;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        drop(idle_b);
        Ok(())
    }
}
