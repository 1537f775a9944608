//! Fault campaign: many seeded deploys to a real loopback fleet, each with a random
//! fault — a crash between any two steps (the engine stops dead, no clean-up), or the
//! network cut, stalled or reset mid-deploy by the fault proxy in front of sshd —
//! then every server is checked:
//!
//! - `current` points at a complete generation (every file matches its manifest);
//! - nginx serves one generation for every site (never a mix), and it is the
//!   generation `current` or `committed` names (a known-good or the new one);
//! - `nginx -t` of the main config passes;
//!
//! and at the end a clean deploy succeeds everywhere, no deployment stays `running`,
//! every finished attempt has its audit entry and the audit chain verifies.
//!
//! `RPCC_FAULT_DEPLOYS` (default 200) and `RPCC_FAULT_SEED` (default fixed) tune it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{get, render, site};
use rpcc::core::deploy::{
    AuditAction, DeployOptions, DeploySource, DeployStep, Deployer, DeploymentState, FleetTarget, HookDecision,
    RolloutPolicy, StateStore as _, StepHook,
};
use rpcc::core::model::Inventory;
use rpcc::core::transport::Transport;
use rpcc::ssh::{SshPool, SshTarget};
use rpcc::store::SqliteStore;
use rpcc_testkit::{FaultMode, FaultProxy, Fleet};

/// xorshift64*: a seeded, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Crashes one server's deploy right before one step.
struct CrashAt {
    server: String,
    step: DeployStep,
    fired: AtomicBool,
}

