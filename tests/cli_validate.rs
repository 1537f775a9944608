//! `rpcc validate` end to end: exit codes 0/1/2, the summary, every error with its
//! path and position, JSON output, and no secret in any output even at trace level.

use std::path::Path;
use std::process::{Command, Output};

fn rpcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpcc")).args(args).env("RUST_LOG", "trace").output().expect("run rpcc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml").display().to_string()
}

#[test]
fn example_inventory_is_valid() {
    let out = rpcc(&["validate", &example()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid: 3 servers, 2 groups, 12 sites"), "{}", text(&out.stdout));

    let json = rpcc(&["validate", &example(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["sites"], 12);
}

#[test]
fn every_error_is_printed_with_file_line_column_and_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rpcc-core/tests/bad-inventories/many-errors-at-once.toml"),
        &file,
    )?;
    let before = std::fs::read(&file)?;
    let out = rpcc(&["validate", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for path in [
        "servers[0].host",
        "servers[0].user",
        "groups[0].servers[0]",
        "sites[0].domain",
        "sites[0].upstream.backends[0]",
        "sites[1].group",
        "sites[1].upstream.balance",
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!(": {path}: ")))
            .unwrap_or_else(|| panic!("{path} missing:\n{stderr}"));
        // file:line:column: path: message
        let loc = line.strip_prefix(&format!("{}:", file.display())).expect("file prefix");
        let mut parts = loc.splitn(3, ':');
        assert!(parts.next().is_some_and(|l| l.parse::<u32>().is_ok()), "{line}");
        assert!(parts.next().is_some_and(|c| c.parse::<u32>().is_ok()), "{line}");
    }
    assert!(stderr.contains("\"10.0.0.5:99999\" has an invalid port: 99999 is not a port (1-65535)"), "{stderr}");
    assert!(stderr.contains("7 errors; nothing was changed"), "{stderr}");
    assert_eq!(std::fs::read(&file)?, before, "validate must not touch the file");

    let json = rpcc(&["validate", file.to_str().unwrap_or_default(), "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(7));
    assert!(v["errors"][0]["line"].is_u64());
    Ok(())
}

#[test]
fn unreadable_file_exits_2_and_syntax_error_exits_1() -> anyhow::Result<()> {
    let out = rpcc(&["validate", "/nonexistent/inventory.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/inventory.toml"));

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("syntax.toml");
    std::fs::write(&file, "[[servers]]\nname = \"a\"\nhost = [\n")?;
    let out = rpcc(&["validate", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("TOML syntax error"), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{}:4:1", file.display())) || text(&out.stderr).contains(":3:"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn secrets_do_not_reach_any_output() -> anyhow::Result<()> {
    let canary = "canary-7f3Kq-do-not-print";
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("secrets.toml");
    std::fs::write(
        &file,
        format!(
            "[[servers]]\nname = \"edge-1\"\nhost = \"203.0.113.10\"\nuser = \"deploy\"\nauth = {{ password = \"{canary}\" }}\n\n\
             [[servers]]\nname = \"edge-2\"\nhost = \"203.0.113.11\"\nuser = \"bad user\"\nauth = {{ key_file = \"k\", passphrase = \"{canary}\", agent = true }}\n"
        ),
    )?;
    for args in [
        vec!["validate"],
        vec!["validate", "--json"],
        vec!["-vvv", "validate"],
        vec!["validate", "--allow-plaintext"],
        vec!["-vvv", "validate", "--allow-plaintext", "--json"],
    ] {
        let mut full = args.clone();
        full.insert(if args[0] == "-vvv" { 2 } else { 1 }, file.to_str().unwrap_or_default());
        let out = rpcc(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            !text(&out.stdout).contains(canary) && !text(&out.stderr).contains(canary),
            "{args:?} leaked the secret"
        );
    }
    Ok(())
}

#[test]
fn help_lists_only_commands_that_exist() {
    let out = rpcc(&["--help"]);
    let help = text(&out.stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "validate",
            "render",
            "bootstrap",
            "enroll",
            "run",
            "plan",
            "apply",
            "rollback",
            "status",
            "drift",
            "history",
            "audit",
            "certs",
            "service",
            "helper",
            "state",
            "keys",
            "check",
            "watch",
            "plugin",
            "help"
        ],
        "{help}"
    );
}
