//! Deploy benchmark, side by side in one run (`cargo bench --bench deploy`):
//!
//! - a loopback fleet of 4 real sshd + nginx servers (rpcc-testkit), 50 and 500 TLS
//!   sites per server. rpcc runs the whole protocol (render, lock, stage, `nginx -t` or
//!   single parse, switch, signal, verify new workers, HTTPS probe of every site,
//!   commit) two ways: **cold** (`rpcc apply` as a new process: its own connections,
//!   inventory parse, SQLite state) and **warm** (the library over pooled
//!   connections). **The floor** (`benches/peers/floor.sh`: OpenSSH, tar over stdin,
//!   flip, `nginx -t`, `nginx -s reload`, servers in parallel, trees rendered for free)
//!   runs cold (a new connection per server) and warm (through a ControlMaster opened
//!   before the clock starts), each unverified (clock stops when `nginx -s reload`
//!   returns) and **verified** (clock stops when new workers serve, polled as rpcc's
//!   helper polls). Every way deploys a new tag; their order rotates per repetition.
//!   Then an unchanged inventory and one site changed (warm);
//! - at 50 × 4, the legacy way (paramiko) and Ansible;
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
use rpcc::core::generation::{Generation, Renderer as _};
use rpcc::core::model::Inventory;
use rpcc::core::transport::Transport;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::ssh::{SshPool, SshTarget};
use rpcc_testkit::Fleet;

#[path = "deploy/scale.rs"]
mod scale;

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
    Inventory::from_toml_str(&inventory_toml(fleet, sites, tag, cert, changed_site)).expect("inventory")
}

fn inventory_toml(fleet: &Fleet, sites: usize, tag: &str, cert: &Path, changed_site: Option<&str>) -> String {
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
    toml
}

/// The sites' certificate key: ECDSA P-256 (what rpcc-acme issues, and certbot's
/// default since 2.0), or RSA 2048 with `RPCC_BENCH_CERT=rsa`.
fn cert_kind() -> &'static str {
    if std::env::var("RPCC_BENCH_CERT").is_ok_and(|v| v == "rsa") { "RSA 2048" } else { "ECDSA P-256" }
}

