//! `rpcc run` against a real loopback fleet: exact argv, exit codes, refusal of a
//! server whose pinned key does not match, and of a server that was never enrolled.

use std::process::{Command, Output};

use rpcc_testkit::Fleet;

fn rpcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpcc")).args(args).output().expect("run rpcc")
}

#[test]
fn run_executes_exactly_the_given_argv_and_returns_its_exit_code() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("fleet.toml");
    std::fs::write(&inv, fleet.inventory_servers_toml())?;
    let inv = inv.to_str().unwrap_or_default();

    let out = rpcc(&["run", inv, "s0", "--", "printf", "%s|", "a b", "$(id)", ";ls"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|$(id)|;ls|");

    let out = rpcc(&["run", inv, "s0", "--", "sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");

    let out = rpcc(&["run", inv, "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    Ok(())
}

#[test]
fn run_refuses_a_wrong_or_missing_host_key() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let dir = tempfile::tempdir()?;
    let (a, b) = (&fleet.servers()[0], &fleet.servers()[1]);
    // s0's entry pinned to s1's key.
    let swapped = fleet.inventory_servers_toml().replacen(a.host_key_pin(), b.host_key_pin(), 1);
    let inv = dir.path().join("swapped.toml");
    std::fs::write(&inv, swapped)?;
    let out = rpcc(&["run", inv.to_str().unwrap_or_default(), "s0", "--", "touch", "/tmp/rpcc-should-not-exist"]);
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host key") && stderr.contains("refused before authentication"), "{stderr}");
    assert!(!std::path::Path::new("/tmp/rpcc-should-not-exist").exists());

    // No host_key at all: refused without connecting.
    let unpinned = fleet.unenrolled_inventory_toml();
    let inv = dir.path().join("unpinned.toml");
    std::fs::write(&inv, unpinned)?;
    let out = rpcc(&["run", inv.to_str().unwrap_or_default(), "s0", "--", "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("enrol"), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
