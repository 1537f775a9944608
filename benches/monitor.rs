//! Monitoring benchmark (`cargo bench --bench monitor`): one `rpcc check`-style round over
//! 1,000 servers (Glances API v4 served by a local fake) and 5,000 sites (plain HTTP,
//! served by a local fake), with bounded concurrency; then the real `rpcc watch` on the
//! same inventory, idling between rounds: CPU share and peak memory.
//!
//! The fakes run in a child process (this binary with `--fake`), so the numbers are
//! rpcc's alone. `RPCC_BENCH_QUICK=1` shortens the idle measurement.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::core::model::Inventory;
use rpcc::monitor::{GlancesSource, MetricsState, SiteProber, SiteTarget, collect_all};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SERVERS: usize = 1000;
const SITES_PER_SERVER: usize = 5;

fn glances_body(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or("") {
        "cpu" => r#"{"total": 12.5}"#,
        "mem" | "memswap" => r#"{"percent": 40.0}"#,
        "load" => r#"{"min1": 0.5, "min5": 0.4, "min15": 0.3}"#,
        "fs" => r#"[{"mnt_point": "/", "percent": 50.0, "size": 100, "used": 50}]"#,
        "network" => r#"[{"interface_name": "eth0", "bytes_recv_rate_per_sec": 1.0, "bytes_sent_rate_per_sec": 1.0}]"#,
        "uptime" => r#""1 day, 2:00:00""#,
        _ => "ok\n",
    }
}

/// Serve forever: keep-alive HTTP/1.1, one canned answer per path.
async fn fake_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut pending = String::new();
            loop {
                let n = match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                while let Some(end) = pending.find("\r\n\r\n") {
                    let head: String = pending.drain(..end + 4).collect();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let body = glances_body(&path);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn run_fakes() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let glances = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sites = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{} {}", glances.local_addr().unwrap().port(), sites.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::join!(fake_server(glances), fake_server(sites));
    });
}

