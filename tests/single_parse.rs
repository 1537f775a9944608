//! Single-parse activation (`nginx.validate = "master"`) against a real sshd + nginx:
//! no separate `nginx -t`; the master's own parse accepts (new workers) or refuses
//! (`[emerg]`: `current` switched back at once, nothing reloaded, the old config
//! still served), including a server's very first activation and a helper killed
//! between the switch and the switch-back.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Bed, get, site};
use rpcc::core::deploy::{DeployError, DeployStep, DeploymentState, HookDecision, StepHook};
use rpcc::core::model::Inventory;

/// The bed's inventory with single-parse activation on every server.
fn single_parse(bed: &Bed, sites: &str) -> Inventory {
    let toml = rpcc_testkit::Fleet::single_parse(&format!("{}\n{sites}", bed.fleet.deploy_inventory_toml()));
    let inv = Inventory::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.servers[0].nginx.validate, rpcc::core::model::NginxValidation::Master);
    inv
}

/// A site nginx refuses at parse time: its certificate file does not exist.
fn refused_site(tag: &str) -> String {
    common::refused_site("a.test.example", tag)
}

fn nginx_t(bed: &Bed) -> bool {
    Command::new("/usr/sbin/nginx")
        .args(["-t", "-q", "-c"])
        .arg(bed.server().nginx_conf())
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn accepted_without_nginx_t_and_refused_switches_back_at_once() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let (good, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &site("a.test.example", "good")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    let steps: Vec<DeployStep> = r.steps.iter().map(|s| s.step).collect();
    assert!(!steps.contains(&DeployStep::Validate), "no separate nginx -t: {steps:?}");
    assert!(steps.contains(&DeployStep::Activate) && steps.contains(&DeployStep::Probe), "{steps:?}");
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    let workers_before = rpcc_testkit::child_pids(ts.nginx_pid());

    // Refused by the master: Rejected (not rolled back: nothing was reloaded), nginx's
    // own message naming the file, `current` back on the good generation, no
    // `unverified` mark, the same workers still serving the good config.
    let (_, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &refused_site("bad")));
    assert_eq!(r.state, DeploymentState::Rejected, "{}", r.detail);
    assert!(matches!(r.error, Some(DeployError::Rejected { .. })), "{:?}", r.error);
    assert!(r.detail.contains("/nonexistent/cert.pem"), "nginx's message: {}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    let root = ts.managed_root();
    assert!(!root.join("unverified").exists(), "the switch-back is a verified state");
    assert!(!root.join("lock").exists(), "lock released");
    assert_eq!(rpcc_testkit::child_pids(ts.nginx_pid()), workers_before, "nothing reloaded");
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    assert!(nginx_t(&bed), "the tree on disk is the one nginx runs");

    // The same generation again: already staged, so its hashes are checked before the
    // switch; a file edited on the server is refused before anything moves.
    let again = single_parse(&bed, &site("a.test.example", "third"));
    let (third, r) = bed.deploy_with(&bed.deployer, &again);
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(third.id()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("third".into()))));
    let victim = root.join("generations").join(good.id()).join("nginx.conf");
    let mut text = std::fs::read_to_string(&victim)?;
    text.push_str("\n# edited on the server\n");
    std::fs::write(&victim, text)?;
    let r = bed.rt.block_on(bed.deployer.rollback(
        &*common::transports(&bed.pool, &again).remove(0),
        &again.servers[0],
        &again.sites_for_server("s0").collect::<Vec<_>>(),
        good.id(),
    ));
    assert_eq!(r.state, DeploymentState::Failed, "{}", r.detail);
    assert!(r.detail.contains("do not match its manifest"), "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(third.id()), "nothing switched");
    Ok(())
}

