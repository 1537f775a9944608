//! The scale part of the deploy benchmark: 10,000 simulated servers (a fake transport
//! answering each helper command after 50 ms) rolled out at concurrency 256, against the
//! ideal schedule, with peak memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::core::deploy::{DeploySource, Deployer, DeploymentState, FleetTarget, MemoryStore, RolloutPolicy};
use rpcc::core::generation::{Generation, GenerationFile, GenerationPath};
use rpcc::core::model::Inventory;
use rpcc::core::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError};
use rpcc::core::value::RemotePath;

use super::{peak_rss_kib, rss_kib};

/// A server that answers the deploy helper's commands after a fixed round-trip delay.
struct SimulatedServer {
    rtt: Duration,
    state: std::sync::Mutex<(Option<String>, Option<String>)>, // current, committed
}

#[async_trait::async_trait]
impl Transport for SimulatedServer {
    fn target(&self) -> String {
        "simulated".into()
    }

    async fn exec(&self, request: ExecRequest) -> Result<Output, TransportError> {
        tokio::time::sleep(self.rtt).await;
        let args = request.argv.args();
        let command = args.get(4).map(String::as_str).unwrap_or_default();
        let mut st = self.state.lock().expect("state");
        let report = |st: &(Option<String>, Option<String>)| {
            format!(
                "current={}\ncommitted={}\nlock=\nnow=0\ngenerations={}\n",
                st.0.clone().unwrap_or_default(),
                st.1.clone().unwrap_or_default(),
                st.0.clone().unwrap_or_default()
            )
        };
        let stdout = match command {
            "inspect" | "lock" => report(&st),
            "activate" => {
                st.0 = args.get(8).cloned();
                "activated=x\nreloaded=x\n".into()
            }
            // The current helper runs `nginx -t` in the stage command.
            "stage" if args.get(11).is_some_and(|w| w == "test") => "staged=x\nvalid=x\n".into(),
            "commit" => {
                st.1 = args.get(8).cloned();
                "committed=x\n".into()
            }
            _ => String::new(),
        };
        Ok(Output { status: ExitStatus::Code(0), stdout: stdout.into_bytes(), stderr: vec![], truncated: false })
    }

    async fn upload(&self, _: &RemotePath, _: &[u8], _: u32) -> Result<(), TransportError> {
        Ok(())
    }
}

pub(crate) fn scale_bench() {
    let servers = 10_000usize;
    let concurrency = 256usize;
    let rtt = Duration::from_millis(50);
    let toml: String = (0..servers)
        .map(|i| {
            format!(
                "[[servers]]\nname = \"sim{i}\"\nhost = \"203.0.113.{}\"\nport = {}\nuser = \"deploy\"\nhost_key = \"ssh-ed25519 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\nauth = {{ agent = true }}\n\n",
                i % 250 + 1,
                1024 + i
            )
        })
        .collect();
    let inv = Inventory::from_toml_str(&toml).expect("inventory");
    let mut files = BTreeMap::new();
    files.insert(
        GenerationPath::parse("nginx.conf").expect("path"),
        GenerationFile { bytes: Arc::from(&b"events {}\nhttp {}\n"[..]), mode: 0o644 },
    );
    let generation = Arc::new(Generation::new("0123456789abcdef".into(), files));
    let transports: Vec<Arc<dyn Transport>> = (0..servers)
        .map(|_| Arc::new(SimulatedServer { rtt, state: std::sync::Mutex::new((None, None)) }) as Arc<dyn Transport>)
        .collect();
    let targets: Vec<FleetTarget<'_>> = inv
        .servers
        .iter()
        .zip(&transports)
        .map(|(s, t)| FleetTarget {
            server: s,
            sites: vec![],
            source: DeploySource::Generation(generation.clone()),
            transport: t.clone(),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let deployer = Deployer::new(Arc::new(MemoryStore::new()), "bench@local");
    let policy = RolloutPolicy { concurrency, ..RolloutPolicy::default() };
    let before = rss_kib();
    let t = Instant::now();
    let report = rt.block_on(deployer.rollout(&targets, &policy));
    let secs = t.elapsed().as_secs_f64();
    let peak = peak_rss_kib();
    assert!(report.servers.iter().all(|r| r.state == DeploymentState::Succeeded));
    let rts = report.servers[0].round_trips as f64;
    // The lower bound: every slot busy all the time.
    let ideal = servers as f64 * rts * rtt.as_secs_f64() / concurrency as f64;
    println!(
        "scale: {servers} simulated servers, {} round trips each at {} ms, concurrency {concurrency}: {secs:.2} s, \
         ideal schedule {ideal:.2} s → {:.3}× ideal; peak RSS {:.1} MiB (+{:.1} MiB during the run) → {:.0} KiB per in-flight server",
        rts,
        rtt.as_millis(),
        secs / ideal,
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / concurrency as f64
    );
}
