//! `rpcc-fleet <dir> [servers]`: start a loopback fleet (real sshd + nginx per server),
//! write inventories for it into `<dir>`, print `ready`, and keep the fleet running
//! until standard input closes; then stop every process. Used by `scripts/demo`.
//!
//! Files written:
//! - `inventory.toml`: the fleet, group `all`, two sites tagged `v1`;
//! - `inventory-v2.toml`: the same with `shop.demo.example` changed to `v2`;
//! - `inventory-bad-reload.toml`: v3, with `s0` told to listen where its sshd already
//!   listens — `nginx -t` accepts it, the reload fails (`bind()`), rpcc restores.

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
    ];
    for (name, text) in files {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            eprintln!("rpcc-fleet: cannot write {}: {e}", dir.join(name).display());
            return ExitCode::from(1);
        }
    }
    for s in fleet.servers() {
        println!("{}: ssh 127.0.0.1:{}, http 127.0.0.1:{}", s.name(), s.ssh_port(), s.http_port());
    }
    println!("ready");
    // Keep running until our stdin closes (the demo closes it on exit, even on error).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(fleet);
    ExitCode::SUCCESS
}