#[test]
fn a_refused_first_activation_puts_the_hand_made_config_back() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let main = ts.nginx_conf();
    let original = std::fs::read(&main)?;
    assert!(!std::fs::symlink_metadata(&main)?.file_type().is_symlink());
    let (_, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &refused_site("bad")));
    assert_eq!(r.state, DeploymentState::Rejected, "{}", r.detail);
    assert!(!std::fs::symlink_metadata(&main)?.file_type().is_symlink(), "the main config is a file again");
    assert_eq!(std::fs::read(&main)?, original, "the hand-made main config, byte for byte");
    assert_eq!(bed.current(), None, "no current before any accepted activation");
    assert!(nginx_t(&bed));
    // Then a good one is accepted.
    let (good, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &site("a.test.example", "good")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    Ok(())
}

/// Crashes the control plane right before one step.
struct CrashBefore(DeployStep, AtomicBool);

impl StepHook for CrashBefore {
    fn before(&self, _server: &str, step: DeployStep) -> HookDecision {
        if step == self.0 {
            self.1.store(true, Ordering::SeqCst);
            HookDecision::Crash
        } else {
            HookDecision::Continue
        }
    }
}

#[test]
fn a_helper_killed_between_switch_and_switch_back_loses_nothing() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let (good, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &site("a.test.example", "good")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);

    // The helper is killed (SIGKILL) the moment `current` names the refused tree, and
    // the control plane dies too (a crash before its restore step). So that the kill
    // cannot come after the master's refusal and the helper's switch-back (a few ms on
    // an idle machine, less than a loaded one takes to notice), nginx's master is held
    // stopped from the moment the helper marks the switch `unverified` (just before
    // it switches and signals) until the helper is dead: the signal waits, the master
    // then refuses the tree as before.
    let bad = single_parse(&bed, &refused_site("bad"));
    let bad_id = common::render(&bad).remove(0).id().to_owned();
    let root = ts.managed_root();
    let master = ts.nginx_pid();
    let killed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (root, bad_id, killed) = (root.clone(), bad_id.clone(), killed.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(20);
            let marked = || std::fs::read_to_string(root.join("unverified")).is_ok_and(|id| id.trim() == bad_id);
            while !marked() && Instant::now() < until {
                std::thread::sleep(Duration::from_micros(200));
            }
            let Some(_paused) = rpcc_testkit::pause(master) else { return };
            while Instant::now() < until {
                if common::current_generation(&root).as_deref() == Some(bad_id.as_str()) {
                    // The helper's command line: `sh -c <script> rpcc <configuration naming the root> activate …`.
                    let pattern = format!("managed_root={}.* activate ", root.display());
                    let _ = Command::new("pkill").args(["-KILL", "-f", &pattern]).status();
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let crash = Arc::new(CrashBefore(DeployStep::Restore, AtomicBool::new(false)));
    // As its own process, gone after the crash (its pid is above the kernel's pid_max).
    let crashing = common::deployer(bed.store.clone()).with_holder("crashed@ci:5000001:1").with_hook(crash.clone());
    let (_, r) = bed.deploy_with(&crashing, &bad);
    watcher.join().expect("watcher");
    assert!(killed.load(Ordering::SeqCst), "the helper was caught between switch and switch-back");
    assert!(crash.1.load(Ordering::SeqCst), "the control plane died before restoring: {:?} {}", r.state, r.detail);

    // Left behind: `current` on the refused tree, marked unverified; nginx still serves
    // the good generation (the master refused the other one).
    assert_eq!(bed.current().as_deref(), Some(bad_id.as_str()));
    assert_eq!(std::fs::read_to_string(root.join("unverified"))?.trim(), bad_id);
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));

    // The next run (any inventory) finds the mark, re-activates the committed
    // generation, and goes on.
    let (next, r) = bed.deploy_with(&bed.deployer, &single_parse(&bed, &site("a.test.example", "next")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(r.recovered.as_deref(), Some(bad_id.as_str()), "recovered from the refused tree");
    assert_eq!(bed.current().as_deref(), Some(next.id()));
    assert!(!root.join("unverified").exists());
    assert!(nginx_t(&bed));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("next".into()))));
    let _ = good;
    Ok(())
}
