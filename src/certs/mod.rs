//! Certificates of an [`Engine`]'s sites: which are due, self-signed generation, ACME
//! issuance over HTTP-01 on every server that serves a site, and the set of opened
//! certificates a deployable render needs. `Engine::apply` runs the two phases: deploy
//! (sites without a certificate serve challenges only), obtain what is due, deploy again.

use std::time::Duration;

use rpcc_acme::{certificate_record, self_signed};
use rpcc_core::certs::{CertificateOrigin, CertificateRecord, CertificateSet, SiteCertificate};
use rpcc_core::keyring::{Keyring, KeyringError};
use rpcc_core::model::{Server, Site, TlsMode};
use secrecy::ExposeSecret as _;

use crate::engine::{Engine, EngineError};

mod issue;
mod renew;
mod status;

pub use renew::{RenewalNews, RenewalReport, RenewalWatch};
pub use status::{CertificateStatus, ServedCertificate};

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
}

/// A site as the post-deploy probe should judge it while its certificate is pending:
/// plain HTTP, any status (its block answers 503 outside the challenge path).
pub(crate) fn pending_view(site: &Site) -> Site {
    let mut s = site.clone();
    s.tls.mode = TlsMode::Off;
    s.tls.redirect_http = false;
    s.health_path = None;
    s.probe = rpcc_core::model::ProbeExpectation::default();
    s
}
