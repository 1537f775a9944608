//! Renewal outside `apply` (`certs renew`, `rpcc watch`) and revocation.

use std::time::Duration;

use rpcc_core::certs::CertificateOrigin;
use rpcc_core::model::{Server, TlsMode};

use super::{CertificateAction, CertificateNeed, CertificateOutcome, managed_tls};
use crate::engine::{Engine, EngineError};

/// What [`Engine::renew_due`] did: the certificates, and the rollout that put the new
/// ones in service (only when any was obtained).
#[derive(Debug, serde::Serialize)]
pub struct RenewalReport {
    /// One outcome per due site.
    pub certificates: Vec<CertificateOutcome>,
    /// The deploy to the servers whose sites got a new certificate.
    pub deploy: Option<rpcc_core::deploy::FleetReport>,
    /// Servers that could not be reached for that deploy.
    pub unreachable: Vec<rpcc_core::deploy::ServerReport>,
}

impl RenewalReport {
    /// Whether a certificate failed or its deploy did not succeed.
    pub fn failed(&self) -> bool {
        use rpcc_core::deploy::DeploymentState;
        self.certificates.iter().any(|c| c.action == CertificateAction::Failed)
            || !self.unreachable.is_empty()
            || self
                .deploy
                .as_ref()
                .is_some_and(|d| d.servers.iter().any(|r| r.state.is_failure() || r.state == DeploymentState::Skipped))
    }
}

impl Engine {
    /// Renew what is due among the selected servers' sites and deploy only if something
    /// was obtained (to the servers that serve those sites, through the verified path;
    /// the generation is rendered from the inventory as it stands). A site without its
    /// first ACME certificate is left to `apply`, which serves its challenge first.
    pub async fn renew_due(
        &self,
        sel: &crate::engine::Selection,
        options: crate::engine::ApplyOptions,
    ) -> Result<RenewalReport, EngineError> {
        self.check(sel)?;
        let servers = self.selected(sel);
        let mut outcomes = self.generate_self_signed(&servers, &options.certificates).await?;
        let due = self.certificates_due(&servers, &options.certificates).await?;
        let (first, renewals): (Vec<_>, Vec<_>) = due
            .into_iter()
            .filter(|(s, _)| s.tls.mode == TlsMode::Acme)
            .partition(|(_, need)| *need == CertificateNeed::Missing);
        for (site, _) in first {
            outcomes.push(CertificateOutcome::deferred(
                site,
                "no certificate yet: `rpcc apply` serves its challenge, then obtains it",
            ));
        }
        outcomes.extend(self.issue_acme(&renewals, &options.certificates).await);
        let obtained: Vec<&str> = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.action,
                    CertificateAction::Issued | CertificateAction::Renewed | CertificateAction::Generated
                )
            })
            .map(|o| o.site.as_str())
            .collect();
        let targets: Vec<&Server> = servers
            .iter()
            .copied()
            .filter(|s| self.inventory().sites_for_server(s.name.as_str()).any(|x| obtained.contains(&x.id().as_str())))
            .collect();
        let (deploy, unreachable) = if targets.is_empty() {
            (None, Vec::new())
        } else {
            let certificates = self.certificate_set().await?;
            let (fleet, unreachable) = self.rollout(&targets, &certificates, &options).await?;
            (Some(fleet), unreachable)
        };
        Ok(RenewalReport { certificates: outcomes, deploy, unreachable })
    }
}

