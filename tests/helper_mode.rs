//! `nginx.helper`: the deploy helper installed as a root-owned file and run through
//! `sudo -n` with a sudoers entry for that file only (no `sudo sh -c`, no root shell).
//! Against a real sshd + nginx server, real sudo, and login users with dash and bash
//! login shells: the deploy works, the helper's files are root's, and the same users
//! cannot run anything else as root.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{current_generation, get, site};
use rpcc_testkit::Fleet;

use common::{output_text as text, rpcc_cli as rpcc};

/// The helper and sudoers entries this test installs, removed however it ends.
struct Installed {
    dir: PathBuf,
    sudoers: Vec<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for f in &self.sudoers {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Install `rpcc helper`'s output as a root-owned 0755 file, and a sudoers entry per user
/// allowing exactly that file (checked by `visudo -cf` before it goes live).
fn install(users: &[&str]) -> anyhow::Result<(Installed, PathBuf)> {
    let tag = format!("rpcc-helper-test-{}", std::process::id());
    let dir = PathBuf::from("/usr/local/lib").join(&tag);
    let mut installed = Installed { dir: dir.clone(), sudoers: Vec::new() };
    std::fs::create_dir_all(&dir)?;
    let helper = dir.join("rpcc-helper");
    let out = rpcc(&["helper"]).output()?;
    assert!(out.status.success() && out.stdout.starts_with(b"#!/bin/sh\n"), "{}", text(&out));
    std::fs::write(&helper, &out.stdout)?;
    for path in [&dir, &helper] {
        std::os::unix::fs::chown(path, Some(0), Some(0))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    for user in users {
        let entry = format!("{user} ALL=(root) NOPASSWD: {}\n", helper.display());
        let candidate = dir.join(format!("sudoers-{user}"));
        std::fs::write(&candidate, entry)?;
        let check = Command::new("visudo").arg("-cf").arg(&candidate).output()?;
        assert!(check.status.success(), "{}", text(&check));
        let live = PathBuf::from("/etc/sudoers.d").join(format!("{tag}-{user}"));
        std::fs::copy(&candidate, &live)?;
        std::fs::set_permissions(&live, std::os::unix::fs::PermissionsExt::from_mode(0o440))?;
        installed.sudoers.push(live);
    }
    Ok((installed, helper))
}

#[test]
fn an_installed_helper_under_scoped_sudo_deploys_and_nothing_else_runs_as_root() -> anyhow::Result<()> {
    let root = std::fs::read_to_string("/proc/self/status")?.lines().any(|l| l.starts_with("Uid:\t0\t"));
    assert!(root, "this test installs a sudoers entry: run the suite as root (CI does)");
    let fleet = Fleet::start(1)?;
    let ts = &fleet.servers()[0];
    let (_installed, helper) = install(&["rpcc-test", "rpcc-bash"])?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    // Single-parse activation: the kit's nginx master runs as the test user, so an
    // `nginx -t` run as root would create log files that master cannot open (on a real
    // server the master is root and either mode works).
    let base = fleet.deploy_inventory_toml().replace(
        "reload = \"signal\",",
        &format!("reload = \"signal\", validate = \"master\", helper = \"{}\",", helper.display()),
    );
    assert!(base.contains("helper = "), "{base}");
    let state = dir.path().join("state.db");
    let state_arg = state.to_str().unwrap_or_default();
    // dash (rpcc-test's /bin/sh), then bash (rpcc-bash's login shell).
    for (user, tag) in [("rpcc-test", "dash"), ("rpcc-bash", "bash")] {
        let body = base.replace("user = \"rpcc-test\"", &format!("user = \"{user}\"")) + &site("a.test.example", tag);
        std::fs::write(&inv, body)?;
        let out = rpcc(&["apply", inv.to_str().unwrap_or_default(), "--yes", "--state", state_arg]).output()?;
        assert!(out.status.success(), "{user}: {}", text(&out));
        assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some(tag.into()))), "{user}");
        let generation = current_generation(&ts.managed_root()).expect("a live generation");
        let owner = std::fs::metadata(ts.managed_root().join("generations").join(&generation))?.uid();
        assert_eq!(owner, 0, "{user}: the helper ran as root");
    }

    // The same login may run the helper as root, and nothing else.
    let run = |argv: &[&str]| -> anyhow::Result<Output> {
        let mut args = vec!["run", inv.to_str().unwrap_or_default(), "s0", "--"];
        args.extend_from_slice(argv);
        Ok(rpcc(&args).output()?)
    };
    let managed = ts.managed_root();
    let inspect = run(&[
        "sudo",
        "-n",
        "--",
        helper.to_str().unwrap_or_default(),
        "inspect",
        managed.to_str().unwrap_or_default(),
        "0",
    ])?;
    assert!(inspect.status.success() && text(&inspect).contains("current="), "{}", text(&inspect));
    for denied in
        [&["sudo", "-n", "whoami"][..], &["sudo", "-n", "sh", "-c", "id"], &["sudo", "-n", "cat", "/etc/shadow"]]
    {
        let out = run(denied)?;
        assert!(!out.status.success(), "{denied:?} ran as root: {}", text(&out));
    }
    // And cannot replace the helper.
    let meta = std::fs::metadata(&helper)?;
    assert!(meta.uid() == 0 && meta.mode() & 0o022 == 0, "root-owned, not group/world writable");
    Ok(())
}

#[test]
fn sudo_and_an_installed_helper_are_refused_together() {
    let text = "[[servers]]\nname = \"a\"\nhost = \"203.0.113.1\"\nuser = \"deploy\"\nauth = { agent = true }\nsudo = true\n\
                nginx = { helper = \"/usr/local/lib/rpcc/rpcc-helper\" }\n";
    let err = rpcc::core::model::Inventory::from_toml_str(text).expect_err("refused");
    assert!(err.to_string().contains("already runs through `sudo -n`"), "{err}");
    let relative = text.replace("sudo = true\n", "").replace("/usr/local/lib/rpcc/rpcc-helper", "rpcc-helper");
    assert!(rpcc::core::model::Inventory::from_toml_str(&relative).is_err(), "a relative helper path is refused");
}
