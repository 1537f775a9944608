//! `rpcc-fleet <dir> [servers]`: start a loopback fleet (real sshd + nginx per server),
//! write inventories for it into `<dir>`, print `ready`, and keep the fleet running
//! until standard input closes; then stop every process. Used by `scripts/demo`.
//!
//! Files written:
//! - `inventory.toml`: the fleet, group `all`, two sites tagged `v1`;
//! - `inventory-v2.toml`: the same with `shop.demo.example` changed to `v2`;
//! - `inventory-bad-reload.toml`: v3, with `s0` told to listen where its sshd already
//!   listens — `nginx -t` accepts it, the reload fails (`bind()`), rpcc restores;
//! - `inventory-tls.toml`: the v2 sites plus an ACME site (alias, `www` redirect) and a
//!   self-signed one, with `[acme]` pointing at a local ACME test CA (Pebble) that
//!   resolves `*.demo.test` through a local DNS server (dnsmasq) to loopback and
//!   validates HTTP-01 against `s0`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

fn sites(tag_app: &str, tag_shop: &str) -> String {
    let site = |domain: &str, tag: &str| {
        format!(
            "[[sites]]\ndomain = \"{domain}\"\ngroup = \"all\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
             tls = {{ mode = \"off\" }}\nhealth_path = \"/healthz\"\nheaders = {{ X-Deploy = \"{tag}\" }}\n\n"
        )
    };
    format!("{}{}", site("app.demo.example", tag_app), site("shop.demo.example", tag_shop))
}

const TLS_SITES: &str = r#"
[[sites]]
domain = "app.demo.test"
aliases = ["api.demo.test"]
www = "to_apex"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "acme" }
health_path = "/healthz"

[[sites]]
domain = "staging.demo.test"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "self_signed", hsts = false }
health_path = "/healthz"
"#;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: rpcc-fleet <dir> [servers]");
        return ExitCode::from(2);
    };
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(2);
    let fleet = match rpcc_testkit::Fleet::start(n) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rpcc-fleet: {e}");
            return ExitCode::from(1);
        }
    };
    let dns = rpcc_testkit::Resolver::start(&[("demo.test", Some(std::net::Ipv4Addr::LOCALHOST.into()))]);
    let acme = dns.as_ref().map_err(ToString::to_string).and_then(|dns| {
        rpcc_testkit::AcmeServer::start(&rpcc_testkit::AcmeOptions {
            dns: Some(dns.addr()),
            http_port: fleet.servers()[0].http_port(),
            always_valid: false,
        })
        .map_err(|e| e.to_string())
    });
    let acme = match acme {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rpcc-fleet: the ACME test CA did not start: {e}");
            return ExitCode::from(1);
        }
    };
    let base = fleet.deploy_inventory_toml();
    let s0 = &fleet.servers()[0];
    let bad = base.replacen(
        &format!("listen_http = \"127.0.0.1:{}\"", s0.http_port()),
        &format!("listen_http = \"127.0.0.1:{}\"", s0.ssh_port()),
        1,
    );
    let files = [
        ("inventory.toml", format!("{base}\n{}", sites("v1", "v1"))),
        ("inventory-v2.toml", format!("{base}\n{}", sites("v1", "v2"))),
        ("inventory-bad-reload.toml", format!("{bad}\n{}", sites("v3", "v3"))),
        (
            "inventory-tls.toml",
            format!(
                "{base}\n[acme]\ndirectory = \"{}\"\nca_root = \"{}\"\n\n{}{TLS_SITES}",
                acme.directory_url(),
                acme.api_ca().display(),
                sites("v1", "v2")
            ),
        ),
    ];
    for (name, text) in files {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            eprintln!("rpcc-fleet: cannot write {}: {e}", dir.join(name).display());
            return ExitCode::from(1);
        }
    }
    for s in fleet.servers() {
        println!(
            "{}: ssh 127.0.0.1:{}, http 127.0.0.1:{}, https 127.0.0.1:{}",
            s.name(),
            s.ssh_port(),
            s.http_port(),
            s.https_port()
        );
    }
    println!("ready");
    // Keep running until our stdin closes (the demo closes it on exit, even on error).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(acme);
    drop(dns);
    drop(fleet);
    ExitCode::SUCCESS
}