impl Engine {
    /// Revoke `site`'s stored ACME certificate at the CA (`key_compromise`: its key
    /// leaked), then obtain a new one and deploy it to the site's servers at once, so no
    /// server keeps serving the revoked one. A self-signed certificate is regenerated.
    pub async fn revoke_certificate(
        &self,
        site: &str,
        key_compromise: bool,
        options: crate::engine::ApplyOptions,
    ) -> Result<RenewalReport, EngineError> {
        let unknown =
            || EngineError::Unknown { what: "site with an acme or self_signed certificate", name: site.to_owned() };
        let s = self.inventory().sites.iter().find(|s| s.id() == site && managed_tls(s)).ok_or_else(unknown)?;
        let records = self.certificate_records().await?;
        let rec = records.iter().find(|r| r.site == site).ok_or_else(|| EngineError::Certificates {
            message: format!("{site}: no certificate is stored, nothing to revoke"),
        })?;
        if rec.origin == CertificateOrigin::Acme {
            let keyring = self.keyring_for(&[s])?;
            let client = self
                .acme_account(keyring, options.certificates.order_timeout)
                .await
                .map_err(|e| EngineError::Certificates { message: format!("{site}: {e}") })?;
            client
                .revoke(&rec.chain_pem, key_compromise)
                .await
                .map_err(|e| EngineError::Certificates { message: format!("{site}: not revoked: {e}") })?;
            tracing::warn!(site, fingerprint = %rec.fingerprint, "certificate revoked");
        }
        let mut options = options;
        options.certificates.force = true;
        options.certificates.sites = vec![site.to_owned()];
        let group = self.inventory().group(s.group.as_str());
        let sel = crate::engine::Selection {
            servers: group.map(|g| g.servers.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            groups: Vec::new(),
        };
        self.renew_due(&sel, options).await
    }
}

/// Certificate renewal inside a long-running watcher: [`RenewalWatch::run`] renews and
/// deploys what is due; a failing site is reported once until it succeeds again.
#[derive(Debug, Default)]
pub struct RenewalWatch {
    failing: std::collections::BTreeSet<String>,
}

/// What one scheduled renewal has to say: `None` when nothing changed worth a message.
#[derive(Debug)]
pub struct RenewalNews {
    /// The run's report.
    pub report: RenewalReport,
    /// A message for the notifiers (new failures, recoveries, renewals), if any.
    pub message: Option<String>,
    /// The groups of the sites the message is about (for notifier routing).
    pub groups: Vec<String>,
}

impl RenewalWatch {
    /// How often a watcher checks for due certificates.
    pub const EVERY: Duration = Duration::from_secs(6 * 3600);

    /// A delay before the first check, spread over a tenth of [`Self::EVERY`] by the
    /// process id, so watchers started together do not all renew at once.
    pub fn first_delay() -> Duration {
        Self::EVERY.mul_f64(f64::from(std::process::id() % 1000) / 10_000.0)
    }

    /// Renew what is due on the whole inventory and say what is new.
    pub async fn run(&mut self, engine: &Engine) -> Result<RenewalNews, EngineError> {
        let report =
            engine.renew_due(&crate::engine::Selection::default(), crate::engine::ApplyOptions::default()).await?;
        let mut lines = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        for c in &report.certificates {
            let before = lines.len();
            match c.action {
                CertificateAction::Failed if self.failing.insert(c.site.clone()) => {
                    lines.push(format!("certificate of {} could not be renewed: {}", c.site, c.detail));
                }
                CertificateAction::Renewed | CertificateAction::Generated | CertificateAction::Issued => {
                    let again = if self.failing.remove(&c.site) { " (recovered)" } else { "" };
                    lines.push(format!("certificate of {} renewed{again} ({})", c.site, c.detail));
                }
                _ => {}
            }
            if lines.len() > before
                && let Some(site) = engine.inventory().sites.iter().find(|s| s.id() == c.site)
                && !groups.iter().any(|g| g == site.group.as_str())
            {
                groups.push(site.group.to_string());
            }
        }
        if let Some(d) = &report.deploy {
            for r in d.servers.iter().filter(|r| r.state.is_failure()) {
                lines.push(format!(
                    "deploying renewed certificates to {} failed: {} {}",
                    r.server,
                    r.state.as_str(),
                    r.detail
                ));
            }
        }
        let message = (!lines.is_empty()).then(|| lines.join("\n"));
        Ok(RenewalNews { report, message, groups })
    }
}
