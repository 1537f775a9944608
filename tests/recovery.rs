//! What the next run does with a server a crashed run left behind (issue 36). A first
//! deploy that activated and verified its generation, then died before its commit,
//! leaves `current` on that generation and `committed` on the hand-made config (0). The
//! next run used to switch back to generation 0 first, so when it then failed before
//! its own switch, the server answered for none of its sites. Now the verified
//! generation is adopted as committed and keeps serving; an unverified one is still
//! replaced by the committed generation.

mod common;

use std::sync::Arc;

use common::{Bed, get, refused_site, site};
use rpcc::core::deploy::{AuditAction, DeployStep, DeploymentState, HookDecision, StateStore as _, StepHook};

struct CrashBefore(DeployStep);

impl StepHook for CrashBefore {
    fn before(&self, _server: &str, step: DeployStep) -> HookDecision {
        if step == self.0 { HookDecision::Crash } else { HookDecision::Continue }
    }
}

fn committed(bed: &Bed) -> String {
    std::fs::read_to_string(bed.server().managed_root().join("committed")).unwrap_or_default().trim().to_owned()
}

#[test]
fn a_verified_uncommitted_first_generation_keeps_serving_when_the_next_run_fails() -> anyhow::Result<()> {
    for crash_at in [DeployStep::Probe, DeployStep::Commit] {
        let bed = Bed::start()?;
        let ts = bed.server();
        // The first deploy's process dies after its verified activation.
        let crashing = common::deployer(bed.store.clone())
            .with_holder("crashed@ci:5000001:1")
            .with_hook(Arc::new(CrashBefore(crash_at)));
        let (g1, r) = bed.deploy_with(&crashing, &bed.inventory(&site("a.test.example", "one")));
        assert_eq!(r.state, DeploymentState::Abandoned, "{crash_at}: {}", r.detail);
        assert_eq!(bed.current().as_deref(), Some(g1.id()));
        assert_eq!(committed(&bed), "0", "{crash_at}: only the hand-made config was ever committed");
        assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("one".into()))));

        // The next run fails before its switch (nginx refuses its tree).
        let (_, r) = bed.deploy(&refused_site("a.test.example", "two"));
        assert_eq!(r.state, DeploymentState::Rejected, "{crash_at}: {}", r.detail);
        assert_eq!(r.recovered.as_deref(), Some(g1.id()), "{crash_at}");
        assert_eq!(
            get(ts.http_port(), "a.test.example", "/healthz"),
            Some((200, Some("one".into()))),
            "{crash_at}: the site is still served"
        );
        assert_eq!(bed.current().as_deref(), Some(g1.id()));
        assert_eq!(committed(&bed), g1.id(), "{crash_at}: adopted as committed");
        let log = bed.rt.block_on(bed.store.audit_log())?;
        let adopted = log.iter().any(|e| {
            e.event.action == AuditAction::Recover
                && e.event.outcome == "adopted"
                && e.event.generation.as_deref() == Some(g1.id())
        });
        assert!(adopted, "{crash_at}: the adoption is audited");

        // And a good deploy goes on from there.
        let (g3, r) = bed.deploy(&site("a.test.example", "three"));
        assert_eq!(r.state, DeploymentState::Succeeded, "{crash_at}: {}", r.detail);
        assert_eq!(committed(&bed), g3.id());
        assert_eq!(get(ts.http_port(), "a.test.example", "/healthz"), Some((200, Some("three".into()))));
    }
    Ok(())
}
