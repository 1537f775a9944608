//! [`GlancesSource`]: metrics from a server's Glances REST API v4 (cpu, mem, memswap,
//! load, fs, network, uptime). An unreachable or misbehaving Glances is a reported
//! [`MetricsState`], never a crash; the password (a keyring envelope) never appears in
//! errors or `Debug`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rpcc_core::keyring::Keyring;
use rpcc_core::model::Server;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

/// A file system's usage.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FsUsage {
    /// Mount point.
    pub mount: String,
    /// Used, percent.
    pub percent: f64,
    /// Size in bytes.
    pub size: u64,
    /// Used bytes.
    pub used: u64,
}

/// A network interface's throughput.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NetUsage {
    /// Interface name.
    pub interface: String,
    /// Received bytes per second.
    pub rx_per_sec: f64,
    /// Sent bytes per second.
    pub tx_per_sec: f64,
}

/// One server's metrics.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// CPU busy, percent.
    pub cpu_percent: f64,
    /// Memory used, percent.
    pub mem_percent: f64,
    /// Swap used, percent.
    pub swap_percent: f64,
    /// Load averages (1, 5, 15 minutes).
    pub load: [f64; 3],
    /// File systems.
    pub fs: Vec<FsUsage>,
    /// Network interfaces.
    pub network: Vec<NetUsage>,
    /// Uptime as Glances reports it (e.g. `3 days, 2:01:00`).
    pub uptime: String,
}

/// The outcome of one collection.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsState {
    /// Collected.
    Ok {
        /// The metrics.
        metrics: Metrics,
    },
    /// No answer (refused, timed out, reset).
    Unreachable {
        /// Why.
        reason: String,
    },
    /// Glances refused the credentials (HTTP 401/403).
    Unauthorized {
        /// HTTP status.
        status: u16,
    },
    /// An answer that is not what API v4 returns.
    Malformed {
        /// Which endpoint (`cpu`, `fs` …).
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
}

/// One server's collection result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MetricsReport {
    /// Server name.
    pub server: String,
    /// What happened.
    #[serde(flatten)]
    pub state: MetricsState,
    /// How long it took.
    #[serde(serialize_with = "secs")]
    pub took: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Why a source could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlancesError {
    /// The password envelope could not be opened.
    #[error("server {server}: glances password: {source}")]
    Credentials {
        /// Server.
        server: String,
        /// Why.
        #[source]
        source: rpcc_core::keyring::KeyringError,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

impl GlancesError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A server's Glances endpoint.
#[derive(Clone)]
pub struct GlancesSource {
    server: String,
    base: String,
    auth: Option<(String, SecretString)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for GlancesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlancesSource")
            .field("server", &self.server)
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// The endpoints read per collection.
const ENDPOINTS: [&str; 7] = ["cpu", "mem", "memswap", "load", "fs", "network", "uptime"];

/// The largest Glances answer read (a real one is a few KiB; a hostile or broken
/// server could stream without end).
const MAX_BODY: usize = 4 << 20;

enum Capped {
    Transport(reqwest::Error),
    TooLarge,
}

/// The response body, read chunk by chunk and abandoned once it passes `max` bytes.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Capped> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Capped::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl GlancesSource {
    /// A shared HTTP client with `timeout` per request.
    pub fn client(timeout: Duration) -> Result<reqwest::Client, GlancesError> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| GlancesError::Client(e.to_string()))
    }

    /// The source for `server`, or `None` when it has no `glances` settings.
    pub fn for_server(
        server: &Server,
        keyring: Option<&Keyring>,
        http: reqwest::Client,
    ) -> Result<Option<Self>, GlancesError> {
        let Some(g) = &server.glances else { return Ok(None) };
        if !g.tls && !g.insecure_http {
            tracing::warn!(
                server = %server.name,
                "Glances over plain HTTP: metrics can be read and forged on the way; set glances.tls = true, \
                 or insecure_http = true to accept it"
            );
        }
        let scheme = if g.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}/api/4/", server.host.to_authority(g.port));
        let auth = match (&g.user, &g.password) {
            (Some(user), Some(pw)) => {
                let pw = pw
                    .open(keyring)
                    .map_err(|source| GlancesError::Credentials { server: server.name.to_string(), source })?;
                Some((user.to_string(), pw))
            }
            _ => None,
        };
        Ok(Some(Self { server: server.name.to_string(), base, auth, http }))
    }

    /// A source for an explicit base URL (`http://127.0.0.1:61208/api/4/`), for tests and
    /// embedding.
    pub fn at(server: &str, base: &str, auth: Option<(String, SecretString)>, http: reqwest::Client) -> Self {
        let base = if base.ends_with('/') { base.to_owned() } else { format!("{base}/") };
        Self { server: server.to_owned(), base, auth, http }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn get(&self, endpoint: &str) -> Result<Value, MetricsState> {
        let mut req = self.http.get(format!("{}{endpoint}", self.base));
        if let Some((user, pw)) = &self.auth {
            req = req.basic_auth(user, Some(pw.expose_secret()));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| MetricsState::Unreachable { reason: crate::http_error::describe(&e, false) })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(MetricsState::Unauthorized { status });
        }
        if status != 200 {
            return Err(MetricsState::Malformed { endpoint: endpoint.into(), reason: format!("HTTP {status}") });
        }
        let body = read_capped(resp, MAX_BODY).await.map_err(|why| match why {
            Capped::Transport(e) => MetricsState::Unreachable { reason: crate::http_error::describe(&e, false) },
            Capped::TooLarge => MetricsState::Malformed {
                endpoint: endpoint.into(),
                reason: format!("answer larger than {} MiB", MAX_BODY >> 20),
            },
        })?;
        serde_json::from_slice(&body)
            .map_err(|e| MetricsState::Malformed { endpoint: endpoint.into(), reason: format!("not JSON: {e}") })
    }

    /// Collect every metric (the endpoints in parallel).
    pub async fn collect(&self) -> MetricsReport {
        let started = Instant::now();
        let answers = futures_util::future::join_all(ENDPOINTS.iter().map(|e| self.get(e))).await;
        let state = match answers.into_iter().collect::<Result<Vec<Value>, MetricsState>>() {
            Err(state) => state,
            Ok(values) => match parse(&values) {
                Ok(metrics) => MetricsState::Ok { metrics },
                Err((endpoint, reason)) => MetricsState::Malformed { endpoint: endpoint.into(), reason },
            },
        };
        MetricsReport { server: self.server.clone(), state, took: started.elapsed() }
    }
}

