//! What the operations take and give: the server [`Selection`], [`ApplyOptions`], and the
//! serializable reports ([`ApplyReport`], [`ServerOutcome`]) that the CLI's `--json`
//! and the Python package print alike.

use std::sync::Arc;

use rpcc_core::deploy::{
    DeployOptions, DeploymentState, FleetReport, ProgressFn, RolloutOverrides, ServerReport, StepHook,
};
use rpcc_core::model::Inventory;
use rpcc_monitor::Notification;

use super::EngineError;
use crate::certs::{CertificateAction, CertificateOptions, CertificateOutcome};

/// One server's part of an operation: its result, or why the operation failed there.
/// Serialized as `{"server": …, "result": … or null, "error": "…" or null}`, the shape
/// of every per-server list in the CLI's `--json` output and the Python package.
#[derive(Debug)]
pub struct ServerOutcome<T> {
    /// The server.
    pub server: String,
    /// What the operation found, or why it failed for this server.
    pub result: Result<T, EngineError>,
}

impl<T> ServerOutcome<T> {
    /// Whether the operation failed for this server.
    pub fn is_err(&self) -> bool {
        self.result.is_err()
    }
}

impl<T: serde::Serialize> serde::Serialize for ServerOutcome<T> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = ser.serialize_struct("ServerOutcome", 3)?;
        st.serialize_field("server", &self.server)?;
        st.serialize_field("result", &self.result.as_ref().ok())?;
        st.serialize_field("error", &self.result.as_ref().err().map(ToString::to_string))?;
        st.end()
    }
}

/// Which servers an operation covers: the named ones, the members of the named groups,
/// or (both empty) all of them.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Server names.
    pub servers: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// How `apply` runs.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    /// Protocol options (keep, timeouts).
    pub deploy: DeployOptions,
    /// Changes to the rollout policy, which is otherwise the strictest of the selected
    /// servers' groups.
    pub rollout: RolloutOverrides,
    /// Probe every site over HTTP after the reload (default on).
    pub skip_probe: bool,
    /// Progress callback.
    pub progress: Option<Arc<ProgressFn>>,
    /// Crash-injection hook (tests).
    pub hook: Option<Arc<dyn StepHook>>,
    /// Deploy with the certificates already stored; obtain none (no second phase).
    pub skip_certificates: bool,
    /// Which certificates to obtain (renewal window, forced renewal).
    pub certificates: CertificateOptions,
}

/// What `apply` did: reports of servers that were deployed (or skipped, or rolled back)
/// and of servers that could not be reached at all.
///
/// Serialized (the CLI's `apply --json` and the Python package alike) as `{"servers":
/// [every server's report, unreachable ones first], "stopped", "rolled_back",
/// "certificates", "tls_phase": [reports of the second rollout], "failed",
/// "notification_failures"}`.
#[derive(Debug)]
pub struct ApplyReport {
    /// The rollout.
    pub fleet: FleetReport,
    /// Servers that never started (no transport: unenrolled, credentials unusable).
    pub unreachable: Vec<ServerReport>,
    /// Certificates generated, issued, renewed, failed or deferred by this run.
    pub certificates: Vec<CertificateOutcome>,
    /// The second rollout, which put newly obtained certificates in service (only when
    /// this run obtained any).
    pub tls_phase: Option<FleetReport>,
    /// Notifiers that failed to take the outcome (`[monitor] notify_deploys`), with why.
    pub notification_failures: Vec<String>,
}

impl serde::Serialize for ApplyReport {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = ser.serialize_struct("ApplyReport", 7)?;
        st.serialize_field("servers", &self.all().collect::<Vec<_>>())?;
        st.serialize_field("stopped", &self.fleet.stopped)?;
        st.serialize_field("rolled_back", &self.fleet.rolled_back)?;
        st.serialize_field("certificates", &self.certificates)?;
        st.serialize_field("tls_phase", &self.tls_phase.iter().flat_map(|f| &f.servers).collect::<Vec<_>>())?;
        st.serialize_field("failed", &self.failed())?;
        st.serialize_field("notification_failures", &self.notification_failures)?;
        st.end()
    }
}

impl ApplyReport {
    /// Every server's report, unreachable ones first.
    pub fn all(&self) -> impl Iterator<Item = &ServerReport> {
        self.unreachable.iter().chain(&self.fleet.servers)
    }

    /// The operators' message about this run (by `actor`) and the groups of the servers
    /// it touched, which route it.
    pub fn notification(&self, inv: &Inventory, actor: &str) -> (Notification, Vec<String>) {
        let reports: Vec<_> = self.all().collect();
        let count = |f: &dyn Fn(&DeploymentState) -> bool| reports.iter().filter(|r| f(&r.state)).count();
        let ok = count(&|s| *s == DeploymentState::Succeeded);
        let failed = count(&|s| s.is_failure());
        let skipped = count(&|s| *s == DeploymentState::Skipped);
        let mut text = format!(
            "rpcc apply by {actor}: {ok} succeeded, {failed} failed, {skipped} skipped, of {} server(s)",
            reports.len()
        );
        for r in reports.iter().filter(|r| r.state != DeploymentState::Succeeded) {
            text.push_str(&format!("\n{}: {} {}", r.server, r.state.as_str(), r.detail));
        }
        for c in self.certificates.iter().filter(|c| c.action == CertificateAction::Failed) {
            text.push_str(&format!("\ncertificate of {}: failed: {}", c.site, c.detail));
        }
        let mut groups: Vec<String> = Vec::new();
        for r in &reports {
            for g in inv.groups_of_server(&r.server) {
                if !groups.iter().any(|x| x == g.name.as_str()) {
                    groups.push(g.name.to_string());
                }
            }
        }
        (Notification::deploy(text, groups.first().cloned()), groups)
    }

    /// Whether anything failed, was skipped, or a roll-back did not succeed.
    pub fn failed(&self) -> bool {
        let phases = std::iter::once(&self.fleet).chain(&self.tls_phase);
        let bad = |r: &ServerReport| r.state.is_failure() || r.state == DeploymentState::Skipped;
        self.unreachable.iter().any(bad)
            || phases.clone().flat_map(|f| &f.servers).any(bad)
            || phases.flat_map(|f| &f.rolled_back).any(|r| r.state != DeploymentState::Succeeded)
            || self.certificates.iter().any(|c| c.action == CertificateAction::Failed)
    }
}
