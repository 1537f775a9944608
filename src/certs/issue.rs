//! Obtaining ACME certificates: the account (retried while the CA is unavailable),
//! orders in parallel with answers on every server of a site's group, the certbot
//! alternative, and storing what was issued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use rpcc_acme::{AcmeClient, AcmeError, CertbotClient, WebrootResponder, WebrootTarget, certificate_record};
use rpcc_core::certs::CertificateOrigin;
use rpcc_core::keyring::Keyring;
use rpcc_core::model::{CertificateClient, Site, TlsMode};

use super::{CA_ATTEMPTS, CertificateAction, CertificateNeed, CertificateOptions, CertificateOutcome, PARALLEL_ORDERS};
use crate::engine::Engine;

impl Engine {
    /// The account at the inventory's CA, retried with backoff while the CA is
    /// unavailable.
    pub(super) async fn acme_account(
        &self,
        keyring: &Keyring,
        timeout: Option<Duration>,
    ) -> Result<AcmeClient, AcmeError> {
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
