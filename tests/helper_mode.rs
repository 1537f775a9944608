//! `nginx.helper`: the deploy helper installed as a root-owned file and run through
//! `sudo -n` with a sudoers entry for that file only (no `sudo sh -c`, no root shell),
//! reading every path from its root-owned configuration and accepting only archives
//! signed by the control plane's key. Against a real sshd + nginx server laid out as
//! bootstrap leaves one, real sudo, and login users with dash and bash login shells: the
//! deploy works, the helper's files are root's, an unsigned or differently configured
//! deploy is refused, and the same users cannot run anything else as root.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::process::Output;

use common::{current_generation, get, helper_dir, install_helper, signing_key, site};
use rpcc_testkit::Fleet;

use common::{output_text as text, rpcc_cli as rpcc};

#[test]
fn an_installed_helper_under_scoped_sudo_deploys_and_nothing_else_runs_as_root() -> anyhow::Result<()> {
    let root = std::fs::read_to_string("/proc/self/status")?.lines().any(|l| l.starts_with("Uid:\t0\t"));
    assert!(root, "this test installs a sudoers entry: run the suite as root (CI does)");
    let fleet = Fleet::start(1)?;
    let ts = &fleet.servers()[0];
    ts.hand_config_to_root()?;
    let key = signing_key();
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    // Single-parse activation: the kit's nginx master runs as the test user, so an
    // `nginx -t` run as root would create log files that master cannot open (on a real
    // server the master is root and either mode works).
    let helper_path = helper_dir().join("rpcc-helper");
    let servers = fleet.deploy_inventory_toml().replace(
        "reload = \"signal\",",
        &format!(
            "reload = \"signal\", validate = \"master\", helper = \"{}\", helper_conf = \"{}\",",
            helper_path.display(),
            helper_dir().join("helper.conf").display()
        ),
    );
    assert!(servers.contains("helper = "), "{servers}");
    let (_installed, helper) = install_helper(&["rpcc-test", "rpcc-bash"], &servers, "s0", &key)?;
    assert_eq!(helper, helper_path);
    let base = format!("{}\n{servers}", key.toml);
    let state = dir.path().join("state.db");
    let state_arg = state.to_str().unwrap_or_default();
    // dash (rpcc-test's /bin/sh), then bash (rpcc-bash's login shell).
    for (user, tag) in [("rpcc-test", "dash"), ("rpcc-bash", "bash")] {
        let body = base.replace("user = \"rpcc-test\"", &format!("user = \"{user}\"")) + &site("a.test.example", tag);
        std::fs::write(&inv, body)?;
        let out = rpcc(&["apply", inv.to_str().unwrap_or_default(), "--yes", "--state", state_arg])
            .env("RPCC_KEYS", &key.keys)
            .output()?;
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
        Ok(rpcc(&args).env("RPCC_KEYS", &key.keys).output()?)
    };
    let inspect = run(&["sudo", "-n", "--", helper.to_str().unwrap_or_default(), "inspect", "0"])?;
    assert!(inspect.status.success() && text(&inspect).contains("current="), "{}", text(&inspect));

    // A control plane without the key (or with another one) changes nothing: the
    // helper refuses its unsigned archive before unpacking it.
    let served = current_generation(&ts.managed_root());
    let unsigned =
        servers.replace("user = \"rpcc-test\"", "user = \"rpcc-bash\"") + &site("a.test.example", "unsigned");
    std::fs::write(&inv, unsigned)?;
    // Other control planes: their own state (and keyring).
    let other_state = dir.path().join("other.db");
    let other_state = other_state.to_str().unwrap_or_default();
    let out = rpcc(&["apply", inv.to_str().unwrap_or_default(), "--yes", "--state", other_state]).output()?;
    assert!(!out.status.success(), "an unsigned deploy went through: {}", text(&out));
    assert!(text(&out).contains("accepts only signed generations"), "{}", text(&out));
    let other = signing_key();
    let body = format!("{}\n{servers}", other.toml).replace("user = \"rpcc-test\"", "user = \"rpcc-bash\"")
        + &site("a.test.example", "other-key");
    std::fs::write(&inv, body)?;
    let third_state = dir.path().join("third.db");
    let out = rpcc(&[
        "apply",
        inv.to_str().unwrap_or_default(),
        "--yes",
        "--state",
        third_state.to_str().unwrap_or_default(),
    ])
    .env("RPCC_KEYS", &other.keys)
    .output()?;
    assert!(!out.status.success() && text(&out).contains("does not verify"), "{}", text(&out));
    assert_eq!(current_generation(&ts.managed_root()), served, "nothing switched");
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("bash".into()))));

    // An inventory that names other paths than the helper's configuration is told so.
    let moved = base.replace(&format!("{}/rpcc\"", ts.nginx_prefix().display()), "/srv/elsewhere\"");
    assert_ne!(moved, base);
    std::fs::write(&inv, moved + &site("a.test.example", "moved"))?;
    let out = rpcc(&["apply", inv.to_str().unwrap_or_default(), "--yes", "--state", state_arg])
        .env("RPCC_KEYS", &key.keys)
        .output()?;
    assert!(!out.status.success() && text(&out).contains("managed_root is"), "{}", text(&out));
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
