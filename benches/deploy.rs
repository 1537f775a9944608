//! Deploy benchmark, side by side in one run (`cargo bench --bench deploy`):
//!
//! - a loopback fleet of 4 real sshd + nginx servers (rpcc-testkit), 50 and 500 TLS
//!   sites per server: rpcc (render + full protocol: stage, `nginx -t`, switch, signal,
//!   verify new workers, HTTP probe of every site, commit) against **the floor**
//!   (`benches/peers/floor.sh`: OpenSSH, tar over stdin, flip, `nginx -t`,
//!   `nginx -s reload`, servers in parallel); an unchanged inventory; one site changed;
//! - 10,000 simulated servers (a fake transport answering each helper command after
//!   50 ms) at concurrency 256 against the ideal schedule, with peak memory.
//!
//! `RPCC_BENCH_QUICK=1` runs fewer repetitions; `RPCC_BENCH_SKIP_FLEET=1` /
//! `RPCC_BENCH_SKIP_SCALE=1` skip a part.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::core::deploy::{
    DeployOptions, DeploySource, Deployer, DeploymentState, FleetTarget, MemoryStore, RolloutPolicy,
};
use rpcc::core::generation::{Generation, GenerationFile, GenerationPath, Renderer as _};
use rpcc::core::model::Inventory;
use rpcc::core::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError};
use rpcc::core::value::RemotePath;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::ssh::{SshPool, SshTarget};
use rpcc_testkit::Fleet;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_kib() -> u64 {
    rpcc_testkit::proc_status_kib("VmHWM")
}

fn rss_kib() -> u64 {
    rpcc_testkit::proc_status_kib("VmRSS")
}

fn inventory(fleet: &Fleet, sites: usize, tag: &str, cert: &Path, changed_site: Option<&str>) -> Inventory {
    let mut toml = fleet.deploy_inventory_toml();
    let (c, k) = (cert.join("cert.pem"), cert.join("key.pem"));
    for i in 0..sites {
        let t = if i == 0 { changed_site.unwrap_or(tag) } else { tag };
        toml.push_str(&format!(
            "[[sites]]\ndomain = \"site{i}.bench.example\"\naliases = [\"www{i}.bench.example\"]\ngroup = \"all\"\n\
             upstream = {{ backends = [\"127.0.0.1:9\", \"127.0.0.2:9\"] }}\n\
             tls = {{ mode = \"custom\", cert = \"{}\", key = \"{}\", redirect_http = true }}\n\
             health_path = \"/healthz\"\nheaders = {{ X-Deploy = \"{t}\" }}\n\n",
            c.display(),
            k.display()
        ));
    }
    Inventory::from_toml_str(&toml).expect("inventory")
}

fn make_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=bench.example", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The test nginx runs as the fleet's user: let it read the key.
    for f in ["key.pem", "cert.pem"] {
        let _ = Command::new("chmod").arg("0644").arg(dir.join(f)).status();
    }
    let _ = Command::new("chmod").arg("0755").arg(dir).status();
}

struct Run {
    secs: f64,
    sent_bytes: usize,
    round_trips: u32,
}

fn rpcc_deploy(
    rt: &tokio::runtime::Runtime,
    deployer: &Deployer,
    inv: &Inventory,
    transports: &[Arc<dyn Transport>],
) -> Run {
    let t = Instant::now();
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let gens: Vec<Arc<Generation>> =
        inv.servers.iter().map(|s| Arc::new(renderer.render(inv, s).expect("render"))).collect();
    let targets: Vec<FleetTarget<'_>> = inv
        .servers
        .iter()
        .zip(&gens)
        .zip(transports)
        .map(|((s, g), tr)| FleetTarget {
            server: s,
            sites: inv.sites_for_server(s.name.as_str()).collect(),
            source: DeploySource::Generation(g.clone()),
            transport: tr.clone(),
        })
        .collect();
    let policy = RolloutPolicy { concurrency: 4, ..RolloutPolicy::default() };
    let report = rt.block_on(deployer.rollout(&targets, &policy));
    let secs = t.elapsed().as_secs_f64();
    if std::env::var_os("RPCC_BENCH_STEPS").is_some() {
        let r = &report.servers[0];
        let steps: Vec<String> = r.steps.iter().map(|s| format!("{}={:.3}", s.step, s.took.as_secs_f64())).collect();
        println!("  {} steps: {}", r.server, steps.join(" "));
    }
    for r in &report.servers {
        assert!(matches!(r.state, DeploymentState::Succeeded | DeploymentState::NoOp), "{}: {}", r.server, r.detail);
    }
    Run {
        secs,
        sent_bytes: report.servers.iter().map(|r| r.uploaded_bytes).sum(),
        round_trips: report.servers.iter().map(|r| r.round_trips).max().unwrap_or(0),
    }
}

