//! State store benchmark (`cargo bench --bench state`): 10,000 simulated servers planned
//! and their status read by one `Engine`, over the SQLite store and over PostgreSQL
//! (a real server from rpcc-testkit on loopback, fsync off like the SQLite store's
//! `synchronous = NORMAL` WAL), in one run, printing the ratio.
//!
//! Both sides pay the same: the same inventory (10,000 servers, one group, 2 sites each),
//! the same in-process simulated servers (a `TransportPool` answering like a fresh
//! server, so no network is involved), the same engine concurrency (32 servers at a
//! time), both warm (one untimed run first). Each store first holds 10,000 recorded
//! deployments (one per server) and their audit entries, so `status` reads a real row per
//! server. Times are medians of 5 runs. `RPCC_BENCH_SERVERS` changes the fleet size.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::core::deploy::{AuditAction, AuditEvent, DeploymentState, NewDeployment};
use rpcc::core::model::{Inventory, Server};
use rpcc::core::store::EngineStore;
use rpcc::core::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError, TransportPool};
use rpcc::core::value::RemotePath;
use rpcc::engine::{Engine, Selection};

/// A fresh server: every command succeeds and reports no rpcc state yet.
struct SimulatedServer;

#[async_trait::async_trait]
impl Transport for SimulatedServer {
    fn target(&self) -> String {
        "simulated".into()
    }
    async fn exec(&self, _request: ExecRequest) -> Result<Output, TransportError> {
        Ok(Output { status: ExitStatus::Code(0), stdout: b"current=\n".to_vec(), stderr: Vec::new(), truncated: false })
    }
    async fn upload(&self, _path: &RemotePath, _bytes: &[u8], _mode: u32) -> Result<(), TransportError> {
        Ok(())
    }
}

#[derive(Debug)]
struct SimulatedFleet;

impl TransportPool for SimulatedFleet {
    fn transport(&self, _server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        Ok(Arc::new(SimulatedServer))
    }
}

fn inventory(servers: usize) -> Inventory {
    let mut toml = String::new();
    for i in 0..servers {
        toml.push_str(&format!(
            "[[servers]]\nname = \"s{i:05}\"\nhost = \"203.0.113.{}\"\nport = {}\nuser = \"deploy\"\nauth = {{ agent = true }}\n",
            1 + i % 250,
            2200 + i / 250
        ));
    }
    let names: Vec<String> = (0..servers).map(|i| format!("\"s{i:05}\"")).collect();
    toml.push_str(&format!("[[groups]]\nname = \"all\"\nservers = [{}]\n", names.join(", ")));
    for site in ["app.example.com", "shop.example.com"] {
        toml.push_str(&format!(
            "[[sites]]\ndomain = \"{site}\"\ngroup = \"all\"\nupstream = {{ backends = [\"10.0.0.5:8080\"] }}\ntls = {{ mode = \"off\" }}\n"
        ));
    }
    Inventory::from_toml_str(&toml).expect("inventory")
}

async fn seed(store: &dyn EngineStore, inv: &Inventory) -> Duration {
    let started = Instant::now();
    for s in &inv.servers {
        let new = NewDeployment {
            server: s.name.to_string(),
            action: AuditAction::Deploy,
            generation: "0123456789abcdef".into(),
            previous: None,
            actor: "bench@cp".into(),
        };
        let id = store.start_deployment(&new).await.expect("start");
        store.finish_deployment(id, DeploymentState::Succeeded, "ok").await.expect("finish");
        let event = AuditEvent::now("bench@cp", AuditAction::Deploy, Some(s.name.as_str()), "succeeded", "seed");
        store.append_audit(&event).await.expect("audit");
    }
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn measure(engine: &Engine, servers: usize) -> (Duration, Duration) {
    let all = Selection::default();
    let plans = engine.plan(&all).await.expect("plan");
    assert_eq!(plans.len(), servers);
    assert!(plans.iter().all(|p| p.result.is_ok()), "every simulated server planned");
    let statuses = engine.status(&all).await.expect("status");
    assert!(statuses.iter().all(|s| s.error.is_none() && s.last.is_some()), "every server's last deployment read");
    let (mut plan, mut status) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        engine.plan(&all).await.expect("plan");
        plan.push(t.elapsed());
        let t = Instant::now();
        engine.status(&all).await.expect("status");
        status.push(t.elapsed());
    }
    (median(plan), median(status))
}

fn main() {
    let servers: usize = std::env::var("RPCC_BENCH_SERVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pg = rpcc_testkit::PgServer::start().expect("PostgreSQL (scripts/setup-host installs it)");
    let url = pg.fresh_database().expect("database");
    let dir = tempfile::tempdir().expect("tmp");
    let sqlite = dir.path().join("state.db");
    let inv = inventory(servers);
    println!("state bench: {servers} simulated servers, 2 sites each, engine concurrency 32, medians of 5 (warm)");
    let mut results = Vec::new();
    for (name, location) in [("sqlite", sqlite.to_str().unwrap().to_owned()), ("postgres", url.clone())] {
        let (plan, status, seeded) = rt.block_on(async {
            let store =
                rpcc::store::open_url(&location, None, rpcc::store::EnvironmentClaim::For(None)).await.expect("store");
            let seeded = seed(&*store, &inv).await;
            let engine =
                Engine::with_store(inv.clone(), store, None).expect("engine").with_transports(Arc::new(SimulatedFleet));
            let (plan, status) = measure(&engine, servers).await;
            (plan, status, seeded)
        });
        println!(
            "  {name:<9} plan {:>8.3} s   status {:>8.3} s   (seeding {servers} deployments + audit entries: {:.2} s)",
            plan.as_secs_f64(),
            status.as_secs_f64(),
            seeded.as_secs_f64()
        );
        results.push((plan, status));
    }
    let ratio = |i: usize| match i {
        0 => results[1].0.as_secs_f64() / results[0].0.as_secs_f64(),
        _ => results[1].1.as_secs_f64() / results[0].1.as_secs_f64(),
    };
    println!("  postgres / sqlite: plan {:.2}x, status {:.2}x (target: <= 1.2x)", ratio(0), ratio(1));
}
