//! Certificates of an [`Engine`]'s sites: which are due, self-signed generation, ACME
//! issuance over HTTP-01 on every server that serves a site, and the set of opened
//! certificates a deployable render needs. `Engine::apply` runs the two phases: deploy
//! (sites without a certificate serve challenges only), obtain what is due, deploy again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use rpcc_acme::{
    AcmeClient, AcmeError, CertbotClient, WebrootResponder, WebrootTarget, certificate_record, self_signed,
};
use rpcc_core::certs::{CertificateOrigin, CertificateRecord, CertificateSet, CertificateStore as _, SiteCertificate};
use rpcc_core::keyring::{Keyring, KeyringError};
use rpcc_core::model::{CertificateClient, Server, Site, TlsMode};
use secrecy::ExposeSecret as _;

use crate::engine::{Engine, EngineError};

/// Days a generated self-signed certificate is valid.
pub const SELF_SIGNED_DAYS: u32 = 365;
/// Orders placed with the CA at once.
const PARALLEL_ORDERS: usize = 8;
/// Attempts to reach the CA before a run gives up on it (waiting 1 s, then 2 s).
const CA_ATTEMPTS: u32 = 3;

/// Why a site needs a (new) certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum CertificateNeed {
    /// None is stored.
    Missing,
    /// The stored one does not cover the site's current names.
    NamesChanged,
    /// It expires within the renewal window.
    Expiring {
        /// Whole days left.
        days_left: i64,
    },
    /// Renewal was forced.
    Forced,
}

impl std::fmt::Display for CertificateNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no certificate yet"),
            Self::NamesChanged => f.write_str("the site's names changed"),
            Self::Expiring { days_left } => write!(f, "expires in {days_left} day(s)"),
            Self::Forced => f.write_str("renewal forced"),
        }
    }
}

/// What a run did about one site's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CertificateAction {
    /// A first certificate was issued by the CA.
    Issued,
    /// A stored certificate was replaced by a new one from the CA.
    Renewed,
    /// A self-signed certificate was generated.
    Generated,
    /// Obtaining it failed (see the detail); the stored one, if any, stays in use.
    Failed,
    /// Not attempted this run (a serving server was not deployed, or the CA rate-limits).
    Deferred,
}

/// One site's certificate outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertificateOutcome {
    /// The site.
    pub site: String,
    /// What happened.
    pub action: CertificateAction,
    /// Why it was needed, or why it failed.
    pub detail: String,
    /// Expiry of the new certificate (Unix seconds).
    pub not_after: Option<i64>,
    /// SHA-256 fingerprint of the new certificate's leaf.
    pub fingerprint: Option<String>,
}

impl CertificateOutcome {
    fn new(site: &str, action: CertificateAction, detail: String) -> Self {
        Self { site: site.to_owned(), action, detail, not_after: None, fingerprint: None }
    }

    pub(crate) fn deferred(site: &Site, why: &str) -> Self {
        Self::new(&site.id(), CertificateAction::Deferred, why.to_owned())
    }

    fn stored(site: &str, action: CertificateAction, detail: String, rec: &CertificateRecord) -> Self {
        Self {
            not_after: Some(rec.not_after),
            fingerprint: Some(rec.fingerprint.to_hex()),
            ..Self::new(site, action, detail)
        }
    }
}

/// Which certificates a run obtains.
#[derive(Clone, Debug, Default)]
pub struct CertificateOptions {
    /// Renew what expires within this many days (default: the inventory's
    /// `acme.renew_days`, 30).
    pub renew_days: Option<u32>,
    /// Renew every ACME and self-signed certificate of the selection now.
    pub force: bool,
    /// Wait at most this long for each order (default 90 s).
    pub order_timeout: Option<Duration>,
    /// Orders placed with the CA at once (default 8).
    pub parallel_orders: Option<usize>,
    /// Only these sites (their ids); empty: every site of the selection.
    pub sites: Vec<String>,
}

/// True for sites whose certificate rpcc keeps (ACME and self-signed).
pub fn managed_tls(site: &Site) -> bool {
    matches!(site.tls.mode, TlsMode::Acme | TlsMode::SelfSigned)
}

