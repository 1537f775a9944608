//! The remote deploy helper checks generation ids itself: a caller that skipped rpcc's
//! own validation (or a hostile one) cannot make it stage, validate, activate, commit
//! or fetch a path outside the managed root.

use std::path::Path;
use std::process::{Command, Output};

use rpcc_core::deploy::remote::REMOTE_SCRIPT;

fn helper(root: &Path, command: &str, args: &[&str]) -> Output {
    helper_with(root, command, args, b"")
}

#[test]
fn hostile_generation_ids_are_refused_by_the_helper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rpcc");
    std::fs::create_dir_all(root.join("generations")).expect("mkdir");
    let hostile = ["../../escape", "a/b", "", "$(touch pwned)", "ABC", "-", ".staging-x", "0x1", "1 2", "..", "*"];
    for id in hostile {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("stage", vec!["h", "60", "0", id, "-", "-"]),
            ("stage", vec!["h", "60", "0", "abc", id, "-"]),
            ("validate", vec![id, "0"]),
            ("activate", vec!["h", "60", "0", id, "10"]),
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
    let activate = ["h", "60", &past, "bb", "10"];
    let out = helper(&root, "activate", &activate);
    assert_eq!(out.status.code(), Some(19), "{:?}", code(&out));
    assert_eq!(std::fs::read_link(root.join("current")).expect("link"), Path::new("generations/aa"));
    assert!(!root.join("unverified").exists(), "nothing was marked");

    let out = helper(&root, "commit", &["h", "60", &past, "aa", "5"]);
    assert_eq!(out.status.code(), Some(19), "{:?}", code(&out));
    assert_eq!(std::fs::read_to_string(root.join("committed")).expect("committed"), "aa\n");
    assert!(root.join("lock").exists(), "a late commit does not release the lock either");

    let out = helper(&root, "stage", &["h", "60", &past, "cc", "-", "-"]);
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

/// The configuration of a helper sent with each command, for managed root `root` (no
/// nginx runs: its paths are never reached by these tests).
fn conf(root: &Path) -> String {
    format!(
        "managed_root={}\nmode=owned\nnginx=/bin/false\nnginx_root={}\npid_file=/nonexistent/x.pid\nerror_log=/nonexistent/x.log\nreload=signal\n",
        root.display(),
        root.parent().unwrap_or(root).display()
    )
}

/// Runs the helper with `stdin` as its standard input.
fn helper_with(root: &Path, command: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(REMOTE_SCRIPT)
        .arg("rpcc")
        .arg(conf(root))
        .arg(command)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("helper finishes")
}

enum Member<'a> {
    File { name: &'a str, bytes: &'a [u8], mode: u32 },
    Symlink { name: &'a str, target: &'a str },
    HardLink { name: &'a str, target: &'a str },
    Fifo { name: &'a str },
}

/// A tar archive with whatever members a hostile caller sends; `name`s are written raw
/// into the header (no checks), as an attacker's own tar would.
fn archive(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        let (name, kind, bytes, mode, link): (&str, tar::EntryType, &[u8], u32, Option<&str>) = match m {
            Member::File { name, bytes, mode } => (name, tar::EntryType::Regular, bytes, *mode, None),
            Member::Symlink { name, target } => (name, tar::EntryType::Symlink, b"", 0o777, Some(target)),
            Member::HardLink { name, target } => (name, tar::EntryType::Link, b"", 0o644, Some(target)),
            Member::Fifo { name } => (name, tar::EntryType::Fifo, b"", 0o644, None),
        };
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        if let Some(t) = link {
            h.set_link_name_literal(t).expect("link name");
        }
        h.set_cksum();
        b.append(&h, bytes).expect("append");
    }
    b.into_inner().expect("archive")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file below `dir` (not following links) with a setuid/setgid bit, or not a
/// regular file or directory.
fn dangerous_entries(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .args(["(", "-perm", "/6000", "-o", "!", "-type", "f", "!", "-type", "d", ")", "-print"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The staging step as root (as an installed helper runs it): an archive cannot create
/// a setuid file, a symlink, a hard link, a fifo or any file outside the generation, a
/// manifest or link list cannot name a path outside it, `fetch` reads no path outside
/// a generation and no private key; a well-formed archive gets fixed modes whatever its
/// headers say.
#[test]
fn hostile_archives_and_names_cannot_escape_the_generation_or_create_privileges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rpcc");
    std::fs::create_dir_all(root.join("generations")).expect("mkdir");
    let outside = dir.path().join("outside");
    let lock = helper(&root, "lock", &["h", "600", "0"]);
    assert!(lock.status.success(), "{}", String::from_utf8_lossy(&lock.stderr));
    let escape = format!("../../{}", outside.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let abs = outside.display().to_string();
    let conf = b"events {}\n".as_slice();
    // A manifest + modes pair for the given files, as rpcc sends them.
    let meta = |files: &[(&str, &[u8], u32)]| -> (String, String) {
        let sums = files.iter().map(|(n, b, _)| format!("{}  {n}\n", sha256_hex(b))).collect();
        let mut modes: Vec<String> = files.iter().map(|(n, _, m)| format!("{m:o} {n}\n")).collect();
        modes.sort();
        (sums, modes.concat())
    };
    let (sums, _) = meta(&[("nginx.conf", conf, 0o644)]);
    let (suid_sums, suid_modes) = meta(&[("sbin/x", b"\x7fELF", 0o4755)]);
    let (bad_sums, _) = meta(&[(escape.as_str(), b"x", 0o644)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "setuid file",
            archive(&[
                Member::File { name: "sbin/x", bytes: b"\x7fELF", mode: 0o4755 },
                Member::File { name: ".rpcc/sha256", bytes: suid_sums.as_bytes(), mode: 0o644 },
                Member::File { name: ".rpcc/modes", bytes: suid_modes.as_bytes(), mode: 0o644 },
            ]),
            "modes",
        ),
        (
            "symlink",
            archive(&[
                Member::Symlink { name: "evil", target: "/etc" },
                Member::File { name: "nginx.conf", bytes: conf, mode: 0o644 },
                Member::File { name: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o644 },
            ]),
            "not a regular file",
        ),
        (
            "hard link",
            archive(&[
                Member::HardLink { name: "shadow", target: "/etc/shadow" },
                Member::File { name: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o644 },
            ]),
            "not a regular file",
        ),
        ("fifo", archive(&[Member::Fifo { name: "pipe" }]), "not a regular file"),
        ("absolute name", archive(&[Member::File { name: &abs, bytes: b"x", mode: 0o644 }]), "not a relative"),
        ("dot-dot name", archive(&[Member::File { name: &escape, bytes: b"x", mode: 0o644 }]), "not a relative"),
        (
            "manifest naming a file outside",
            archive(&[Member::File { name: ".rpcc/sha256", bytes: bad_sums.as_bytes(), mode: 0o644 }]),
            "manifest name",
        ),
        ("not a tar", b"garbage".repeat(100), "not a tar"),
    ];
    for (label, tar, expect) in cases {
        let out = helper_with(&root, "stage", &["h", "600", "0", "abcd", "-", "-"], &tar);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(12), "{label}: {stderr}");
        assert!(stderr.contains(expect), "{label}: {stderr}");
        assert!(!root.join("generations/abcd").exists(), "{label}: nothing staged");
        assert!(!outside.exists(), "{label}: nothing written outside");
        assert_eq!(dangerous_entries(&root), Vec::<String>::new(), "{label}");
    }

    // A good archive whose headers ask for other modes still gets the fixed ones.
    let key = b"KEY".as_slice();
    let (sums, modes) = meta(&[("nginx.conf", conf, 0o644), ("certs/a.example/privkey.pem", key, 0o600)]);
    let good = archive(&[
        Member::File { name: "nginx.conf", bytes: conf, mode: 0o6777 },
        Member::File { name: "certs/a.example/privkey.pem", bytes: key, mode: 0o666 },
        Member::File { name: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o777 },
        Member::File { name: ".rpcc/modes", bytes: modes.as_bytes(), mode: 0o644 },
    ]);
    let out = helper_with(&root, "stage", &["h", "600", "0", "abcd", "-", "-"], &good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(root.join("generations/abcd").join(p)).expect(p).permissions(),
        ) & 0o7777
    };
    assert_eq!(mode("nginx.conf"), 0o644);
    assert_eq!(mode("certs/a.example/privkey.pem"), 0o600);
    assert_eq!(mode("certs"), 0o755);
    assert_eq!(dangerous_entries(&root), Vec::<String>::new());

    // Links: only generation paths of a generation without links in it.
    let (sums2, modes2) = meta(&[("nginx.conf", conf, 0o644)]);
    for hostile in [escape.as_str(), abs.as_str(), "a/../../x"] {
        let links = format!("{hostile}\n");
        let tar = archive(&[
            Member::File { name: ".rpcc/sha256", bytes: sums2.as_bytes(), mode: 0o644 },
            Member::File { name: ".rpcc/modes", bytes: modes2.as_bytes(), mode: 0o644 },
            Member::File { name: ".rpcc/links", bytes: links.as_bytes(), mode: 0o644 },
        ]);
        let out = helper_with(&root, "stage", &["h", "600", "0", "beef", "abcd", "-"], &tar);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(12), "{hostile}: {stderr}");
        assert!(stderr.contains("linked name"), "{hostile}: {stderr}");
    }

    // fetch: generation paths only, never a private key.
    for hostile in ["/etc/shadow", "../../../../etc/shadow", "certs/a.example/privkey.pem", "a//b"] {
        let out = helper_with(&root, "fetch", &["abcd"], format!("{hostile}\n").as_bytes());
        assert_eq!(out.status.code(), Some(12), "{hostile}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty(), "{hostile}: nothing sent");
    }
    let out = helper_with(&root, "fetch", &["abcd"], b"nginx.conf\n");
    assert!(out.status.success() && !out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An archive of `files` (mode 0644) with the manifest and modes rpcc sends.
fn tree_archive(files: &[(&str, &str)]) -> Vec<u8> {
    let sums: String = files.iter().map(|(n, b)| format!("{}  {n}\n", sha256_hex(b.as_bytes()))).collect();
    let mut modes: Vec<String> = files.iter().map(|(n, _)| format!("644 {n}\n")).collect();
    modes.sort();
    let modes = modes.concat();
    let mut members: Vec<Member<'_>> =
        files.iter().map(|(n, b)| Member::File { name: n, bytes: b.as_bytes(), mode: 0o644 }).collect();
    members.push(Member::File { name: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o644 });
    members.push(Member::File { name: ".rpcc/modes", bytes: modes.as_bytes(), mode: 0o644 });
    archive(&members)
}

/// A tree that would make a root nginx load or run code (`load_module`, perl, lua,
/// njs), or read files outside its generation through `include`, is refused when it is
/// staged, before any `nginx -t` or reload parses it (exit 20); the generation's own
/// includes pass.
#[test]
fn trees_that_load_code_or_include_outside_files_never_reach_nginx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rpcc");
    std::fs::create_dir_all(root.join("generations")).expect("mkdir");
    let lock = helper(&root, "lock", &["h", "600", "0"]);
    assert!(lock.status.success(), "{}", String::from_utf8_lossy(&lock.stderr));
    let own = format!("{}/generations/abcd", root.display());
    let hostile = [
        "load_module /tmp/evil.so;\nevents {}\n".to_owned(),
        "events {}\nhttp { perl_modules /tmp; perl_require evil.pm; }\n".to_owned(),
        "events {}\nhttp {server{location / {content_by_lua_block { os.execute('id') }}}}\n".to_owned(),
        "events {}\nhttp { js_import /tmp/evil.js; }\n".to_owned(),
        "events {}\nhttp { include /etc/shadow; }\n".to_owned(),
        format!("events {{}}\nhttp {{ include {own}/../../../../etc/shadow; }}\n"),
        format!("events {{}}\nhttp {{ include \"{}/generations/other/x.conf\"; }}\n", root.display()),
        "events {}\nhttp {server{listen 1;}include relative.conf;}\n".to_owned(),
    ];
    for conf in &hostile {
        let tar = tree_archive(&[("nginx.conf", conf)]);
        let out = helper_with(&root, "stage", &["h", "600", "0", "abcd", "-", "-"], &tar);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(20), "{conf}: {stderr}");
        assert!(stderr.contains("refused before nginx parses it"), "{conf}: {stderr}");
        assert!(!root.join("generations/abcd").exists(), "{conf}: nothing staged");
    }
    // The generation's own includes, and words that merely contain such names, pass.
    let conf = format!(
        "events {{}}\nhttp {{ include {own}/mime.types; include {own}/sites/*.conf; add_header X-Evaluate perl-ish; }}\n"
    );
    let tar = tree_archive(&[("nginx.conf", &conf), ("mime.types", "types { application/x-perl pl; }\n")]);
    let out = helper_with(&root, "stage", &["h", "600", "0", "abcd", "-", "-"], &tar);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
