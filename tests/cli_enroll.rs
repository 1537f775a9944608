//! `rpcc enroll` against a real fleet: nothing is written without confirmation, `--yes`
//! pins exactly the key the server presents (formatting of the file kept), an existing
//! different pin is never replaced, and an enrolled server then accepts `rpcc run`.

use std::process::{Command, Output, Stdio};

use rpcc_testkit::Fleet;

fn rpcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpcc")).args(args).stdin(Stdio::null()).output().expect("run rpcc")
}

#[test]
fn enroll_pins_the_presented_key_only_when_confirmed() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("fleet.toml");
    // Unenrolled inventory, with a comment that must survive the rewrite.
    let unpinned = fleet.unenrolled_inventory_toml();
    std::fs::write(&file, format!("# fleet for tests: keep this comment\n{unpinned}"))?;
    let inv = file.to_str().unwrap_or_default();

    let out = rpcc(&["enroll", inv, "s0"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(fleet.servers()[0].host_key_pin()));
    assert!(!std::fs::read_to_string(&file)?.contains("host_key"), "written without confirmation");

    let out = rpcc(&["enroll", inv, "s0", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file)?;
    assert!(text.starts_with("# fleet for tests: keep this comment\n"));
    assert!(text.contains(&format!("host_key = \"{}\"", fleet.servers()[0].host_key_pin())), "{text}");
    assert_eq!(text.matches("host_key").count(), 1, "only s0 was enrolled");

    // Enrolled: run works. Enrolling again is a no-op.
    assert_eq!(rpcc(&["run", inv, "s0", "--", "true"]).status.code(), Some(0));
    assert_eq!(rpcc(&["enroll", inv, "s0", "--yes"]).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file)?, text);

    // s1 pinned to s0's key (as after a reinstall, or an attack): never replaced.
    let wrong = text.replacen(
        "name = \"s1\"",
        &format!("name = \"s1\"\nhost_key = \"{}\"", fleet.servers()[0].host_key_pin()),
        1,
    );
    std::fs::write(&file, &wrong)?;
    let out = rpcc(&["enroll", inv, "s1", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may be an attack"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file)?, wrong, "an existing pin was changed");
    Ok(())
}