fn inventory(glances_port: u16, sites_port: u16, interval: &str) -> String {
    let mut t = String::with_capacity(SERVERS * 600);
    for i in 0..SERVERS {
        t.push_str(&format!(
            "[[servers]]\nname = \"m{i}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"deploy\"\nauth = {{ agent = true }}\n\
             glances = {{ port = {glances_port} }}\nnginx = {{ listen_http = \"127.0.0.1:{sites_port}\" }}\n\n\
             [[groups]]\nname = \"g{i}\"\nservers = [\"m{i}\"]\n\n",
            10_000 + i // SSH ports are never used by monitoring; they only keep servers distinct
        ));
        for j in 0..SITES_PER_SERVER {
            t.push_str(&format!(
                "[[sites]]\ndomain = \"s{j}.m{i}.bench.example\"\ngroup = \"g{i}\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
                 tls = {{ mode = \"off\" }}\nhealth_path = \"/healthz\"\n\n"
            ));
        }
    }
    t.push_str(&format!("[monitor]\ninterval = \"{interval}\"\nconcurrency = 64\ntimeout = \"5s\"\n"));
    t
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:")).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--fake") {
        run_fakes();
        return;
    }
    let quick = std::env::var_os("RPCC_BENCH_QUICK").is_some();
    let exe = std::env::current_exe().unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut fakes =
        KillOnDrop(Command::new(&exe).arg("--fake").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(fakes.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ports: Vec<u16> = line.split_whitespace().map(|p| p.parse().unwrap()).collect();
    let (gport, sport) = (ports[0], ports[1]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.toml");
    std::fs::write(&path, inventory(gport, sport, "30s")).unwrap();
    let inv = Inventory::from_toml_file(&path).unwrap();

    // 1. One round in-process, at several concurrencies.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "monitoring round: {SERVERS} servers (Glances, 7 endpoints each) + {} sites, 2 cores",
        SERVERS * SITES_PER_SERVER
    );
    for concurrency in [16usize, 64, 256] {
        let cpu0 = cpu_ticks(std::process::id());
        let started = Instant::now();
        let (ok_metrics, ok_sites) = rt.block_on(async {
            let http = GlancesSource::client(Duration::from_secs(5)).unwrap();
            let sources: Vec<Arc<GlancesSource>> = inv
                .servers
                .iter()
                .map(|s| Arc::new(GlancesSource::for_server(s, None, http.clone()).unwrap().unwrap()))
                .collect();
            let prober = SiteProber::new(Duration::from_secs(5));
            let mut targets = Vec::new();
            for s in &inv.servers {
                for site in inv.sites_for_server(s.name.as_str()) {
                    targets.push(SiteTarget::for_site(s, site).await.unwrap());
                }
            }
            let metrics = collect_all(&sources, concurrency);
            let sites = futures_util::StreamExt::collect::<Vec<_>>(futures_util::StreamExt::buffer_unordered(
                futures_util::stream::iter(targets.iter().map(|t| prober.probe(t))),
                concurrency,
            ));
            let (m, s) = tokio::join!(metrics, sites);
            (
                m.iter().filter(|r| matches!(r.state, MetricsState::Ok { .. })).count(),
                s.iter().filter(|r| r.http.as_ref().is_ok_and(|h| h.status == 200)).count(),
            )
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(std::process::id()) - cpu0) as f64 / 100.0;
        assert_eq!((ok_metrics, ok_sites), (SERVERS, SERVERS * SITES_PER_SERVER));
        println!("  concurrency {concurrency:>3}: {wall:.2} s wall, {cpu:.2} s CPU (rpcc process)");
    }

    // 2. The real `rpcc watch`, idle between rounds.
    let bin = exe.parent().and_then(|p| p.parent()).map(|p| p.join("rpcc")).unwrap();
    let mut watch = Command::new(&bin)
        .arg("watch")
        .arg(&path)
        .arg("--state")
        .arg(dir.path().join("state.db"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rpcc binary (cargo build --release --bin rpcc)");
    let pid = watch.id();
    // The first round starts within the jitter (≤ 3 s) and takes a few seconds.
    std::thread::sleep(Duration::from_secs(12));
    let idle = if quick { 10 } else { 18 };
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let idle_cpu = (cpu_ticks(pid) - t0) as f64 / 100.0 / idle as f64 * 100.0;
    let peak = status_kib(pid, "VmHWM") as f64 / 1024.0;
    let rss = status_kib(pid, "VmRSS") as f64 / 1024.0;
    println!(
        "rpcc watch, {SERVERS} servers + {} sites, idle between rounds for {idle} s: {idle_cpu:.2} % of one core (target < 1 %), \
         peak RSS {peak:.1} MiB, RSS now {rss:.1} MiB (target <= 100 MB)",
        SERVERS * SITES_PER_SERVER
    );
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = watch.wait();

    // 3. Three `rpcc watch` processes sharing one state split the fleet: each member's
    //    servers per round, read from its /metrics after its second round.
    let shared = dir.path().join("shared.toml");
    std::fs::write(&shared, inventory(gport, sport, "10s")).unwrap();
    let state = dir.path().join("shared.db");
    let mut members = Vec::new();
    for i in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .args(["watch", shared.to_str().unwrap(), "--member", &format!("watch-{i}"), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state")
            .arg(&state)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        members.push((KillOnDrop(child), port));
    }
    let metric = |port: u16, name: &str| -> Option<f64> {
        use std::io::Read as _;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && !members.iter().all(|(_, p)| metric(*p, "rpcc_watch_rounds_total").is_some_and(|r| r >= 2.0))
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let owned: Vec<f64> =
        members.iter().map(|(_, p)| metric(*p, "rpcc_watch_owned_servers").unwrap_or(f64::NAN)).collect();
    let even = SERVERS as f64 / 3.0;
    let worst = owned.iter().map(|o| (o - even).abs() / even * 100.0).fold(0.0_f64, f64::max);
    println!(
        "3 rpcc watch processes on one state, {SERVERS} servers: {:?} servers each per round (sum {}), \
         worst {worst:.1} % from an even split (target within 10 %)",
        owned.iter().map(|o| *o as u64).collect::<Vec<_>>(),
        owned.iter().sum::<f64>()
    );
    for (child, _) in &members {
        let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    }
    drop(members);
    drop(fakes);
}
