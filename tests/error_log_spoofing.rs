//! Reload verification that requests cannot fake. nginx writes request lines into the
//! same error log the helper reads after a reload (a miss under the ACME webroot is an
//! `[error]` line quoting the request), so a client asking for
//! `/.well-known/acme-challenge/[emerg]` during a deploy once made the helper take the
//! reload for a refusal: rpcc rolled back and recorded the old generation while nginx
//! served the new one. Only lines nginx's master wrote itself (timestamp, the level right
//! after it, the master's pid) count now. Both validation modes, against a real sshd +
//! nginx, with a client hammering such URIs throughout.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Bed, get, site};
use rpcc::core::deploy::DeploymentState;
use rpcc::core::model::Inventory;

/// Requests whose URIs look like nginx's own refusals once they are in the error log.
const SPOOFS: [&str; 3] = [
    "/.well-known/acme-challenge/[emerg]",
    "/.well-known/acme-challenge/x%20[alert]%20y",
    "/.well-known/acme-challenge/2026/01/01%2000:00:00%20[emerg]%201#1:",
];

fn spoof(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut ok = true;
    for path in SPOOFS {
        ok &= write!(s, "GET {path} HTTP/1.1\r\nHost: a.test.example\r\n\r\n").is_ok();
    }
    let _ = write!(s, "GET / HTTP/1.1\r\nHost: a.test.example\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    ok
}

fn deploys_under_spoofed_error_lines(single_parse: bool) -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let inv = |tag: &str| -> Inventory {
        let mut toml = format!("{}\n{}", bed.fleet.deploy_inventory_toml(), site("a.test.example", tag));
        if single_parse {
            toml = rpcc_testkit::Fleet::single_parse(&toml);
        }
        Inventory::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}"))
    };
    let (_, first) = bed.deploy_with(&bed.deployer, &inv("g0"));
    assert_eq!(first.state, DeploymentState::Succeeded, "{}", first.detail);
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    if spoof(ts.http_port()) {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        // Stops the clients however the deploys end (a failed assertion too).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        (|| -> anyhow::Result<()> {
            for n in 1..=4 {
                let tag = format!("g{n}");
                let (generation, r) = bed.deploy_with(&bed.deployer, &inv(&tag));
                assert_eq!(r.state, DeploymentState::Succeeded, "{tag}: {}", r.detail);
                assert_eq!(bed.current().as_deref(), Some(generation.id()), "{tag}: current");
                assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some(tag.clone()))));
                let committed = std::fs::read_to_string(ts.managed_root().join("committed"))?;
                assert_eq!(committed.trim(), generation.id(), "{tag}: recorded what nginx serves");
            }
            Ok(())
        })()
    })?;
    // The attack reached the log: lines quoting `[emerg]`/`[alert]` that nginx's
    // master did not write.
    let log = std::fs::read_to_string(ts.nginx_error_log())?;
    let spoofed = log.lines().filter(|l| l.contains("acme-challenge/[emerg]") && l.contains("[error]")).count();
    assert!(spoofed > 0 && sent.load(Ordering::SeqCst) > 0, "no spoofed line reached the error log:\n{log}");
    Ok(())
}

#[test]
fn requests_quoting_emerg_do_not_fake_a_refused_reload() -> anyhow::Result<()> {
    deploys_under_spoofed_error_lines(false)
}

#[test]
fn requests_quoting_emerg_do_not_fake_a_refused_single_parse() -> anyhow::Result<()> {
    deploys_under_spoofed_error_lines(true)
}