impl StepHook for CrashAt {
    fn before(&self, server: &str, step: DeployStep) -> HookDecision {
        if server == self.server && step == self.step {
            self.fired.store(true, Ordering::SeqCst);
            HookDecision::Crash
        } else {
            HookDecision::Continue
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Crash(DeployStep),
    Cut,
    Stall,
    Reset,
}

const SITES: [&str; 3] = ["a.test.example", "b.test.example", "c.test.example"];

fn inventory(fleet: &Fleet, proxies: &[FaultProxy], tag: &str) -> Inventory {
    let mut toml = fleet.deploy_inventory_toml();
    for (s, p) in fleet.servers().iter().zip(proxies) {
        toml = toml.replace(&format!("port = {}\n", s.ssh_port()), &format!("port = {}\n", p.port()));
    }
    for d in SITES {
        toml.push_str(&site(d, tag));
    }
    Inventory::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}"))
}

fn read_link_id(p: &Path) -> Option<String> {
    std::fs::read_link(p).ok().and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
}

/// Every file of `dir` matches `.rpcc/sha256`.
fn complete(dir: &Path) -> bool {
    std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "--strict", ".rpcc/sha256"])
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn seeded_fault_campaign_never_leaves_a_mixed_or_lost_config() -> anyhow::Result<()> {
    let deploys: usize = std::env::var("RPCC_FAULT_DEPLOYS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("RPCC_FAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_cafe);
    let fleet = Fleet::start(2)?;
    let proxies: Vec<FaultProxy> = fleet
        .servers()
        .iter()
        .map(|s| FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], s.ssh_port()))))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let rt = common::runtime();
    let store = Arc::new(rt.block_on(SqliteStore::open(&dir.path().join("state.db")))?);
    let pool = SshPool::new();
    let options = DeployOptions::default()
        .reload_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(4))
        .lock_ttl(Duration::from_secs(600))
        .health_attempts(2, Duration::from_millis(100))
        .keep(3);
    let policy = RolloutPolicy { max_failed: 2, ..RolloutPolicy::default() };
    let mut rng = Rng(seed | 1);
    let mut tags: HashMap<String, String> = HashMap::new(); // generation id → tag
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut finished_attempts: HashMap<String, usize> = HashMap::new();
    let mut violations = Vec::new();
    let started = Instant::now();

    let transports = |inv: &Inventory| -> Vec<Arc<dyn Transport>> {
        inv.servers
            .iter()
            .map(|s| {
                let mut t = SshTarget::from_server(s, Path::new("/"), None).expect("target");
                t.timeouts.connect = Duration::from_secs(1);
                t.timeouts.auth = Duration::from_secs(2);
                t.timeouts.keepalive = Duration::from_secs(1);
                t.retry.attempts = 2;
                t.retry.base_delay = Duration::from_millis(50);
                pool.transport(t).expect("transport") as Arc<dyn Transport>
            })
            .collect()
    };

    for i in 0..=deploys {
        let last = i == deploys; // a final clean run
        let tag = format!("t{i}");
        let inv = inventory(&fleet, &proxies, &tag);
        let gens = render(&inv);
        for g in &gens {
            tags.insert(g.id().to_owned(), tag.clone());
        }
        let fault = if last {
            Fault::None
        } else {
            match rng.below(100) {
                0..=19 => Fault::None,
                20..=64 => Fault::Crash(DeployStep::ALL[rng.below(DeployStep::ALL.len() as u64) as usize]),
                65..=79 => Fault::Cut,
                80..=89 => Fault::Reset,
                _ => Fault::Stall,
            }
        };
        let victim = rng.below(2) as usize;
        // Each run acts as its own control-plane process; after a crash that process is
        // gone (its pid, above the kernel's pid_max, never exists).
        let mut deployer = Deployer::new(store.clone(), "campaign@ci")
            .with_holder(&format!("campaign@ci:{}:{i:x}", 5_000_000 + i))
            .with_options(options.clone())
            .with_probe(Arc::new(rpcc::monitor::HttpHealthProbe::new(Duration::from_secs(2))));
        let crash = match fault {
            Fault::Crash(step) => {
                let hook = Arc::new(CrashAt { server: format!("s{victim}"), step, fired: AtomicBool::new(false) });
                deployer = deployer.with_hook(hook.clone());
                Some(hook)
            }
            _ => None,
        };
        // Network faults hit one server's proxy at a random moment of the deploy.
        let injector = match fault {
            Fault::Cut | Fault::Reset | Fault::Stall => {
                let mode = match fault {
                    Fault::Cut => FaultMode::CutAfter(rng.below(30_000)),
                    Fault::Reset => FaultMode::Reset,
                    _ => FaultMode::Stall,
                };
                let delay = Duration::from_millis(rng.below(400));
                let proxy = &proxies[victim];
                Some((proxy, mode, delay))
            }
            _ => None,
        };
        let tr = transports(&inv);
        let targets: Vec<FleetTarget<'_>> = inv
            .servers
            .iter()
            .zip(&gens)
            .zip(&tr)
            .map(|((s, g), t)| FleetTarget {
                server: s,
                sites: inv.sites_for_server(s.name.as_str()).collect(),
                source: DeploySource::Generation(g.clone()),
                transport: t.clone(),
            })
            .collect();
        let run_started = Instant::now();
        let report = std::thread::scope(|scope| {
            if let Some((proxy, mode, delay)) = injector {
                scope.spawn(move || {
                    std::thread::sleep(delay);
                    proxy.set_mode(mode);
                });
            }
            rt.block_on(deployer.rollout(&targets, &policy))
        });
        for p in &proxies {
            p.set_mode(FaultMode::Forward);
        }
        let fault_name = match fault {
            Fault::Crash(step) if crash.as_ref().is_some_and(|c| c.fired.load(Ordering::SeqCst)) => {
                format!("crash before {step}")
            }
            Fault::Crash(_) => "crash (step not reached)".to_owned(),
            other => format!("{other:?}").to_lowercase(),
        };
        if std::env::var_os("RPCC_FAULT_VERBOSE").is_some() {
            let states: Vec<_> = report.servers.iter().map(|r| r.state.as_str()).collect();
            eprintln!("#{i} {fault_name}: {states:?} in {:.2} s", run_started.elapsed().as_secs_f64());
        }
        *faults.entry(fault_name).or_default() += 1;
        for r in &report.servers {
            *outcomes.entry(r.state.as_str().to_owned()).or_default() += 1;
            let crashed = matches!(r.error, Some(rpcc::core::deploy::DeployError::Crashed(_)));
            if !crashed && r.state != DeploymentState::Skipped {
                *finished_attempts.entry(r.server.clone()).or_default() += 1;
            }
            if last {
                assert!(
                    matches!(r.state, DeploymentState::Succeeded | DeploymentState::NoOp),
                    "final clean run on {}: {:?} {}",
                    r.server,
                    r.state,
                    r.detail
                );
            }
        }

        // Invariants on every server, read from its file system and its nginx. A helper
        // whose connection was cut finishes its step on the server (it ignores SIGHUP and
        // SIGPIPE so that a switch is always followed by its signal). Like the next rpcc
        // run, the check holds the helper's guard while it looks, so it sees a settled
        // server rather than nginx in the middle of that helper's reload.
        for ts in fleet.servers() {
            let root = ts.managed_root();
            let _guard = match std::fs::File::open(root.join(".guard")) {
                Ok(f) => {
                    f.lock()?;
                    Some(f)
                }
                Err(_) => None, // no helper ever took it
            };
            let Some(current) = read_link_id(&root.join("current")) else {
                continue; // never activated yet: still the hand-made config
            };
            let committed = std::fs::read_to_string(root.join("committed")).unwrap_or_default().trim().to_owned();
            if !complete(&root.join("generations").join(&current)) {
                violations.push(format!("#{i} {}: current {current} is incomplete", ts.name()));
            }
            let served: Vec<Option<String>> =
                SITES.iter().map(|d| get(ts.http_port(), d, "/healthz").and_then(|r| r.1)).collect();
            let first = served[0].clone();
            if served.iter().any(|t| *t != first) || first.is_none() {
                violations.push(format!("#{i} {}: mixed or missing config: {served:?}", ts.name()));
                continue;
            }
            let allowed = [tags.get(&current), tags.get(&committed)];
            if !allowed.iter().any(|t| t.map(String::as_str) == first.as_deref()) {
                violations.push(format!(
                    "#{i} {}: serves {first:?}, current={current} ({:?}), committed={committed} ({:?})",
                    ts.name(),
                    allowed[0],
                    allowed[1]
                ));
            }
            let t =
                std::process::Command::new("/usr/sbin/nginx").args(["-t", "-q", "-c"]).arg(ts.nginx_conf()).output()?;
            if !t.status.success() {
                violations.push(format!("#{i} {}: nginx -t fails: {}", ts.name(), String::from_utf8_lossy(&t.stderr)));
            }
        }
    }

    // Pruning kept the last `keep` (3) generations after the final commit, plus 0.
    for ts in fleet.servers() {
        let gens: Vec<String> = std::fs::read_dir(ts.managed_root().join("generations"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "0")
            .collect();
        assert!(gens.len() <= 3, "{}: {gens:?}", ts.name());
        let committed = std::fs::read_to_string(ts.managed_root().join("committed"))?.trim().to_owned();
        assert!(gens.contains(&committed), "{}: committed {committed} kept", ts.name());
    }

    // The store: nothing left running, every finished attempt audited, chain intact.
    let rows = rt.block_on(store.deployments(None, 100_000))?;
    let running = rows.iter().filter(|d| d.state == DeploymentState::Running).count();
    let log = rt.block_on(store.audit_log())?;
    for s in ["s0", "s1"] {
        let audited = log
            .iter()
            .filter(|e| e.event.action == AuditAction::Deploy && e.event.server.as_deref() == Some(s))
            .count();
        assert_eq!(audited, finished_attempts.get(s).copied().unwrap_or(0), "{s}: one audit entry per finished deploy");
    }
    let chain = rt.block_on(store.verify_audit())?;
    println!(
        "fault campaign: seed {seed:#x}, {} deploy runs × 2 servers in {:.0} s\nfaults: {faults:?}\noutcomes: {outcomes:?}\n\
         audit entries: {}, chain intact: {}, deployments left running: {running}, lost or mixed configs: {}",
        deploys + 1,
        started.elapsed().as_secs_f64(),
        log.len(),
        chain.broken.is_none(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(chain.broken, None);
    // The final clean run finished every crashed deployment (marked abandoned).
    assert_eq!(running, 0, "deployments left running");
    Ok(())
}
