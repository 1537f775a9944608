//! Certificates benchmark, side by side in one run (`cargo bench --bench certs`): issue
//! and deploy N sites' certificates (default 100, each with an alias) on a loopback
//! fleet of 4 real sshd + nginx servers, from a real ACME test CA (Pebble, validating
//! HTTP-01 against the server DNS points at through a real dnsmasq).
//!
//! - **rpcc**: a new `Engine` (new SSH connections, new ACME account), `apply` with the
//!   sites already deployed without certificates: orders in parallel, each answer
//!   uploaded to all 4 servers, certificates stored sealed, then one verified deploy
//!   per server with the certificates inside the generation.
//! - **certbot** (`benches/peers/certbot.sh`): `certbot certonly --webroot` once per site
//!   on the server DNS points at (new account on its first run), then one tar stream per
//!   server over OpenSSH with `nginx -t` + `nginx -s reload`, servers in parallel.
//!
//! Both start from the same served state (every site answering the challenge path over
//! HTTP), against the same CA, with the same names. `RPCC_BENCH_SITES=N` changes N;
//! `RPCC_BENCH_ORDERS=K` the orders rpcc places at once (default 8).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rpcc::certs::CertificateAction;
use rpcc::core::keyring::Keyring;
use rpcc::core::model::Inventory;
use rpcc::engine::{ApplyOptions, Engine, Selection};
use rpcc_testkit::{AcmeOptions, AcmeServer, Fleet, Resolver};

fn inventory(fleet: &Fleet, acme: &AcmeServer, root: &Path, sites: usize) -> (Inventory, String) {
    let mut toml = fleet.deploy_inventory_toml();
    let _ = write!(toml, "\n[acme]\ndirectory = \"{}\"\nca_root = \"{}\"\n\n", acme.directory_url(), root.display());
    let mut names = String::new();
    for i in 0..sites {
        let _ = write!(
            toml,
            "[[sites]]\ndomain = \"site{i}.bench.test\"\naliases = [\"alt{i}.bench.test\"]\ngroup = \"all\"\n\
             upstream = {{ backends = [\"127.0.0.1:9\"] }}\ntls = {{ mode = \"acme\" }}\nhealth_path = \"/healthz\"\n\n"
        );
        let _ = writeln!(names, "site{i}.bench.test alt{i}.bench.test");
    }
    (Inventory::from_toml_str(&toml).expect("inventory"), names)
}

fn main() {
    let sites: usize = std::env::var("RPCC_BENCH_SITES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    if Command::new("certbot").arg("--version").output().is_err() {
        println!("certbot is not installed (scripts/setup-host installs it); skipping");
        return;
    }
    let fleet = Fleet::start(4).expect("fleet");
    let dns = Resolver::start(&[("bench.test", Some("127.0.0.1".parse().expect("ip")))]).expect("dnsmasq");
    let s0 = &fleet.servers()[0];
    let acme =
        AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port: s0.http_port(), always_valid: false })
            .expect("pebble");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    Keyring::add_to_file(&keys, None).expect("key file");
    let (inv, names) = inventory(&fleet, &acme, acme.api_ca(), sites);
    let state = dir.path().join("state.db");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let open = |inv: Inventory| {
        let ring = Keyring::from_file(&keys).expect("keyring");
        rt.block_on(Engine::open(inv, &state, Some(ring))).expect("engine")
    };

    // Both sides start here: every site served over HTTP, answering the challenge path.
    let setup = open(inv.clone());
    let first = rt
        .block_on(setup.apply(&Selection::default(), ApplyOptions { skip_certificates: true, ..Default::default() }))
        .expect("apply");
    assert!(!first.failed(), "{first:#?}");
    drop(setup);

    // rpcc: a new engine (new connections, new ACME account), issue + deploy.
    let engine = open(inv.clone());
    let t = Instant::now();
    let parallel = std::env::var("RPCC_BENCH_ORDERS").ok().and_then(|v| v.parse().ok());
    let options = ApplyOptions {
        certificates: rpcc::certs::CertificateOptions { parallel_orders: parallel, ..Default::default() },
        ..ApplyOptions::default()
    };
    let report = rt.block_on(engine.apply(&Selection::default(), options)).expect("apply");
    let rpcc_secs = t.elapsed().as_secs_f64();
    let issued = report.certificates.iter().filter(|c| c.action == CertificateAction::Issued).count();
    assert_eq!(issued, sites, "{:#?}", report.certificates.iter().find(|c| c.action != CertificateAction::Issued));
    assert!(!report.failed(), "{report:#?}");

    // certbot: same names, same CA, certonly --webroot on s0, then distribute + reload.
    let sites_file = dir.path().join("sites.txt");
    std::fs::write(&sites_file, names).expect("sites file");
    let webroot = s0.managed_root().join("acme");
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/certbot.sh"));
    cmd.arg(acme.directory_url())
        .arg(acme.api_ca())
        .arg(&webroot)
        .arg(dir.path().join("certbot"))
        .arg(&sites_file)
        .arg("--");
    for s in fleet.servers() {
        let ssh = fleet.ssh(s);
        let argv: Vec<String> = std::iter::once(ssh.get_program().to_string_lossy().into_owned())
            .chain(ssh.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        cmd.arg(format!(
            "{}|{}|{}",
            s.nginx_prefix().join("certbot-certs").display(),
            s.nginx_conf().display(),
            argv.join(" ")
        ));
    }
    let t = Instant::now();
    let out = cmd.output().expect("certbot.sh");
    let certbot_secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "certbot peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let live = std::fs::read_dir(dir.path().join("certbot/config/live")).expect("live").count();
    assert!(live >= sites, "certbot issued {live} of {sites}");

    println!("\nIssue + deploy {sites} sites (2 names each) on 4 servers, Pebble, one run:");
    println!("| way | seconds | per site |");
    println!("| --- | ---: | ---: |");
    #[allow(clippy::cast_precision_loss)]
    let per = |s: f64| s / sites as f64 * 1000.0;
    println!(
        "| rpcc apply (8 orders at once, answers on all 4 servers, 1 deploy per server) | {rpcc_secs:.1} | {:.0} ms |",
        per(rpcc_secs)
    );
    println!(
        "| certbot certonly --webroot per site + tar/ssh + nginx -t/reload per server | {certbot_secs:.1} | {:.0} ms |",
        per(certbot_secs)
    );
    println!("rpcc is {:.1}x faster (target: >= 5x)", certbot_secs / rpcc_secs);
}
