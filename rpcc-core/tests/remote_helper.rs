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
            ("stage", vec!["h", "60", "0", id, "-"]),
            ("stage", vec!["h", "60", "0", "abc", id]),
            ("validate", vec![id, "owned", "/bin/false", "/etc/nginx", "0"]),
            ("activate", vec!["h", "60", "0", id, "owned", "/etc/nginx", "/x.pid", "/x.log", "signal", "-", "10"]),
            ("commit", vec!["h", "60", "0", id, "5"]),
            ("fetch", vec![id]),
        ];
        for (command, args) in cases {
            if command == "stage" && args[4] == "-" && id == "-" {
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

/// A function of the helper, as text (from `name() {` to the closing `}` at column 0).
fn helper_function(name: &str) -> String {
    let start = REMOTE_SCRIPT.find(&format!("\n{name}() {{")).expect("function in the helper");
    let body = &REMOTE_SCRIPT[start..];
    let end = body.find("\n}\n").expect("closing brace");
    body[..end + 3].to_owned()
}

/// The helper finds a master's children and reads their titles without forking: from the
/// kernel's children list when there is one, by scanning /proc otherwise; both give the
/// same processes, in dash and bash alike.
#[test]
fn children_and_titles_are_read_the_same_with_and_without_the_kernel_list() {
    let fast = format!("{}\n{}", helper_function("children_var"), helper_function("title_of"));
    let scan = fast.replace("task/$1/children", "task/$1/no-such-list");
    assert_ne!(fast, scan, "the fast path is there to be disabled");
    for shell in ["dash", "bash"] {
        if Command::new(shell).arg("-c").arg("true").output().is_err() {
            continue;
        }
        for (label, functions) in [("kernel list", &fast), ("scan", &scan)] {
            // Two children, one renamed the way nginx renames a retiring worker.
            let script = format!(
                "{functions}\n\
                 sleep 5 & a=$!\n\
                 bash -c 'exec -a \"nginx: worker process is shutting down\" sleep 5' & b=$!\n\
                 sleep 0.3\n\
                 children_var $$\n\
                 n=0; for p in $kids; do n=$((n + 1)); done\n\
                 case \" $kids \" in *\" $a \"*) ;; *) echo \"missing $a in $kids\" ;; esac\n\
                 case \" $kids \" in *\" $b \"*) ;; *) echo \"missing $b in $kids\" ;; esac\n\
                 title_of $b; case $title in *'shutting down'*) echo retiring ;; *) echo \"title [$title]\" ;; esac\n\
                 title_of $a; case $title in *'shutting down'*) echo \"wrong title [$title]\" ;; esac\n\
                 title_of 999999999; [ -z \"$title\" ] || echo \"title of nothing: $title\"\n\
                 echo children=$n\n\
                 kill $a $b"
            );
            let out = Command::new(shell).arg("-c").arg(&script).output().expect("shell runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(stdout, "retiring\nchildren=2\n", "{shell}, {label}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A helper whose request arrives after the caller's deadline (a stalled connection
/// delivered it late, or it waited long for the guard) changes nothing: no lock, no
/// staged tree, no switch, no commit; exit 19. Before the deadline the same commands
/// work, and a malformed deadline is a usage error.
#[test]
fn the_helper_starts_no_change_after_the_callers_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rpcc");
    let gens = root.join("generations");
    std::fs::create_dir_all(gens.join("aa")).expect("mkdir");
    std::fs::create_dir_all(gens.join("bb")).expect("mkdir");
    std::os::unix::fs::symlink("generations/aa", root.join("current")).expect("current");
    std::fs::write(root.join("committed"), "aa\n").expect("committed");
    let past = (unix_now() - 1).to_string();
    let future = (unix_now() + 60).to_string();
    let code = |out: &Output| (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned());

    let late = helper(&root, "lock", &["h", "60", &past]);
    assert_eq!(late.status.code(), Some(19), "{:?}", code(&late));
    assert!(code(&late).1.contains("deadline passed"), "{:?}", code(&late));
    assert!(!root.join("lock").exists(), "a late lock takes nothing");

    let ok = helper(&root, "lock", &["h", "60", &future]);
    assert_eq!(ok.status.code(), Some(0), "{:?}", code(&ok));
    assert!(root.join("lock").exists());

    // Late activation: refused before it looks at nginx or switches anything.
    let activate = ["h", "60", &past, "bb", "owned", "/nonexistent", "/x.pid", "/x.log", "signal", "-", "10"];
    let out = helper(&root, "activate", &activate);
    assert_eq!(out.status.code(), Some(19), "{:?}", code(&out));
    assert_eq!(std::fs::read_link(root.join("current")).expect("link"), Path::new("generations/aa"));
    assert!(!root.join("unverified").exists(), "nothing was marked");

    let out = helper(&root, "commit", &["h", "60", &past, "aa", "5"]);
    assert_eq!(out.status.code(), Some(19), "{:?}", code(&out));
    assert_eq!(std::fs::read_to_string(root.join("committed")).expect("committed"), "aa\n");
    assert!(root.join("lock").exists(), "a late commit does not release the lock either");

    let out = helper(&root, "stage", &["h", "60", &past, "cc", "-"]);
    assert_eq!(out.status.code(), Some(19), "{:?}", code(&out));
    assert!(!gens.join("cc").exists() && !gens.join(".staging-cc").exists(), "nothing staged");

    for bad in ["", "soon", "-1", "1e9"] {
        let out = helper(&root, "commit", &["h", "60", bad, "aa", "5"]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {:?}", code(&out));
    }
    // Deadline 0: none (an operator running the helper by hand).
    let out = helper(&root, "commit", &["h", "60", "0", "aa", "5"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", code(&out));
    assert!(!root.join("lock").exists(), "committed and released");
}
