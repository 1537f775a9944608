//! The deploy engine against real sshd + nginx servers on loopback: first deploy over
//! a hand-made config, no-op, change (only the changed site's bytes travel), nginx
//! refusing a config, a reload that fails after activation, an unhealthy site, drift,
//! rollback, locks, an unreachable server and a canary stop.

mod common;

use std::net::TcpListener;
use std::sync::Arc;

use common::*;
use rpcc::core::deploy::{
    self, AuditAction, DeployError, DeploymentState, DriftState, HealthProbe, ProbeError, RolloutPolicy, StateStore,
};
use rpcc::core::model::{RolloutStrategy, Server, Site};
use rpcc::ssh::SshPool;
use rpcc_testkit::Fleet;

#[test]
fn first_deploy_noop_change_drift_and_rollback() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let ts = &fleet.servers()[0];
    let rt = runtime();
    let pool = SshPool::new();
    let (deployer, store) = memory_deployer();
    let hand_made = std::fs::read_to_string(ts.nginx_conf())?;
    assert_eq!(get(ts.http_port(), "a.test.example", "/").map(|r| r.0), Some(404), "testkit config answers 404");

    // 1. First deploy over the hand-made config.
    let sites = format!("{}{}", site("a.test.example", "one"), site("b.test.example", "one"));
    let inv = inventory(&fleet, &sites);
    let gens = render(&inv);
    let tr = transports(&pool, &inv);
    let server = &inv.servers[0];
    let site_refs: Vec<&Site> = inv.sites_for_server("s0").collect();
    let r = rt.block_on(deployer.deploy(&*tr[0], server, &site_refs, gens[0].clone()));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(r.round_trips, 5, "inspect, lock, stage + nginx -t, activate, commit");
    assert_eq!(r.linked_files, 0);
    let g1 = gens[0].id().to_owned();
    assert_eq!(current_generation(&ts.managed_root()).as_deref(), Some(g1.as_str()));
    // nginx.conf is now rpcc's symlink; the hand-made file is generation 0.
    let main = ts.nginx_conf();
    assert!(std::fs::symlink_metadata(&main)?.file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(ts.managed_root().join("generations/0/nginx.conf"))?, hand_made);
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("one".into()))));
    assert_eq!(get(ts.http_port(), "unknown.example", "/"), None, "catch-all closes (444)");

    // 2. Same inventory: one round trip, nothing touched.
    let r = rt.block_on(deployer.deploy(&*tr[0], server, &site_refs, gens[0].clone()));
    assert_eq!(r.state, DeploymentState::NoOp);
    assert_eq!(r.round_trips, 1);

    // 3. Change one site: only its file (and the two files naming the generation) travel.
    let sites2 = format!("{}{}", site("a.test.example", "two"), site("b.test.example", "one"));
    let inv2 = inventory(&fleet, &sites2);
    let gens2 = render(&inv2);
    let site_refs2: Vec<&Site> = inv2.sites_for_server("s0").collect();
    let r = rt.block_on(deployer.deploy(&*tr[0], &inv2.servers[0], &site_refs2, gens2[0].clone()));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    let g2 = gens2[0].id().to_owned();
    assert_ne!(g1, g2);
    assert_eq!(r.uploaded_files, 3, "nginx.conf, http.conf, sites/a: {} {:?}", r.detail, gens2[0].files().keys());
    assert_eq!(r.linked_files, gens2[0].files().len() - 3);
    assert_eq!(r.previous.as_deref(), Some(g1.as_str()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("two".into()))));
    assert_eq!(get(ts.http_port(), "b.test.example", "/healthz"), Some((200, Some("one".into()))));

    // 4. Drift: a hand edit is reported, nothing is changed.
    let live_site = ts.managed_root().join(format!("generations/{g2}/sites/b.test.example.conf"));
    let clean = rt.block_on(deploy::drift(&*tr[0], &inv2.servers[0], &*store))?;
    assert_eq!(clean.drift, DriftState::Clean);
    let edited = std::fs::read_to_string(&live_site)?.replace("\"one\"", "\"hand\"");
    // Replace (not write through) the inode: generation 1 shares it as a hard link.
    std::fs::write(live_site.with_extension("tmp"), &edited)?;
    std::fs::rename(live_site.with_extension("tmp"), &live_site)?;
    let report = rt.block_on(deploy::drift(&*tr[0], &inv2.servers[0], &*store))?;
    match &report.drift {
        DriftState::Drifted { modified, added, removed } => {
            assert_eq!(modified, &["sites/b.test.example.conf"]);
            assert!(added.is_empty() && removed.is_empty());
        }
        other => panic!("expected drift, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&live_site)?, edited, "drift changes nothing");

    // 5. Plan shows the diff of the drifted file back to the rendered one.
    let plan = rt.block_on(deploy::plan(&*tr[0], &inv2.servers[0], &gens2[0]))?;
    assert_eq!(plan.current.as_deref(), Some(g2.as_str()));
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    assert!(plan.changes[0].diff.contains("-    add_header X-Deploy \"hand\""), "{}", plan.changes[0].diff);

    // 6. Rollback to the previous generation, through the verified path.
    let prev = rt.block_on(deploy::previous_generation(&*store, "s0", Some(&g2)))?;
    assert_eq!(prev.as_deref(), Some(g1.as_str()));
    let r = rt.block_on(deployer.rollback(&*tr[0], &inv2.servers[0], &[], &g1));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(r.action, AuditAction::Rollback);
    assert_eq!(current_generation(&ts.managed_root()).as_deref(), Some(g1.as_str()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("one".into()))));

    // Every outcome is in the audit log, and the chain verifies.
    let log = rt.block_on(store.audit_log())?;
    let outcomes: Vec<&str> = log.iter().map(|r| r.event.outcome.as_str()).collect();
    assert_eq!(outcomes, ["succeeded", "no_op", "succeeded", "succeeded"]);
    assert_eq!(rt.block_on(store.verify_audit())?.broken, None);
    Ok(())
}

