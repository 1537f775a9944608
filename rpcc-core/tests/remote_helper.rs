//! The remote deploy helper checks generation ids itself: a caller that skipped rpcc's
//! own validation (or a hostile one) cannot make it stage, validate, activate, commit
//! or fetch a path outside the managed root.

use std::path::Path;
use std::process::{Command, Output};

use rpcc_core::deploy::remote::REMOTE_SCRIPT;

fn helper(root: &Path, command: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(REMOTE_SCRIPT)
        .arg("rpcc")
        .arg(command)
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh runs")
}

#[test]
fn hostile_generation_ids_are_refused_by_the_helper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rpcc");
    std::fs::create_dir_all(root.join("generations")).expect("mkdir");
    let hostile = ["../../escape", "a/b", "", "$(touch pwned)", "ABC", "-", ".staging-x", "0x1", "1 2", "..", "*"];
    for id in hostile {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("stage", vec!["h", "60", id, "-"]),
            ("stage", vec!["h", "60", "abc", id]),
            ("validate", vec![id, "owned", "/bin/false", "/etc/nginx", "0"]),
            ("activate", vec!["h", "60", id, "owned", "/etc/nginx", "/x.pid", "/x.log", "signal", "-", "10"]),
            ("commit", vec!["h", "60", id, "5"]),
            ("fetch", vec![id]),
        ];
        for (command, args) in cases {
            if command == "stage" && args[3] == "-" && id == "-" {
                continue; // "-" is the "no previous generation" marker, not an id
            }
            let out = helper(&root, command, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {stderr}");
            assert!(stderr.contains("invalid generation id"), "{command} {args:?}: {stderr}");
        }
    }
    assert!(!dir.path().join("escape").exists() && !Path::new("pwned").exists());
    assert!(!root.join("lock").exists(), "nothing was locked or written");
    // Well-formed ids pass the check (and fail later for honest reasons).
    for id in ["0", "0123456789abcdef"] {
        let out = helper(&root, "fetch", &[id]);
        assert_eq!(out.status.code(), Some(16), "{id}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