fn make_cert(dir: &Path) {
    let key: &[&str] = if cert_kind() == "RSA 2048" {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    };
    let out = Command::new("openssl")
        .args(["req", "-x509"])
        .args(key)
        .args(["-nodes", "-days", "30", "-subj", "/CN=bench.example"])
        // The post-deploy probe checks that the certificate covers each site's name.
        .args(["-addext", "subjectAltName=DNS:*.bench.example", "-keyout"])
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
    let before: Vec<Vec<u32>> = fleet.servers().iter().map(|s| rpcc_testkit::child_pids(s.nginx_pid())).collect();
    let t = Instant::now();
    run();
    let secs = t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (s, old) in fleet.servers().iter().zip(&before) {
        while rpcc_testkit::child_pids(s.nginx_pid()).iter().any(|p| old.contains(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    secs
}

/// How the floor connects and when its clock stops.
#[derive(Clone, Copy)]
struct FloorMode {
    /// Through an OpenSSH ControlMaster opened before the clock starts (warm), or a new
    /// connection per server (cold).
    warm: bool,
    /// Stop the clock when new workers serve (verified floor), or when `nginx -s reload`
    /// returns.
    verified: bool,
}

/// The OpenSSH argv for `ts`, multiplexed over a persistent ControlMaster when `warm`.
fn ssh_argv(fleet: &Fleet, ts: &rpcc_testkit::TestServer, control_dir: &Path, warm: bool) -> Vec<String> {
    let ssh = fleet.ssh(ts);
    let mut argv: Vec<String> =
        std::iter::once(ssh.get_program()).chain(ssh.get_args()).map(|a| a.to_string_lossy().into_owned()).collect();
    if warm {
        let destination = argv.pop().expect("destination");
        argv.extend([
            "-o".into(),
            format!("ControlPath={}/cm-{}", control_dir.display(), ts.name()),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            "ControlPersist=600".into(),
            destination,
        ]);
    }
    argv
}

/// Open (untimed) the ControlMasters the warm floor reuses.
fn open_control_masters(fleet: &Fleet, control_dir: &Path) {
    for ts in fleet.servers() {
        let argv = ssh_argv(fleet, ts, control_dir, true);
        let ok = Command::new(&argv[0]).args(&argv[1..]).arg("true").status().is_ok_and(|s| s.success());
        assert!(ok, "ControlMaster for {}", ts.name());
    }
}

fn close_control_masters(fleet: &Fleet, control_dir: &Path) {
    for ts in fleet.servers() {
        let mut argv = ssh_argv(fleet, ts, control_dir, true);
        let destination = argv.pop().expect("destination");
        let _ = Command::new(&argv[0]).args(&argv[1..]).args(["-O", "exit"]).arg(destination).output();
    }
}

fn floor_deploy(fleet: &Fleet, inv: &Inventory, scratch: &Path, mode: FloorMode) -> f64 {
    let trees = render_trees(inv, scratch);
    let mut jobs = Vec::new();
    for ((s, ts), (dir, id)) in inv.servers.iter().zip(fleet.servers()).zip(&trees) {
        let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/floor.sh"));
        cmd.arg(dir)
            .arg(id)
            .arg(s.nginx.managed_root.as_str())
            .arg(s.nginx.root.as_str())
            .arg(s.nginx.pid.as_str())
            .arg(if mode.verified { "1" } else { "0" })
            .arg("--")
            .args(ssh_argv(fleet, ts, scratch, mode.warm));
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

/// `rpcc apply` as a new process: its own connections, inventory parse, SQLite state.
fn rpcc_cold(inv_toml: &str, scratch: &Path) -> f64 {
    let file = scratch.join("cold-inventory.toml");
    std::fs::write(&file, inv_toml).expect("inventory");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rpcc"))
        .arg("apply")
        .arg(&file)
        .arg("--state")
        .arg(scratch.join("cold-state.db"))
        .args(["--yes", "--strategy", "all", "--concurrency", "4", "--keep", "3"])
        .env_remove("RPCC_KEYS")
        .env_remove("RPCC_KEY_FILE")
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rpcc apply");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "rpcc apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    secs
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
                "pin": ts.host_key_pin(),
                "pid": s.nginx.pid.as_str(),
                "log_dir": s.nginx.log_dir.as_str(),
                "listen_http": s.nginx.listen_http.to_string(),
                "sites": inv.sites_for_server(s.name.as_str()).map(|x| x.domain.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn legacy_deploy(fleet: &Fleet, venv: &Path, inv: &Inventory, scratch: &Path) -> f64 {
    let spec = serde_json::to_vec(&peer_spec(fleet, inv, &render_trees(inv, scratch))).expect("json");
    // Untimed: the legacy engine writes `<root>/nginx.conf` in place, and there it is
    // rpcc's symlink into a generation; give it a file of its own to overwrite.
    for s in &inv.servers {
        let main = Path::new(s.nginx.root.as_str()).join("nginx.conf");
        let text = std::fs::read(&main).expect("main config");
        std::fs::remove_file(&main).expect("unlink");
        std::fs::write(&main, text).expect("main config file");
        // Owned like the directory: the peer logs in as the fleet's user.
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(s.nginx.root.as_str()).expect("root"));
        let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(s.nginx.root.as_str()).expect("root"));
        std::os::unix::fs::chown(&main, Some(owner), Some(group)).expect("chown");
    }
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
            .arg(spec.len().to_string())
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

/// One timed way of deploying a fresh inventory to the fleet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Floor(bool, bool), // (warm, verified)
    RpccWarm(bool),    // library, pooled connections; single parse?
    RpccCold(bool),    // `rpcc apply` as a new process; single parse?
    RpccWarmNoProbe,   // library, pooled, nginx -t first, no post-deploy probe
}

const WAYS: [Way; 9] = [
    Way::RpccWarmNoProbe,
    Way::Floor(false, false),
    Way::Floor(false, true),
    Way::Floor(true, false),
    Way::Floor(true, true),
    Way::RpccWarm(false),
    Way::RpccWarm(true),
    Way::RpccCold(false),
    Way::RpccCold(true),
];

#[allow(clippy::too_many_lines)]
fn fleet_bench(quick: bool) {
    let fleet = Fleet::start(4).expect("fleet");
    let scratch = tempfile::tempdir().expect("tmp");
    let certs = fleet.servers()[0].nginx_prefix().parent().expect("dir").parent().expect("fleet").join("bench-cert");
    std::fs::create_dir_all(&certs).expect("certs");
    make_cert(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let pool = SshPool::new();
    let store = Arc::new(MemoryStore::new());
    let unprobed = Deployer::new(store.clone(), "bench@local").with_options(DeployOptions::default().keep(3));
    let deployer = Deployer::new(store, "bench@local")
        .with_options(DeployOptions::default().keep(3))
        .with_probe(Arc::new(rpcc::monitor::HttpHealthProbe::new(Duration::from_secs(5))));
    println!("deploy: 4 servers (real sshd + nginx on loopback), TLS sites ({}), 2 cores", cert_kind());
    println!("  cold = a new process / new SSH connections; warm = pooled connection / OpenSSH ControlMaster open");
    println!("  floor = clock stops when `nginx -s reload` returns; verified floor = when new workers serve");
    let inv_of = |sites: usize, tag: &str, single: bool| {
        let toml = inventory_toml(&fleet, sites, tag, &certs, None);
        if single { Fleet::single_parse(&toml) } else { toml }
    };
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
        // Warm-up: the first activation takes over the hand-made config; the pooled
        // connections and the ControlMasters open here, untimed.
        rpcc_deploy(&rt, &deployer, &inventory(&fleet, sites, "warm", &certs, None), &tr);
        open_control_masters(&fleet, scratch.path());
        let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let (mut noop, mut one, mut one_bytes, mut full_bytes) = (vec![], vec![], vec![], vec![]);
        for rep in 0..reps {
            // Every way in turn, the order rotated each repetition; each deploys a new tag.
            for k in 0..WAYS.len() {
                let way = WAYS[(k + rep) % WAYS.len()];
                let tag = format!("{way:?}{rep}").replace(['(', ')', ',', ' '], "");
                let secs = match way {
                    Way::Floor(warm, verified) => floor_deploy(
                        &fleet,
                        &inventory(&fleet, sites, &tag, &certs, None),
                        scratch.path(),
                        FloorMode { warm, verified },
                    ),
                    Way::RpccWarm(single) => {
                        let inv = Inventory::from_toml_str(&inv_of(sites, &tag, single)).expect("inventory");
                        let r = rpcc_deploy(&rt, &deployer, &inv, &tr);
                        if !single {
                            full_bytes.push(r.sent_bytes as f64);
                        }
                        r.secs
                    }
                    Way::RpccCold(single) => rpcc_cold(&inv_of(sites, &tag, single), scratch.path()),
                    Way::RpccWarmNoProbe => {
                        let inv = Inventory::from_toml_str(&inv_of(sites, &tag, false)).expect("inventory");
                        rpcc_deploy(&rt, &unprobed, &inv, &tr).secs
                    }
                };
                times.entry(format!("{way:?}")).or_default().push(secs);
            }
            let inv = inventory(&fleet, sites, &format!("base{rep}"), &certs, None);
            rpcc_deploy(&rt, &deployer, &inv, &tr);
            let r = rpcc_deploy(&rt, &deployer, &inv, &tr);
            assert_eq!(r.round_trips, 1, "unchanged inventory: one round trip per server");
            noop.push(r.secs);
            let changed = inventory(&fleet, sites, &format!("base{rep}"), &certs, Some(&format!("changed{rep}")));
            let r = rpcc_deploy(&rt, &deployer, &changed, &tr);
            one.push(r.secs);
            one_bytes.push(r.sent_bytes as f64);
        }
        close_control_masters(&fleet, scratch.path());
        let m = |w: Way| median(times[&format!("{w:?}")].clone());
        println!("\n{sites} sites × 4 servers, medians of {reps}:");
        println!(
            "  {:<26} {:>8} {:>9} {:>8} {:>15} {:>8}",
            "", "rpcc s", "floor s", "/ floor", "verified floor", "/ verif."
        );
        for (label, warm, single) in [
            ("cold, nginx -t first", false, false),
            ("warm, nginx -t first", true, false),
            ("cold, single parse", false, true),
            ("warm, single parse", true, true),
        ] {
            let ours = if warm { m(Way::RpccWarm(single)) } else { m(Way::RpccCold(single)) };
            let (floor, verified) = (m(Way::Floor(warm, false)), m(Way::Floor(warm, true)));
            println!(
                "  {label:<26} {ours:>8.3} {floor:>9.3} {:>7.2}× {verified:>15.3} {:>7.2}×",
                ours / floor,
                ours / verified
            );
        }
        let bare = m(Way::RpccWarmNoProbe);
        println!(
            "  {:<26} {bare:>8.3} {:>9.3} {:>7.2}× {:>15.3} {:>7.2}×   (what the HTTPS probe of every site costs: {:.3} s)",
            "warm, no probe",
            m(Way::Floor(true, false)),
            bare / m(Way::Floor(true, false)),
            m(Way::Floor(true, true)),
            bare / m(Way::Floor(true, true)),
            m(Way::RpccWarm(false)) - bare
        );
        let (n, c) = (median(noop), median(one));
        println!(
            "  unchanged (warm): {n:.3} s ({:.2}× the warm floor); one site changed: {c:.3} s, {:.0} KiB sent \
             (a full deploy sends {:.0} KiB over 4 servers)",
            n / m(Way::Floor(true, false)),
            median(one_bytes) / 1024.0,
            median(full_bytes) / 1024.0
        );
        if sites == 50
            && std::env::var_os("RPCC_BENCH_SKIP_SLOW_PEERS").is_none()
            && let Some(venv) = python_tools()
        {
            let legacy =
                legacy_deploy(&fleet, &venv, &inventory(&fleet, sites, "legacy", &certs, None), scratch.path());
            let (ansible, ansible_noop) =
                ansible_deploy(&fleet, &venv, &inventory(&fleet, sites, "ansible", &certs, None), scratch.path());
            // Back to rpcc's records before the next case.
            rpcc_deploy(&rt, &deployer, &inventory(&fleet, sites, "after-peers", &certs, None), &tr);
            let cold = m(Way::RpccCold(false));
            println!(
                "  legacy way (the Flask example's engine: paramiko, a connection per command and per upload, \
                 its plain-HTTP template, one nginx -t + reload per server, servers in turn): {legacy:.1} s → \
                 rpcc cold {:.0}× faster",
                legacy / cold
            );
            println!(
                "  Ansible (one archive per host, nginx -t, reload handler, pipelining, forks 4): {ansible:.1} s → rpcc cold {:.0}× faster (the cold floor itself: {:.0}× faster); \
                 unchanged {ansible_noop:.1} s → rpcc unchanged {:.0}× faster",
                ansible / cold,
                ansible / m(Way::Floor(false, false)),
                ansible_noop / n
            );
        }
    }
}

fn main() {
    let quick = std::env::var_os("RPCC_BENCH_QUICK").is_some();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("RPCC_BENCH_SKIP_SCALE").is_none() {
        scale::scale_bench();
    }
    if std::env::var_os("RPCC_BENCH_SKIP_FLEET").is_none() {
        fleet_bench(quick);
    }
}