/// Unix seconds now.
pub(crate) fn now_unix() -> i64 {
    rpcc_core::deploy::unix_ms() / 1000
}

/// Whether `site` needs a certificate, given what is stored.
pub fn certificate_need(
    site: &Site,
    stored: Option<&CertificateRecord>,
    renew_days: u32,
    force: bool,
    now: i64,
) -> Option<CertificateNeed> {
    let Some(rec) = stored else { return Some(CertificateNeed::Missing) };
    if !rec.covers_exactly(&site.certificate_names()) {
        return Some(CertificateNeed::NamesChanged);
    }
    if force {
        return Some(CertificateNeed::Forced);
    }
    let days_left = rec.days_left(now);
    (days_left < i64::from(renew_days)).then_some(CertificateNeed::Expiring { days_left })
}

fn store_error(e: rpcc_core::deploy::StoreError) -> EngineError {
    EngineError::Certificates { message: format!("state store: {e}") }
}

impl Engine {
    /// The ACME and self-signed sites served by any of `servers`, each once.
    pub fn managed_sites<'a>(&'a self, servers: &[&Server]) -> Vec<&'a Site> {
        self.inventory()
            .sites
            .iter()
            .filter(|site| managed_tls(site))
            .filter(|site| {
                servers.iter().any(|s| self.inventory().sites_for_server(s.name.as_str()).any(|x| x == *site))
            })
            .collect()
    }

    /// Every stored certificate.
    pub async fn certificate_records(&self) -> Result<Vec<CertificateRecord>, EngineError> {
        self.store().certificates().await.map_err(store_error)
    }

    fn keyring_for(&self, sites: &[&Site]) -> Result<&Keyring, EngineError> {
        self.keyring().ok_or_else(|| EngineError::CertificateKeys {
            sites: sites.iter().map(|s| s.id()).collect::<Vec<_>>().join(", "),
            source: KeyringError::NoKeys,
        })
    }

    /// The stored certificates of the inventory's ACME and self-signed sites, opened
    /// for a deployable render (keys decrypted with the keyring).
    pub async fn certificate_set(&self) -> Result<CertificateSet, EngineError> {
        let records = self.certificate_records().await?;
        let mut set = CertificateSet::new();
        for rec in records {
            let Some(site) = self.inventory().sites.iter().find(|s| s.id() == rec.site && managed_tls(s)) else {
                continue;
            };
            let keyring = self.keyring_for(&[site])?;
            let record = rpcc_core::certs::key_record(&rec.site)
                .map_err(|source| EngineError::CertificateKeys { sites: rec.site.clone(), source })?;
            let envelope = rpcc_core::keyring::SecretStore::secret(&**self.store(), &record)
                .await
                .map_err(store_error)?
                .ok_or_else(|| EngineError::Certificates {
                    message: format!("{}: the certificate is stored but its key ({record}) is missing", rec.site),
                })?;
            let key = keyring
                .open(&record, &envelope)
                .map_err(|source| EngineError::CertificateKeys { sites: rec.site.clone(), source })?;
            set.insert(&rec.site, SiteCertificate::new(&rec.chain_pem, key.expose_secret(), rec.fingerprint));
        }
        Ok(set)
    }

    /// Seal `key_pem` and store it with `rec` (one transaction).
    async fn keep(&self, site: &Site, rec: &CertificateRecord, key_pem: &secrecy::SecretString) -> Result<(), String> {
        let keyring = self.keyring_for(&[site]).map_err(|e| e.to_string())?;
        let record = rpcc_core::certs::key_record(&rec.site).map_err(|e| e.to_string())?;
        let envelope = keyring.seal(&record, key_pem).map_err(|e| e.to_string())?;
        self.store().put_certificate(rec, &envelope).await.map_err(|e| format!("state store: {e}"))
    }

    /// The sites among `servers`' that need a certificate, with the reason.
    pub async fn certificates_due<'a>(
        &'a self,
        servers: &[&Server],
        options: &CertificateOptions,
    ) -> Result<Vec<(&'a Site, CertificateNeed)>, EngineError> {
        let records = self.certificate_records().await?;
        let renew_days = options.renew_days.unwrap_or(self.inventory().acme.renew_days);
        let now = now_unix();
        Ok(self
            .managed_sites(servers)
            .into_iter()
            .filter(|site| options.sites.is_empty() || options.sites.contains(&site.id()))
            .filter_map(|site| {
                let stored = records.iter().find(|r| r.site == site.id());
                certificate_need(site, stored, renew_days, options.force, now).map(|need| (site, need))
            })
            .collect())
    }

    /// Generate and store the self-signed certificates that are due among `servers`'
    /// sites. Refused before anything is generated when there is no keyring.
    pub async fn generate_self_signed(
        &self,
        servers: &[&Server],
        options: &CertificateOptions,
    ) -> Result<Vec<CertificateOutcome>, EngineError> {
        let due: Vec<(&Site, CertificateNeed)> = self
            .certificates_due(servers, options)
            .await?
            .into_iter()
            .filter(|(s, _)| s.tls.mode == TlsMode::SelfSigned)
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        self.keyring_for(&due.iter().map(|(s, _)| *s).collect::<Vec<_>>())?;
        let mut out = Vec::new();
        for (site, need) in due {
            let names = site.certificate_names();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let made = self_signed(&refs, SELF_SIGNED_DAYS).and_then(|c| {
                certificate_record(&site.id(), &names, CertificateOrigin::SelfSigned, &c.chain_pem).map(|r| (r, c))
            });
            let outcome = match made {
                Ok((rec, cert)) => match self.keep(site, &rec, &cert.key_pem).await {
                    Ok(()) => {
                        CertificateOutcome::stored(&rec.site, CertificateAction::Generated, need.to_string(), &rec)
                    }
                    Err(e) => CertificateOutcome::new(&site.id(), CertificateAction::Failed, e),
                },
                Err(e) => CertificateOutcome::new(&site.id(), CertificateAction::Failed, e.to_string()),
            };
            out.push(outcome);
        }
        Ok(out)
    }

    /// The account at the inventory's CA, retried with backoff while the CA is
    /// unavailable.
    async fn acme_account(&self, keyring: &Keyring, timeout: Option<Duration>) -> Result<AcmeClient, AcmeError> {
        let acme = &self.inventory().acme;
        let base = self.inventory().base_dir.clone().unwrap_or_default();
        let root = acme.ca_root.as_ref().map(|p| base.join(p));
        let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            let opened =
                AcmeClient::open_account(&acme.directory, root.as_deref(), &contact, &**self.store(), keyring).await;
            match opened {
                Ok(client) => {
                    return Ok(match timeout {
                        Some(t) => client.with_timeout(t),
                        None => client,
                    });
                }
                Err(e) if attempt < CA_ATTEMPTS && matches!(e, AcmeError::Unavailable { .. }) => {
                    tracing::warn!(attempt, error = %e, "ACME CA unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Obtain certificates from the CA for `due` ACME sites (orders in parallel; each
    /// site's HTTP-01 answers uploaded to every server of its group), storing each as
    /// soon as it is issued. After a rate limit, orders not yet placed are deferred.
    pub async fn issue_acme(
        &self,
        due: &[(&Site, CertificateNeed)],
        options: &CertificateOptions,
    ) -> Vec<CertificateOutcome> {
        let due: Vec<&(&Site, CertificateNeed)> = due.iter().filter(|(s, _)| s.tls.mode == TlsMode::Acme).collect();
        if due.is_empty() {
            return Vec::new();
        }
        let fail_all = |message: String| {
            due.iter()
                .map(|(s, _)| CertificateOutcome::new(&s.id(), CertificateAction::Failed, message.clone()))
                .collect()
        };
        let keyring = match self.keyring_for(&due.iter().map(|(s, _)| *s).collect::<Vec<_>>()) {
            Ok(k) => k,
            Err(e) => return fail_all(e.to_string()),
        };
        // The native account is opened only when a site uses rpcc's own client.
        let client = if due.iter().any(|(s, _)| s.tls.client == CertificateClient::Rpcc) {
            match self.acme_account(keyring, options.order_timeout).await {
                Ok(c) => Some(c),
                Err(e) => return fail_all(e.to_string()),
            }
        } else {
            None
        };
        let limited = AtomicBool::new(false);
        let jobs = due.iter().map(|(site, need)| {
            let (client, limited) = (client.as_ref(), &limited);
            async move {
                if limited.load(Ordering::SeqCst) {
                    return CertificateOutcome::new(
                        &site.id(),
                        CertificateAction::Deferred,
                        "not ordered: the CA rate-limited an earlier order in this run".into(),
                    );
                }
                let outcome = match (site.tls.client, client) {
                    (CertificateClient::Certbot, _) | (_, None) => self.certbot_one(site, need).await,
                    (CertificateClient::Rpcc, Some(client)) => self.order_one(client, site, need).await,
                };
                if let Err(AcmeError::Refused { rate_limited: Some(_), .. }) = &outcome {
                    limited.store(true, Ordering::SeqCst);
                }
                outcome
                    .unwrap_or_else(|e| CertificateOutcome::new(&site.id(), CertificateAction::Failed, e.to_string()))
            }
        });
        futures_util::stream::iter(jobs)
            .buffered(options.parallel_orders.unwrap_or(PARALLEL_ORDERS).max(1))
            .collect()
            .await
    }

    /// `certbot certonly --webroot` on the first server of the site's group, the result
    /// read back and stored like rpcc's own.
    async fn certbot_one(&self, site: &Site, need: &CertificateNeed) -> Result<CertificateOutcome, AcmeError> {
        let publish = |reason: String| AcmeError::Publish { domain: site.domain.to_string(), reason };
        let server = self
            .inventory()
            .group(site.group.as_str())
            .and_then(|g| g.servers.first())
            .and_then(|name| self.inventory().server(name.as_str()))
            .ok_or_else(|| publish("its group has no server to run certbot on".into()))?;
        let transport = self.transport(server).map_err(|e| publish(e.to_string()))?;
        let acme = &self.inventory().acme;
        let mut certbot =
            CertbotClient::new(server.name.as_str(), transport, server.nginx.managed_root.clone(), &acme.directory);
        if let Some(root) = &acme.ca_root {
            certbot = certbot.with_ca_bundle(&root.display().to_string());
        }
        if let Some(mail) = acme.contact.first().and_then(|c| c.strip_prefix("mailto:")) {
            certbot = certbot.with_email(mail);
        }
        let names = site.certificate_names();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let issued = certbot.issue(&site.id(), &refs).await?;
        self.store_issued(site, need, &names, &issued).await
    }

    async fn order_one(
        &self,
        client: &AcmeClient,
        site: &Site,
        need: &CertificateNeed,
    ) -> Result<CertificateOutcome, AcmeError> {
        let group = self.inventory().group(site.group.as_str());
        let mut targets = Vec::new();
        for name in group.map(|g| g.servers.as_slice()).unwrap_or_default() {
            let Some(server) = self.inventory().server(name.as_str()) else { continue };
            let transport = self
                .transport(server)
                .map_err(|e| AcmeError::Publish { domain: site.domain.to_string(), reason: e.to_string() })?;
            let webroot = server
                .nginx
                .managed_root
                .join("acme")
                .map_err(|e| AcmeError::Publish { domain: site.domain.to_string(), reason: e.to_string() })?;
            targets.push(WebrootTarget { server: server.name.to_string(), transport, webroot });
        }
        let names = site.certificate_names();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let issued = client.issue(&refs, &WebrootResponder::new(targets)).await?;
        self.store_issued(site, need, &names, &issued).await
    }

    /// Check an issued chain covers `names`, then store it with its sealed key.
    async fn store_issued(
        &self,
        site: &Site,
        need: &CertificateNeed,
        names: &[String],
        issued: &rpcc_acme::IssuedCertificate,
    ) -> Result<CertificateOutcome, AcmeError> {
        let rec = certificate_record(&site.id(), names, CertificateOrigin::Acme, &issued.chain_pem)?;
        self.keep(site, &rec, &issued.key_pem)
            .await
            .map_err(|reason| AcmeError::Account(format!("{}: issued but not stored: {reason}", site.id())))?;
        let action =
            if *need == CertificateNeed::Missing { CertificateAction::Issued } else { CertificateAction::Renewed };
        Ok(CertificateOutcome::stored(&rec.site, action, need.to_string(), &rec))
    }
}

/// A site as the post-deploy probe should judge it while its certificate is pending:
/// plain HTTP, any status (its block answers 503 outside the challenge path).
pub(crate) fn pending_view(site: &Site) -> Site {
    let mut s = site.clone();
    s.tls.mode = TlsMode::Off;
    s.tls.redirect_http = false;
    s.health_path = None;
    s
}

/// What one server presents for a site over HTTPS.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServedCertificate {
    /// The server.
    pub server: String,
    /// SHA-256 of the certificate it presented for the site's name (SNI).
    pub fingerprint: Option<String>,
    /// Why none could be read.
    pub error: Option<String>,
}

/// One site's certificate: what is stored, whether it is due, what each server serves.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertificateStatus {
    /// The site.
    pub site: String,
    /// `acme` or `self_signed`.
    pub mode: &'static str,
    /// The stored certificate.
    pub stored: Option<CertificateRecord>,
    /// Whole days until the stored one expires.
    pub days_left: Option<i64>,
    /// Why a new one is needed (`None`: not due).
    pub due: Option<CertificateNeed>,
    /// Per serving server (of the selection).
    pub served: Vec<ServedCertificate>,
}

impl CertificateStatus {
    /// True when every server serves the stored certificate.
    pub fn in_service(&self) -> bool {
        let stored = self.stored.as_ref().map(|r| r.fingerprint.to_hex());
        stored.is_some() && self.served.iter().all(|s| s.fingerprint == stored)
    }
}

impl Engine {
    /// Per ACME or self-signed site of the selected servers: the stored certificate,
    /// whether it is due for renewal, and the certificate each server presents for the
    /// site's name over HTTPS (SNI), so a stored-but-not-deployed one shows.
    pub async fn certificate_status(
        &self,
        sel: &crate::engine::Selection,
        renew_days: Option<u32>,
    ) -> Result<Vec<CertificateStatus>, EngineError> {
        self.check(sel)?;
        let servers = self.selected(sel);
        let records = self.certificate_records().await?;
        let renew_days = renew_days.unwrap_or(self.inventory().acme.renew_days);
        let prober = rpcc_monitor::SiteProber::new(Duration::from_secs(5));
        let now = now_unix();
        let mut out = Vec::new();
        for site in self.managed_sites(&servers) {
            let stored = records.iter().find(|r| r.site == site.id()).cloned();
            let serving: Vec<&&Server> = servers
                .iter()
                .filter(|s| self.inventory().sites_for_server(s.name.as_str()).any(|x| x == site))
                .collect();
            let served = Self::on_each(serving.iter().map(|server| {
                let prober = &prober;
                async move {
                    let Some(target) = rpcc_monitor::SiteTarget::for_site(server, site).await else {
                        return ServedCertificate {
                            server: server.name.to_string(),
                            fingerprint: None,
                            error: Some("the server's address does not resolve".into()),
                        };
                    };
                    let (fingerprint, error) = match prober.probe(&target).await.cert {
                        Some(Ok(info)) => (Some(info.fingerprint), None),
                        Some(Err(e)) => (None, Some(e)),
                        None => (None, Some("not probed over HTTPS".into())),
                    };
                    ServedCertificate { server: server.name.to_string(), fingerprint, error }
                }
            }))
            .await;
            out.push(CertificateStatus {
                site: site.id(),
                mode: if site.tls.mode == TlsMode::Acme { "acme" } else { "self_signed" },
                days_left: stored.as_ref().map(|r| r.days_left(now)),
                due: certificate_need(site, stored.as_ref(), renew_days, false, now),
                stored,
                served,
            });
        }
        Ok(out)
    }
}

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
