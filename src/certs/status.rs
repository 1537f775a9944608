//! `certs status`: what is stored, whether it is due, and what each server serves.

use std::time::Duration;

use rpcc_core::certs::CertificateRecord;
use rpcc_core::model::{Server, TlsMode};

use super::{CertificateNeed, certificate_need, now_unix};
use crate::engine::{Engine, EngineError};

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
