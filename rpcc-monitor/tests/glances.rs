//! The Glances client against a real `glances -w --disable-webui` (REST API v4) on
//! loopback, and against a hostile local HTTP server: malformed answers, refused
//! credentials, a closed port, a server that never answers, bounded concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rpcc_core::model::Inventory;
use rpcc_monitor::{GlancesSource, MetricsState, collect_all};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn client(timeout_ms: u64) -> reqwest::Client {
    GlancesSource::client(Duration::from_millis(timeout_ms)).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_from_a_real_glances_through_the_inventory() -> anyhow::Result<()> {
    let g = rpcc_testkit::GlancesServer::start()?;
    let inv = Inventory::from_toml_str(&format!(
        "[[servers]]\nname = \"mon-1\"\nhost = \"127.0.0.1\"\nuser = \"deploy\"\nauth = {{ agent = true }}\n\
         glances = {{ port = {} }}\n",
        g.port()
    ))?;
    let source = GlancesSource::for_server(&inv.servers[0], None, client(5000))?.expect("glances configured");
    // Glances answers its first requests while still sampling: retry briefly.
    let mut report = source.collect().await;
    for _ in 0..20 {
        if matches!(report.state, MetricsState::Ok { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = source.collect().await;
    }
    let MetricsState::Ok { metrics } = &report.state else { panic!("{report:?}") };
    assert_eq!(report.server, "mon-1");
    assert!((0.0..=100.0).contains(&metrics.cpu_percent), "{metrics:?}");
    assert!(metrics.mem_percent > 0.0 && metrics.mem_percent < 100.0, "{metrics:?}");
    assert!(metrics.fs.iter().any(|f| f.mount == "/" && f.size > 0), "{metrics:?}");
    assert!(!metrics.uptime.is_empty() && metrics.load[0] >= 0.0);
    // A server without `glances` has no source.
    let plain = Inventory::from_toml_str(
        "[[servers]]\nname = \"x\"\nhost = \"127.0.0.1\"\nuser = \"d\"\nauth = { agent = true }\n",
    )?;
    assert!(GlancesSource::for_server(&plain.servers[0], None, client(1000))?.is_none());
    Ok(())
}

/// A local HTTP server answering every request with `respond(path, auth header)`;
/// counts the largest number of requests in flight at once.
async fn fake(
    respond: impl Fn(&str, Option<&str>) -> Option<(u16, String)> + Send + Sync + 'static,
    delay: Duration,
) -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let respond = Arc::new(respond);
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_out = peak.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (respond, live, peak) = (respond.clone(), live.clone(), peak.clone());
            tokio::spawn(async move {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                let auth = req
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                    .map(str::to_owned);
                tokio::time::sleep(delay).await;
                if let Some((status, body)) = respond(&path, auth.as_deref()) {
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    // A request stops counting before its answer goes out: once the
                    // client has it, the client may start the next one, and this task
                    // may run again only later (a likely cause of one failure seen under a
                    // full parallel run).
                    live.fetch_sub(1, Ordering::SeqCst);
                    let _ = sock.write_all(resp.as_bytes()).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await; // never answer
                    live.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    Ok((port, peak_out))
}

fn good(path: &str) -> String {
    match path.rsplit('/').next().unwrap_or("") {
        "cpu" => r#"{"total": 12.5}"#.into(),
        "mem" | "memswap" => r#"{"percent": 40.0}"#.into(),
        "load" => r#"{"min1": 0.5, "min5": 0.4, "min15": 0.3}"#.into(),
        "fs" => r#"[{"mnt_point": "/", "percent": 50.0, "size": 100, "used": 50}]"#.into(),
        "network" => {
            r#"[{"interface_name": "eth0", "bytes_recv_rate_per_sec": 10.0, "bytes_sent_rate_per_sec": 5.0}]"#.into()
        }
        "uptime" => r#""1 day, 2:00:00""#.into(),
        _ => "{}".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_become_states_naming_the_server_and_the_password_stays_hidden() -> anyhow::Result<()> {
    const PASSWORD: &str = "canary-glances-pw-771";
    // Malformed cpu answer.
    let (port, _) = fake(
        |p, _| Some(if p.ends_with("/cpu") { (200, "<html>oops".into()) } else { (200, good(p)) }),
        Duration::ZERO,
    )
    .await?;
    let r = GlancesSource::at("edge-1", &format!("http://127.0.0.1:{port}/api/4"), None, client(2000)).collect().await;
    assert_eq!(r.server, "edge-1");
    assert!(matches!(&r.state, MetricsState::Malformed { endpoint, .. } if endpoint == "cpu"), "{r:?}");
    // A field missing.
    let (port, _) =
        fake(|p, _| Some(if p.ends_with("/load") { (200, "{}".into()) } else { (200, good(p)) }), Duration::ZERO)
            .await?;
    let r = GlancesSource::at("edge-1", &format!("http://127.0.0.1:{port}/api/4"), None, client(2000)).collect().await;
    assert!(
        matches!(&r.state, MetricsState::Malformed { endpoint, reason } if endpoint == "load" && reason.contains("min1")),
        "{r:?}"
    );
    // Credentials: sent as Basic auth; refused ones are a state.
    let expected = "Basic bW9uOmNhbmFyeS1nbGFuY2VzLXB3LTc3MQ=="; // mon:canary-glances-pw-771
    let (port, _) = fake(
        move |p, auth| Some(if auth == Some(expected) { (200, good(p)) } else { (401, "{}".into()) }),
        Duration::ZERO,
    )
    .await?;
    let base = format!("http://127.0.0.1:{port}/api/4");
    let right = GlancesSource::at("edge-1", &base, Some(("mon".into(), SecretString::from(PASSWORD))), client(2000));
    assert!(matches!(right.collect().await.state, MetricsState::Ok { .. }));
    let wrong = GlancesSource::at("edge-1", &base, Some(("mon".into(), SecretString::from("nope"))), client(2000));
    let r = wrong.collect().await;
    assert_eq!(r.state, MetricsState::Unauthorized { status: 401 });
    assert!(!format!("{right:?} {r:?}").contains(PASSWORD));
    // Nothing listening, and a server that never answers (bounded by the timeout).
    let r = GlancesSource::at("edge-9", &format!("http://127.0.0.1:{}/api/4", free_port()), None, client(1000))
        .collect()
        .await;
    assert!(matches!(&r.state, MetricsState::Unreachable { reason } if reason.contains("connect")), "{r:?}");
    let (port, _) = fake(|_, _| None, Duration::ZERO).await?;
    let started = Instant::now();
    let r = GlancesSource::at("edge-8", &format!("http://127.0.0.1:{port}/api/4"), None, client(500)).collect().await;
    assert!(matches!(&r.state, MetricsState::Unreachable { reason } if reason.contains("timed out")), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_across_servers_is_bounded() -> anyhow::Result<()> {
    let (port, peak) = fake(|p, _| Some((200, good(p))), Duration::from_millis(30)).await?;
    let http = client(5000);
    let sources: Vec<Arc<GlancesSource>> = (0..40)
        .map(|i| {
            Arc::new(GlancesSource::at(&format!("s{i}"), &format!("http://127.0.0.1:{port}/api/4"), None, http.clone()))
        })
        .collect();
    let reports = collect_all(&sources, 4).await;
    assert_eq!(reports.len(), 40);
    assert!(
        reports
            .iter()
            .enumerate()
            .all(|(i, r)| r.server == format!("s{i}") && matches!(r.state, MetricsState::Ok { .. }))
    );
    // 4 servers at once, 7 endpoints each.
    assert!(peak.load(Ordering::SeqCst) <= 4 * 7, "peak {}", peak.load(Ordering::SeqCst));
    Ok(())
}

/// A server whose cpu endpoint streams a chunked body without end (bounded here at 1 GiB,
/// stopping when the client hangs up) or announces a 10 GB body.
async fn endless(announce: bool) -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent_out = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let path = String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).unwrap_or("").to_owned();
                if !path.ends_with("/cpu") {
                    let body = good(&path);
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
                    return;
                }
                let head = if announce {
                    "HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = if announce {
                    vec![b' '; 65_536]
                } else {
                    [b"10000\r\n".as_slice(), &[b' '; 65_536], b"\r\n"].concat()
                };
                for _ in 0..16_384 {
                    if sock.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent.fetch_add(65_536, Ordering::SeqCst);
                }
            });
        }
    });
    Ok((port, sent_out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_answers_are_cut_at_the_body_cap() -> anyhow::Result<()> {
    for announce in [false, true] {
        let (port, sent) = endless(announce).await?;
        let started = Instant::now();
        let r = GlancesSource::at("edge-1", &format!("http://127.0.0.1:{port}/api/4"), None, client(20_000))
            .collect()
            .await;
        assert!(
            matches!(&r.state, MetricsState::Malformed { endpoint, reason } if endpoint == "cpu" && reason.contains("larger than 4 MiB")),
            "announce={announce}: {r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        // The client stopped reading: far less than the 1 GiB the server would send.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            sent.load(Ordering::SeqCst) < 64 << 20,
            "announce={announce}: {} bytes sent",
            sent.load(Ordering::SeqCst)
        );
    }
    Ok(())
}