/// Render each server's tree into `scratch` (untimed: the peers get their trees for
/// free). Returns (server index, local dir, generation id).
fn render_trees(inv: &Inventory, scratch: &Path) -> Vec<(PathBuf, String)> {
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    inv.servers
        .iter()
        .map(|s| {
            let g = renderer.render(inv, s).expect("render");
            let dir = scratch.join(format!("{}-{}", s.name, g.id()));
            for (p, f) in g.files() {
                let target = dir.join(p.as_str());
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::write(target, &f.bytes).expect("write");
            }
            (dir, g.id().to_owned())
        })
        .collect()
}

/// Time `run`, then wait (untimed) until every master has finished the reload a peer
/// triggered, so the next measurement does not pay for it.
fn timed_peer(fleet: &Fleet, run: impl FnOnce()) -> f64 {
    let before: Vec<Vec<u32>> = fleet.servers().iter().map(|s| children(s.nginx_pid())).collect();
    let t = Instant::now();
    run();
    let secs = t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (s, old) in fleet.servers().iter().zip(&before) {
        while children(s.nginx_pid()).iter().any(|p| old.contains(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    secs
}

fn floor_deploy(fleet: &Fleet, inv: &Inventory, scratch: &Path) -> f64 {
    let trees = render_trees(inv, scratch);
    let mut jobs = Vec::new();
    for ((s, ts), (dir, id)) in inv.servers.iter().zip(fleet.servers()).zip(&trees) {
        let ssh = fleet.ssh(ts);
        let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/floor.sh"));
        cmd.arg(dir)
            .arg(id)
            .arg(s.nginx.managed_root.as_str())
            .arg(s.nginx.root.as_str())
            .arg("--")
            .arg(ssh.get_program())
            .args(ssh.get_args());
        jobs.push(cmd);
    }
    timed_peer(fleet, || {
        let children_procs: Vec<_> = jobs.iter_mut().map(|c| c.spawn().expect("floor.sh")).collect();
        for c in children_procs {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "floor failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    })
}

/// The Python tools (paramiko, ansible-core) in the project's venv, installed on demand.
fn python_tools() -> Option<PathBuf> {
    let venv = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/rpcc-tools");
    let ok = |v: &Path| {
        Command::new(v.join("bin/python"))
            .args(["-c", "import paramiko, ansible"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok(&venv) {
        println!("(installing paramiko and ansible-core into {} for the peers)", venv.display());
        let _ = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        let _ = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "paramiko==3.5.1", "ansible-core==2.17.7"])
            .status();
    }
    ok(&venv).then_some(venv)
}

fn peer_spec(fleet: &Fleet, inv: &Inventory, trees: &[(PathBuf, String)]) -> Vec<serde_json::Value> {
    inv.servers
        .iter()
        .zip(fleet.servers())
        .zip(trees)
        .map(|((s, ts), (dir, id))| {
            serde_json::json!({
                "name": s.name.as_str(),
                "host": "127.0.0.1",
                "port": ts.ssh_port(),
                "user": ts.user(),
                "key": fleet.client_key(),
                "alias": ts.host_key_alias(),
                "tree": dir,
                "gen_dir": format!("{}/generations/{id}", s.nginx.managed_root),
                "mroot": s.nginx.managed_root.as_str(),
                "root": s.nginx.root.as_str(),
            })
        })
        .collect()
}

fn legacy_deploy(fleet: &Fleet, venv: &Path, inv: &Inventory, scratch: &Path) -> f64 {
    let spec = serde_json::to_vec(&peer_spec(fleet, inv, &render_trees(inv, scratch))).expect("json");
    timed_peer(fleet, || {
        let mut child = Command::new(venv.join("bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/legacy.py"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("legacy.py");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &spec).expect("spec");
        assert!(child.wait().expect("wait").success(), "legacy peer failed");
    })
}

/// Two Ansible runs: the change, then the same playbook again with nothing to change.
fn ansible_deploy(fleet: &Fleet, venv: &Path, inv: &Inventory, scratch: &Path) -> (f64, f64) {
    let spec = peer_spec(fleet, inv, &render_trees(inv, scratch));
    let mut hosts = String::from("[fleet]\n");
    for s in &spec {
        hosts.push_str(&format!(
            "{name} ansible_host=127.0.0.1 ansible_port={port} ansible_user={user} ansible_ssh_private_key_file={key} \
             ansible_ssh_common_args='-F /dev/null -o HostKeyAlias={alias} -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes' \
             ansible_python_interpreter=/usr/bin/python3 tree={tree} gen_dir={gen} mroot={mroot} root={root}\n",
            name = s["name"].as_str().unwrap_or_default(),
            port = s["port"],
            user = s["user"].as_str().unwrap_or_default(),
            key = s["key"].as_str().unwrap_or_default(),
            alias = s["alias"].as_str().unwrap_or_default(),
            kh = fleet.known_hosts().display(),
            tree = s["tree"].as_str().unwrap_or_default(),
            gen = s["gen_dir"].as_str().unwrap_or_default(),
            mroot = s["mroot"].as_str().unwrap_or_default(),
            root = s["root"].as_str().unwrap_or_default(),
        ));
    }
    let inventory = scratch.join("ansible-hosts.ini");
    std::fs::write(&inventory, hosts).expect("hosts");
    let run = || {
        let out = Command::new(venv.join("bin/ansible-playbook"))
            .arg("-i")
            .arg(&inventory)
            .arg("-f")
            .arg("4")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/ansible/deploy.yml"))
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_LOCAL_TEMP", scratch.join("ansible-local"))
            .env("ANSIBLE_REMOTE_TEMP", "/tmp/.ansible-rpcc-bench")
            .output()
            .expect("ansible-playbook");
        assert!(out.status.success(), "ansible failed: {}", String::from_utf8_lossy(&out.stdout));
    };
    let changed = timed_peer(fleet, run);
    let unchanged = timed_peer(fleet, run);
    (changed, unchanged)
}

/// Child processes of `pid` (nginx workers).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some(after) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if after.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok()) == Some(pid)
            && let Some(p) = e.file_name().to_str().and_then(|n| n.parse().ok())
        {
            out.push(p);
        }
    }
    out
}

fn fleet_bench(quick: bool) {
    let fleet = Fleet::start(4).expect("fleet");
    let scratch = tempfile::tempdir().expect("tmp");
    let certs = fleet.servers()[0].nginx_prefix().parent().expect("dir").parent().expect("fleet").join("bench-cert");
    std::fs::create_dir_all(&certs).expect("certs");
    make_cert(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let pool = SshPool::new();
    let store = Arc::new(MemoryStore::new());
    let deployer = Deployer::new(store, "bench@local")
        .with_options(DeployOptions::default().keep(3))
        .with_probe(Arc::new(rpcc::monitor::HttpHealthProbe::new(Duration::from_secs(5))));
    println!("deploy: 4 servers (real sshd + nginx on loopback), TLS sites (RSA 2048), 2 cores");
    println!(
        "{:>6} {:>12} {:>12} {:>8} {:>12} {:>8} {:>16} {:>14}",
        "sites", "rpcc s", "floor s", "ratio", "unchanged s", "ratio", "1 changed s", "1 changed sent"
    );
    for (sites, reps) in [(50usize, if quick { 2 } else { 5 }), (500, if quick { 1 } else { 3 })] {
        let tr: Vec<Arc<dyn Transport>> = {
            let inv = inventory(&fleet, 1, "x", &certs, None);
            inv.servers
                .iter()
                .map(|s| {
                    pool.transport(SshTarget::from_server(s, Path::new("/"), None).expect("target")).expect("t")
                        as Arc<dyn Transport>
                })
                .collect()
        };
        // Warm-up: the first activation takes over the hand-made config.
        rpcc_deploy(&rt, &deployer, &inventory(&fleet, sites, "warm", &certs, None), &tr);
        let (mut ours, mut floor, mut noop, mut one, mut one_bytes, mut full_bytes) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for rep in 0..reps {
            let inv_floor = inventory(&fleet, sites, &format!("floor{rep}"), &certs, None);
            let inv = inventory(&fleet, sites, &format!("rpcc{rep}"), &certs, None);
            if rep % 2 == 0 {
                floor.push(floor_deploy(&fleet, &inv_floor, scratch.path()));
                let r = rpcc_deploy(&rt, &deployer, &inv, &tr);
                ours.push(r.secs);
                full_bytes.push(r.sent_bytes as f64);
            } else {
                let r = rpcc_deploy(&rt, &deployer, &inv, &tr);
                ours.push(r.secs);
                full_bytes.push(r.sent_bytes as f64);
                floor.push(floor_deploy(&fleet, &inv_floor, scratch.path()));
                // The floor ran last; bring the servers back to rpcc's generation for the
                // unchanged case (the floor does not record what rpcc recorded).
                rpcc_deploy(&rt, &deployer, &inv, &tr);
            }
            let r = rpcc_deploy(&rt, &deployer, &inv, &tr);
            assert_eq!(r.round_trips, 1, "unchanged inventory: one round trip per server");
            noop.push(r.secs);
            let changed = inventory(&fleet, sites, &format!("rpcc{rep}"), &certs, Some(&format!("changed{rep}")));
            let r = rpcc_deploy(&rt, &deployer, &changed, &tr);
            one.push(r.secs);
            one_bytes.push(r.sent_bytes as f64);
        }
        let slow = if sites == 50 && std::env::var_os("RPCC_BENCH_SKIP_SLOW_PEERS").is_none() {
            python_tools().map(|venv| {
                let legacy =
                    legacy_deploy(&fleet, &venv, &inventory(&fleet, sites, "legacy", &certs, None), scratch.path());
                let (ansible, ansible_noop) =
                    ansible_deploy(&fleet, &venv, &inventory(&fleet, sites, "ansible", &certs, None), scratch.path());
                // Back to rpcc's records before the next case.
                rpcc_deploy(&rt, &deployer, &inventory(&fleet, sites, "after-peers", &certs, None), &tr);
                (legacy, ansible, ansible_noop)
            })
        } else {
            None
        };
        let (o, f, n, c) = (median(ours.clone()), median(floor), median(noop.clone()), median(one));
        println!(
            "{sites:>6} {o:>12.3} {f:>12.3} {:>7.2}× {n:>12.3} {:>7.2}× {c:>16.3} {:>11.0} KiB",
            o / f,
            n / f,
            median(one_bytes) / 1024.0
        );
        println!(
            "       (full deploy sends {:.0} KiB over 4 servers; ratios are rpcc / floor, lower is better)",
            median(full_bytes) / 1024.0
        );
        if let Some((legacy, ansible, ansible_noop)) = slow {
            println!(
                "       legacy way (paramiko, connection per command, per site, servers in turn): {legacy:.1} s → rpcc {:.0}× faster",
                legacy / o
            );
            println!(
                "       Ansible (copy loop, validate, reload handler, forks 4): {ansible:.1} s → rpcc {:.0}× faster; \
                 unchanged {ansible_noop:.1} s → rpcc unchanged {:.0}× faster",
                ansible / o,
                ansible_noop / n
            );
        }
    }
}

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
        let command = args.get(3).map(String::as_str).unwrap_or_default();
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
                st.0 = args.get(7).cloned();
                "activated=x\nreloaded=x\n".into()
            }
            "commit" => {
                st.1 = args.get(7).cloned();
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

fn scale_bench() {
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

fn main() {
    let quick = std::env::var_os("RPCC_BENCH_QUICK").is_some();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("RPCC_BENCH_SKIP_SCALE").is_none() {
        scale_bench();
    }
    if std::env::var_os("RPCC_BENCH_SKIP_FLEET").is_none() {
        fleet_bench(quick);
    }
}
