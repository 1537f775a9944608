//! `rpcc bootstrap` against a real sshd (rpcc-testkit) as an administrator whose sudo
//! allows only the commands bootstrap names (no shell): a dry run changes nothing; the
//! run creates the deploy user (dash, then bash login shell), its helper, the helper's
//! root-owned configuration and signing key, and a sudoers entry for the helper only; a
//! second run changes nothing; then `rpcc apply` deploys as the new user. Users,
//! sudoers entries and the helper are removed afterwards.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{get, signing_key, site};
use rpcc_testkit::Fleet;

use common::{output_text as text, rpcc_cli as rpcc};

fn sh(argv: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(argv[0]).args(&argv[1..]).output()?)
}

/// What the test (and the bootstrap it drives) put on this machine, removed on drop.
#[derive(Default)]
struct Cleanup {
    users: Vec<String>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for u in &self.users {
            let _ = Command::new("userdel").args(["-r", u]).output();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The administrator's sudo: exactly the commands bootstrap runs as root, no shell.
const ADMIN_COMMANDS: &str = "/usr/sbin/useradd, /usr/sbin/runuser, /usr/bin/install, /usr/bin/tee, \
                              /usr/bin/rm, /usr/sbin/visudo, /usr/bin/cat";

#[test]
fn bootstrap_prepares_a_server_idempotently_and_the_new_user_deploys() -> anyhow::Result<()> {
    let root = std::fs::read_to_string("/proc/self/status")?.lines().any(|l| l.starts_with("Uid:\t0\t"));
    assert!(root, "this test creates users and sudoers entries: run the suite as root (CI does)");
    let fleet = Fleet::start(1)?;
    let ts = &fleet.servers()[0];
    // The server's nginx config is root's, as on a real server.
    ts.hand_config_to_root()?;
    let key = signing_key();
    let id = std::process::id() % 100_000;
    let mut cleanup = Cleanup::default();
    let admin = format!("rpcc-boot-a{id}");
    let out = sh(&["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", &admin])?;
    assert!(out.status.success(), "{}", text(&out));
    cleanup.users.push(admin.clone());
    let admin_sudoers = PathBuf::from(format!("/etc/sudoers.d/rpcc-boot-a{id}"));
    std::fs::write(&admin_sudoers, format!("{admin} ALL=(root) NOPASSWD: {ADMIN_COMMANDS}\n"))?;
    std::fs::set_permissions(&admin_sudoers, std::os::unix::fs::PermissionsExt::from_mode(0o440))?;
    cleanup.files.push(admin_sudoers.clone());
    let check = sh(&["visudo", "-cf", admin_sudoers.to_str().unwrap_or_default()])?;
    assert!(check.status.success(), "{}", text(&check));
    let helper_dir = PathBuf::from(format!("/usr/local/lib/rpcc-boot-{id}"));
    cleanup.dirs.push(helper_dir.clone());
    let helper = helper_dir.join("rpcc-helper");
    let helper_conf = helper_dir.join("helper.conf");

    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    let state = dir.path().join("state.db");
    for (tag, shell) in [("d", "/bin/sh"), ("b", "/bin/bash")] {
        let deploy = format!("rpcc-boot-{tag}{id}");
        cleanup.users.push(deploy.clone());
        cleanup.files.push(PathBuf::from(format!("/etc/sudoers.d/rpcc-{deploy}")));
        let body = format!("{}\n", key.toml)
            + &fleet.deploy_inventory_toml().replace("user = \"rpcc-test\"", &format!("user = \"{deploy}\"")).replace(
                "reload = \"signal\",",
                &format!(
                    "reload = \"signal\", validate = \"master\", helper = \"{}\", helper_conf = \"{}\",",
                    helper.display(),
                    helper_conf.display()
                ),
            )
            + &site("a.test.example", tag);
        std::fs::write(&inv, body)?;
        let inv_arg = inv.to_str().unwrap_or_default();
        let boot = |extra: &[&str]| -> anyhow::Result<Output> {
            let mut args = vec!["bootstrap", inv_arg, "s0", "--admin-user", admin.as_str(), "--shell", shell];
            args.extend_from_slice(extra);
            Ok(rpcc(&args).env("RPCC_KEYS", &key.keys).output()?)
        };

        // Dry run: says what it would do, does nothing.
        let out = boot(&["--dry-run"])?;
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("would  user {deploy}")), "{}", text(&out));
        assert!(!sh(&["id", "-u", &deploy])?.status.success(), "the dry run created {deploy}");

        // The run, then a second one that changes nothing.
        let out = boot(&[])?;
        assert!(out.status.success(), "{}", text(&out));
        eprintln!("{}", text(&out));
        assert!(text(&out).contains("runs the helper through sudo"), "{}", text(&out));
        let again = boot(&[])?;
        assert!(again.status.success(), "{}", text(&again));
        assert!(!text(&again).contains("done "), "a second run changed something:\n{}", text(&again));
        let passwd = String::from_utf8_lossy(&sh(&["getent", "passwd", &deploy])?.stdout).into_owned();
        assert!(passwd.trim_end().ends_with(shell), "{passwd}");
        let sudoers = std::fs::read_to_string(format!("/etc/sudoers.d/rpcc-{deploy}"))?;
        assert_eq!(sudoers, format!("{deploy} ALL=(root) NOPASSWD: {}\n", helper.display()));
        let conf = std::fs::read_to_string(&helper_conf)?;
        assert!(conf.contains(&format!("managed_root={}\n", ts.managed_root().display())), "{conf}");
        assert!(conf.contains(&format!("signing_key={}/helper.pub\n", helper_dir.display())), "{conf}");
        assert_eq!(std::fs::read_to_string(helper_dir.join("helper.pub"))?, key.public_pem);

        // The new user deploys through the helper.
        let out = rpcc(&["apply", inv_arg, "--yes", "--state", state.to_str().unwrap_or_default()])
            .env("RPCC_KEYS", &key.keys)
            .output()?;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some(tag.into()))));
    }
    Ok(())
}