#[test]
fn rejected_config_leaves_the_server_on_its_generation_with_nginx_message() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let (good, r) = bed.deploy(&site("a.test.example", "good"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);

    // A certificate file that does not exist on the server: valid input, nginx says no.
    let bad_site = common::refused_site("a.test.example", "bad");
    let (_, r) = bed.deploy(&bad_site);
    assert_eq!(r.state, DeploymentState::Rejected, "{}", r.detail);
    assert!(matches!(r.error, Some(DeployError::Rejected { .. })));
    assert!(r.detail.contains("/nonexistent/cert.pem"), "nginx's own message: {}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    assert_eq!(get(bed.server().http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    assert!(!bed.server().managed_root().join("lock").exists(), "lock released");
    Ok(())
}

/// A server whose installed helper predates `stage … test` stages and ignores the rest:
/// no `valid=` comes back, so the engine runs `nginx -t` as a command of its own (one
/// round trip more) and still refuses what nginx refuses.
#[test]
fn a_helper_that_only_stages_is_validated_by_a_separate_command() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let deploy = |sites: &str| {
        let inv = bed.inventory(sites);
        let generation = render(&inv).remove(0);
        let older = CountingTransport {
            inner: transports(&bed.pool, &inv).remove(0),
            commands: Arc::default(),
            rewrite: Some(drop_test_words),
        };
        let site_refs: Vec<&Site> = inv.sites_for_server("s0").collect();
        let r = bed.rt.block_on(bed.deployer.deploy(&older, &inv.servers[0], &site_refs, generation.clone()));
        (generation, r)
    };
    let (good, r) = deploy(&site("a.test.example", "good"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(r.round_trips, 6, "inspect, lock, stage, nginx -t, activate, commit");
    let (_, r) = deploy(&common::refused_site("a.test.example", "bad"));
    assert_eq!(r.state, DeploymentState::Rejected, "{}", r.detail);
    assert!(r.detail.contains("/nonexistent/cert.pem"), "nginx's own message: {}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    assert_eq!(get(bed.server().http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    Ok(())
}

/// Workers of one nginx cycle usually start within a clock tick of each other, which is
/// how the helper tells a settled master from one in the middle of a reload. A worker
/// the master respawned after a crash (or a slow fork on a loaded machine) breaks that:
/// the deploy must still go ahead (no more live workers than `worker_processes` says, or
/// the same workers for 300 ms), never wait for ever.
#[test]
fn a_worker_respawned_after_a_crash_does_not_block_the_next_deploy() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let (_, r) = bed.deploy(&site("a.test.example", "one"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    let master = bed.server().nginx_pid();
    // Live workers (not shutting down), once the reload's second fork is done: the same
    // set for 300 ms.
    let workers = || -> Vec<u32> {
        rpcc_testkit::child_pids(master)
            .into_iter()
            .filter(|p| {
                let c = rpcc_testkit::cmdline(*p);
                c.contains("worker process") && !c.contains("shutting down")
            })
            .collect()
    };
    let settled = || {
        let (mut seen, mut since) = (workers(), std::time::Instant::now());
        let deadline = since + std::time::Duration::from_secs(5);
        while since.elapsed() < std::time::Duration::from_millis(300) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let now = workers();
            if now != seen {
                (seen, since) = (now, std::time::Instant::now());
            }
        }
        seen
    };
    let before = settled();
    // worker_processes auto: one per CPU; one worker alone cannot look like two cycles.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert!(before.len() >= 2 || cpus == 1, "workers: {before:?}");
    std::thread::sleep(std::time::Duration::from_millis(100)); // a respawn starts ≥ 10 ticks later
    let victim = before[0];
    assert!(std::process::Command::new("kill").args(["-KILL", &victim.to_string()]).status()?.success());
    let after = settled();
    assert!(!after.contains(&victim) && after.len() == before.len(), "respawned: {before:?} -> {after:?}");

    // Before the fix the helper saw two cycles for ever and gave up ("stayed busy").
    let (g, r) = bed.deploy(&site("a.test.example", "two"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(g.id()));
    assert_eq!(get(bed.server().http_port(), "a.test.example", "/healthz"), Some((200, Some("two".into()))));
    Ok(())
}

#[test]
fn reload_failure_after_activation_restores_and_verifies() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let (good, r) = bed.deploy(&site("a.test.example", "good"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);

    // The new config listens on a port another process holds: `nginx -t` passes (it
    // does not bind), the reload fails, nginx keeps the old config silently.
    let blocker = TcpListener::bind("127.0.0.1:0")?;
    let busy = blocker.local_addr()?.port();
    let toml = format!("{}\n{}", bed.fleet.deploy_inventory_toml(), site("a.test.example", "new")).replace(
        &format!("listen_http = \"127.0.0.1:{}\"", ts.http_port()),
        &format!("listen_http = \"127.0.0.1:{busy}\""),
    );
    let (_, r) = bed.deploy_with(&bed.deployer, &rpcc::core::model::Inventory::from_toml_str(&toml)?);
    assert_eq!(r.state, DeploymentState::RolledBack, "{}", r.detail);
    assert!(r.detail.contains("Address already in use") || r.detail.contains("bind()"), "{}", r.detail);
    assert!(r.detail.contains(&format!("restored generation {}", good.id())), "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    let last = bed.rt.block_on(bed.store.deployments(Some("s0"), 1))?;
    assert_eq!(last[0].state, DeploymentState::RolledBack);
    drop(blocker);
    Ok(())
}

/// Fails one named site, passes the rest (the real probe is tested elsewhere).
struct FailSite(&'static str);

#[async_trait::async_trait]
impl HealthProbe for FailSite {
    async fn probe(&self, _server: &Server, site: &Site) -> Result<(), ProbeError> {
        if site.domain.as_str() == self.0 { Err(ProbeError::Unexpected("answered 500".into())) } else { Ok(()) }
    }
}

#[test]
fn unhealthy_site_after_reload_restores_the_last_good_generation() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let (good, r) = bed.deploy(&site("a.test.example", "good"));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);

    let sick = bed.deployer.clone().with_probe(Arc::new(FailSite("sick.test.example")));
    let inv = bed.inventory(&format!("{}{}", site("a.test.example", "new"), site("sick.test.example", "new")));
    let (_, r) = bed.deploy_with(&sick, &inv);
    assert_eq!(r.state, DeploymentState::RolledBack, "{}", r.detail);
    assert!(r.detail.contains("sick.test.example: answered 500"), "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(good.id()));
    assert_eq!(get(bed.server().http_port(), "a.test.example", "/healthz"), Some((200, Some("good".into()))));
    Ok(())
}

#[test]
fn live_lock_is_respected_and_stale_lock_is_broken_and_audited() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let ts = &fleet.servers()[0];
    let rt = runtime();
    let pool = SshPool::new();
    let (deployer, store) = memory_deployer();
    let inv = inventory(&fleet, &site("a.test.example", "x"));
    let tr = transports(&pool, &inv);
    let sites: Vec<&Site> = inv.sites_for_server("s0").collect();
    let gens = render(&inv);
    std::fs::create_dir_all(ts.managed_root())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    std::fs::write(ts.managed_root().join("lock"), format!("other@cp-2:77:beef {} {now}\n", now + 600))?;

    let r = rt.block_on(deployer.deploy(&*tr[0], &inv.servers[0], &sites, gens[0].clone()));
    assert_eq!(r.state, DeploymentState::Failed);
    assert!(
        matches!(&r.error, Some(DeployError::LockHeld { holder, .. }) if holder == "other@cp-2:77:beef"),
        "{}",
        r.detail
    );
    assert!(r.error.as_ref().is_some_and(DeployError::is_retryable));
    assert_eq!(current_generation(&ts.managed_root()), None, "nothing touched");

    // The holder crashed long ago: its lock expired, a half-staged tree is left over.
    std::fs::write(ts.managed_root().join("lock"), format!("other@cp-2:77:beef {} {}\n", now - 10, now - 700))?;
    let staged = ts.managed_root().join("generations/.staging-deadbeef/sites");
    let out = fleet.ssh(ts).arg(format!("mkdir -p {}", staged.display())).output()?;
    assert!(out.status.success());
    let r = rt.block_on(deployer.deploy(&*tr[0], &inv.servers[0], &sites, gens[0].clone()));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert!(!ts.managed_root().join("generations/.staging-deadbeef").exists());
    let log = rt.block_on(store.audit_log())?;
    assert!(
        log.iter().any(|e| e.event.action == AuditAction::BreakLock && e.event.detail.contains("other@cp-2:77:beef"))
    );
    Ok(())
}

#[test]
fn canary_failure_stops_the_rollout_and_unreachable_servers_are_reported() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(3)?;
    let rt = runtime();
    let pool = SshPool::new();
    let (deployer, _store) = memory_deployer();
    // s0 (the canary) gets a certificate nginx cannot load: rejected.
    let inv = inventory(&fleet, &site("a.test.example", "x"));
    let gens = render(&inv);
    let tr = transports(&pool, &inv);
    let bad_toml = format!("{}\n{}", fleet.deploy_inventory_toml(), site("a.test.example", "x"))
        .replace("tls = { mode = \"off\" }", "tls = { mode = \"custom\", cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\", redirect_http = false }");
    let bad_inv = rpcc::core::model::Inventory::from_toml_str(&bad_toml)?;
    let bad = render(&bad_inv);
    let mut mixed = gens.clone();
    mixed[0] = bad[0].clone();
    let policy = RolloutPolicy { strategy: RolloutStrategy::Canary, batch: 1, ..RolloutPolicy::default() };
    let report = rt.block_on(deployer.rollout(&targets(&inv, &mixed, &tr), &policy));
    let states: Vec<DeploymentState> = report.servers.iter().map(|r| r.state).collect();
    assert_eq!(states, [DeploymentState::Rejected, DeploymentState::Skipped, DeploymentState::Skipped]);
    assert!(report.stopped.is_some());
    for s in fleet.servers() {
        assert_eq!(current_generation(&s.managed_root()), None, "{}: nothing touched", s.name());
    }

    // All at once with max_failed = 1: one server unreachable, the others deploy.
    fleet.servers_mut()[1].stop_sshd();
    let policy = RolloutPolicy { max_failed: 1, ..RolloutPolicy::default() };
    let report = rt.block_on(deployer.rollout(&targets(&inv, &gens, &tr), &policy));
    let states: Vec<DeploymentState> = report.servers.iter().map(|r| r.state).collect();
    assert_eq!(states, [DeploymentState::Succeeded, DeploymentState::Failed, DeploymentState::Succeeded]);
    assert!(report.servers[1].detail.contains("cannot connect"), "{}", report.servers[1].detail);
    assert!(report.stopped.is_none());
    assert_eq!(current_generation(&fleet.servers()[1].managed_root()), None);
    Ok(())
}

#[test]
fn a_hand_edited_live_file_is_never_linked_into_the_next_generation() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let (g1, r) = bed.deploy(&format!("{}{}", site("a.test.example", "one"), site("b.test.example", "one")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);

    // Someone edits b's file on the server (new inode, as editors and sed -i do).
    let live = bed.server().managed_root().join(format!("generations/{}/sites/b.test.example.conf", g1.id()));
    let edited = std::fs::read_to_string(&live)?.replace("\"one\"", "\"hand\"");
    std::fs::write(live.with_extension("tmp"), edited)?;
    std::fs::rename(live.with_extension("tmp"), &live)?;

    // The next deploy changes only a; b's hash on the server still reads as unchanged
    // in the manifest, so the engine tries to link it, verification catches the edit,
    // and the whole tree is sent instead.
    let (g2, r) = bed.deploy(&format!("{}{}", site("a.test.example", "two"), site("b.test.example", "one")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!((r.linked_files, r.uploaded_files), (0, g2.files().len()), "fell back to a full upload");
    assert_eq!(get(bed.server().http_port(), "b.test.example", "/healthz"), Some((200, Some("one".into()))));
    assert_eq!(get(bed.server().http_port(), "a.test.example", "/healthz"), Some((200, Some("two".into()))));
    Ok(())
}

#[test]
fn old_generations_are_pruned_but_the_rollback_target_and_generation_0_stay() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let keep2 = bed.deployer.clone().with_options(rpcc::core::deploy::DeployOptions::default().keep(2));
    let mut ids = Vec::new();
    for tag in ["g1", "g2", "g3", "g4"] {
        let (g, r) = bed.deploy_with(&keep2, &bed.inventory(&site("a.test.example", tag)));
        assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
        ids.push(g.id().to_owned());
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(bed.server().managed_root().join("generations"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut want = vec!["0".to_owned(), ids[2].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(on_disk, want, "the live one, the one before it, and the hand-made config");
    Ok(())
}

#[test]
fn include_mode_keeps_the_hand_made_main_config_and_validates_through_it() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let ts = bed.server();
    let mroot = ts.managed_root();
    // The operator's own nginx.conf, including rpcc's tree (the running master was
    // started before this line existed; the first deploy creates what it names).
    let p = ts.nginx_prefix().display().to_string();
    let hand_made = format!(
        "# hand-made, includes rpcc's tree\nworker_processes 1;\npid {p}/logs/nginx.pid;\nerror_log {p}/logs/error.log notice;\n\
         events {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {p}/tmp/body;\n\
         \x20   proxy_temp_path {p}/tmp/proxy;\n    include {}/current/http.conf;\n}}\n",
        mroot.display()
    );
    std::fs::write(ts.nginx_conf(), &hand_made)?;
    let include = |sites: &str| {
        let toml = format!("{}\n{sites}", bed.fleet.deploy_inventory_toml())
            .replace("reload = \"signal\"", "reload = \"signal\", mode = \"include\"");
        rpcc::core::model::Inventory::from_toml_str(&toml).expect("inventory")
    };

    let (g1, r) = bed.deploy_with(&bed.deployer, &include(&site("a.test.example", "inc1")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert!(g1.file("nginx.conf").is_none(), "include mode renders no main config");
    assert_eq!(std::fs::read_to_string(ts.nginx_conf())?, hand_made, "the main config is not touched");
    assert!(!std::fs::symlink_metadata(ts.nginx_conf())?.file_type().is_symlink());
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("inc1".into()))));

    // nginx refuses the next tree through the operator's main config: nothing changes.
    let bad = site("a.test.example", "bad").replace(
        "tls = { mode = \"off\" }",
        "tls = { mode = \"custom\", cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\", redirect_http = false }",
    );
    let (_, r) = bed.deploy_with(&bed.deployer, &include(&bad));
    assert_eq!(r.state, DeploymentState::Rejected, "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(g1.id()));

    let (g2, r) = bed.deploy_with(&bed.deployer, &include(&site("a.test.example", "inc2")));
    assert_eq!(r.state, DeploymentState::Succeeded, "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(g2.id()));
    assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("inc2".into()))));

    // A main config that does not include rpcc's tree is refused with the reason.
    std::fs::write(ts.nginx_conf(), hand_made.replace("include", "# include"))?;
    let (_, r) = bed.deploy_with(&bed.deployer, &include(&site("a.test.example", "inc3")));
    assert_eq!(r.state, DeploymentState::Failed, "{}", r.detail);
    assert!(r.detail.contains("does not include"), "{}", r.detail);
    assert_eq!(bed.current().as_deref(), Some(g2.id()));
    Ok(())
}

/// An engine is built from roles: here an in-memory store and an embedder's health
/// probe (which fails one site: the apply rolls back, naming that site only).
#[test]
fn an_engine_deploys_with_the_store_and_health_probe_it_was_given() -> anyhow::Result<()> {
    let bed = Bed::start()?;
    let inv = bed.inventory(&format!("{}{}", site("a.test.example", "one"), site("b.test.example", "one")));
    let store = Arc::new(rpcc::core::store::MemoryStore::new());
    let engine = rpcc::engine::Engine::with_store(inv.clone(), store.clone(), None)?;
    let report = bed.rt.block_on(engine.apply(&rpcc::engine::Selection::default(), Default::default()))?;
    assert_eq!(report.fleet.servers[0].state, DeploymentState::Succeeded, "{}", report.fleet.servers[0].detail);
    let audit = bed.rt.block_on(store.audit_log())?;
    assert_eq!(audit.last().map(|r| r.event.outcome.as_str()), Some("succeeded"), "{audit:?}");

    let changed = bed.inventory(&format!("{}{}", site("a.test.example", "two"), site("b.test.example", "two")));
    let engine = rpcc::engine::Engine::with_store(changed, store.clone(), None)?
        .with_health_probe(Arc::new(FailSite("b.test.example")));
    let report = bed.rt.block_on(engine.apply(&rpcc::engine::Selection::default(), Default::default()))?;
    let r = &report.fleet.servers[0];
    assert_eq!(r.state, DeploymentState::RolledBack, "{}", r.detail);
    assert!(r.detail.contains("b.test.example: answered 500") && !r.detail.contains("a.test.example:"), "{}", r.detail);
    assert_eq!(get(bed.server().http_port(), "b.test.example", "/healthz"), Some((200, Some("one".into()))));
    Ok(())
}

/// An embedder's transport pool: records the servers it is asked for, counts the
/// commands that go through it, and refuses one server.
#[derive(Debug)]
struct RecordingPool {
    inner: rpcc::ssh::SshTransportPool,
    refuse: &'static str,
    asked: std::sync::Mutex<Vec<String>>,
    commands: Arc<std::sync::atomic::AtomicUsize>,
}

/// A transport that counts the commands sent through it, optionally rewriting each
/// request first (to play a different helper).
struct CountingTransport {
    inner: Arc<dyn rpcc::core::transport::Transport>,
    commands: Arc<std::sync::atomic::AtomicUsize>,
    rewrite: Option<fn(&mut rpcc::core::transport::ExecRequest)>,
}

/// What an installed helper older than `stage … test` receives: the stage command
/// without the `test <mode> <binary> <root>` words it would not know.
fn drop_test_words(request: &mut rpcc::core::transport::ExecRequest) {
    let args = request.argv.args().to_vec();
    if let Some(at) = args.iter().position(|a| a == "stage")
        && args.get(at + 7).is_some_and(|w| w == "test")
        && let Ok(argv) = rpcc::core::transport::Argv::new(request.argv.program(), &args[..at + 7])
    {
        request.argv = argv;
    }
}

#[async_trait::async_trait]
impl rpcc::core::transport::Transport for CountingTransport {
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn exec(
        &self,
        mut request: rpcc::core::transport::ExecRequest,
    ) -> Result<rpcc::core::transport::Output, rpcc::core::transport::TransportError> {
        self.commands.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(rewrite) = self.rewrite {
            rewrite(&mut request);
        }
        self.inner.exec(request).await
    }
    async fn upload(
        &self,
        path: &rpcc::core::value::RemotePath,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), rpcc::core::transport::TransportError> {
        self.commands.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.upload(path, bytes, mode).await
    }
}

impl rpcc::core::transport::TransportPool for RecordingPool {
    fn transport(
        &self,
        server: &Server,
    ) -> Result<Arc<dyn rpcc::core::transport::Transport>, rpcc::core::transport::TransportError> {
        self.asked.lock().expect("lock").push(server.name.to_string());
        if server.name.as_str() == self.refuse {
            return Err(rpcc::core::transport::TransportError::InvalidCommand {
                reason: "this pool does not reach s1".into(),
            });
        }
        let inner = self.inner.transport(server)?;
        Ok(Arc::new(CountingTransport { inner, commands: self.commands.clone(), rewrite: None }))
    }
}

/// The engine reaches servers only through the transport pool it was given: a server
/// the pool refuses is reported not deployed (with the pool's reason) and the others
/// deploy through the pool's transports.
#[test]
fn an_engine_reaches_servers_through_the_transport_pool_it_was_given() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let rt = runtime();
    let inv = inventory(&fleet, &site("a.test.example", "pooled"));
    let commands = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pool = Arc::new(RecordingPool {
        inner: rpcc::ssh::SshTransportPool::new("/", None),
        refuse: "s1",
        asked: std::sync::Mutex::new(Vec::new()),
        commands: commands.clone(),
    });
    let engine = rpcc::engine::Engine::with_store(inv, Arc::new(rpcc::core::store::MemoryStore::new()), None)?
        .with_transports(pool.clone());
    let report = rt.block_on(engine.apply(&rpcc::engine::Selection::default(), Default::default()))?;
    let s0 = report.fleet.servers.iter().find(|r| r.server == "s0").expect("s0 reported");
    assert_eq!(s0.state, DeploymentState::Succeeded, "{}", s0.detail);
    let s1 = report.unreachable.iter().find(|r| r.server == "s1").expect("s1 reported unreachable");
    assert_eq!(s1.state, DeploymentState::Failed);
    assert!(s1.detail.contains("this pool does not reach s1"), "{}", s1.detail);
    assert!(commands.load(std::sync::atomic::Ordering::SeqCst) >= 5, "the deploy's commands went through the pool");
    assert_eq!(get(fleet.servers()[0].http_port(), "a.test.example", "/healthz"), Some((200, Some("pooled".into()))));
    assert_eq!(current_generation(&fleet.servers()[1].managed_root()), None, "s1 untouched");

    let statuses = rt.block_on(engine.status(&rpcc::engine::Selection::default()))?;
    let s1 = statuses.iter().find(|s| s.server == "s1").expect("s1 status");
    assert!(s1.error.as_deref().is_some_and(|e| e.contains("this pool does not reach s1")), "{s1:?}");
    let asked = pool.asked.lock().expect("lock").clone();
    assert!(asked.contains(&"s0".to_owned()) && asked.contains(&"s1".to_owned()), "{asked:?}");
    Ok(())
}