/// Collect from every source, at most `concurrency` at once; reports in input order.
pub async fn collect_all(sources: &[Arc<GlancesSource>], concurrency: usize) -> Vec<MetricsReport> {
    let jobs = sources.iter().enumerate().map(|(i, s)| async move { (i, s.collect().await) });
    let mut done: Vec<(usize, MetricsReport)> =
        futures_util::stream::iter(jobs).buffer_unordered(concurrency.max(1)).collect().await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn parse(values: &[Value]) -> Result<Metrics, (&'static str, String)> {
    let need = |endpoint: &'static str, v: &Value, key: &str| {
        num(v, key).ok_or_else(|| (endpoint, format!("missing number `{key}`")))
    };
    let [cpu, mem, swap, load, fs, net, uptime] = values else {
        return Err(("all", "wrong number of answers".into()));
    };
    let fs = fs
        .as_array()
        .ok_or(("fs", "not a list".to_owned()))?
        .iter()
        .map(|f| {
            Ok(FsUsage {
                mount: f
                    .get("mnt_point")
                    .and_then(Value::as_str)
                    .ok_or(("fs", "missing `mnt_point`".to_owned()))?
                    .to_owned(),
                percent: need("fs", f, "percent")?,
                size: f.get("size").and_then(Value::as_u64).unwrap_or(0),
                used: f.get("used").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, (&'static str, String)>>()?;
    let network = net
        .as_array()
        .ok_or(("network", "not a list".to_owned()))?
        .iter()
        .map(|n| NetUsage {
            interface: n.get("interface_name").and_then(Value::as_str).unwrap_or("?").to_owned(),
            rx_per_sec: num(n, "bytes_recv_rate_per_sec").or_else(|| num(n, "rx")).unwrap_or(0.0),
            tx_per_sec: num(n, "bytes_sent_rate_per_sec").or_else(|| num(n, "tx")).unwrap_or(0.0),
        })
        .collect();
    Ok(Metrics {
        cpu_percent: need("cpu", cpu, "total")?,
        mem_percent: need("mem", mem, "percent")?,
        swap_percent: need("memswap", swap, "percent")?,
        load: [need("load", load, "min1")?, need("load", load, "min5")?, need("load", load, "min15")?],
        fs,
        network,
        uptime: uptime.as_str().ok_or(("uptime", "not a string".to_owned()))?.to_owned(),
    })
}
