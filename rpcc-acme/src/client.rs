//! [`AcmeClient`]: an ACME account and certificate orders with HTTP-01 challenges.

use std::path::Path;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use secrecy::{ExposeSecret as _, SecretString};

use rpcc_core::keyring::{Keyring, RecordId, SecretStore};

use crate::AcmeError;

/// The secret record of the account at `directory`: `acme/<host>/account` (a port
/// written `_<port>`).
///
/// ```
/// let r = rpcc_acme::account_record("https://acme-v02.api.letsencrypt.org/directory").unwrap();
/// assert_eq!(r.as_str(), "acme/acme-v02.api.letsencrypt.org/account");
/// assert_eq!(rpcc_acme::account_record("https://127.0.0.1:14000/dir").unwrap().as_str(), "acme/127.0.0.1_14000/account");
/// ```
pub fn account_record(directory: &str) -> Result<RecordId, AcmeError> {
    let host = directory.strip_prefix("https://").unwrap_or(directory).split('/').next().unwrap_or_default();
    RecordId::parse(&format!("acme/{}/account", host.replace(':', "_")))
        .map_err(|e| AcmeError::Account(format!("directory {directory}: {e}")))
}

/// The role that answers HTTP-01 challenges: after [`Self::publish`],
/// `http://<domain>/.well-known/acme-challenge/<token>` must return `key_authorization`
/// on every server the name may resolve to. [`Self::withdraw`] is called for every
/// published token once the order is done, whatever its outcome.
#[async_trait::async_trait]
pub trait ChallengeResponder: Send + Sync {
    /// Put the answer in place (an error names what failed; nothing is asked of the CA).
    async fn publish(&self, domain: &str, token: &str, key_authorization: &str) -> Result<(), String>;
    /// Remove it again (best effort).
    async fn withdraw(&self, domain: &str, token: &str);
}

/// A certificate chain and its private key (ECDSA P-256, generated here, never sent).
pub struct IssuedCertificate {
    /// The names it covers, in order.
    pub domains: Vec<String>,
    /// Leaf first, then the intermediates (PEM).
    pub chain_pem: String,
    /// The private key (PKCS#8 PEM): for the keyring, never for logs.
    pub key_pem: SecretString,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate").field("domains", &self.domains).finish_non_exhaustive()
    }
}

/// Added to an order's polling timeout for its requests (new order, authorizations,
/// challenges, finalization, download), bounding the whole order.
const REQUEST_SLACK: Duration = Duration::from_secs(60);
/// Account registration or lookup must finish within this.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// An account at one ACME CA.
pub struct AcmeClient {
    account: Account,
    directory: String,
    timeout: Duration,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient").field("directory", &self.directory).field("account", &self.account.id()).finish()
    }
}

/// The HTTPS client for the ACME API, with its crypto provider (ring) chosen here rather
/// than taken from the process: an application that links rustls with more than one
/// provider has no process default. `api_root` trusts only that CA (test CAs); `None`
/// verifies with the platform's roots.
fn builder(api_root: Option<&Path>) -> Result<instant_acme::AccountBuilder, AcmeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = match api_root {
        Some(pem) => {
            let bad =
                |e: &dyn std::fmt::Display| AcmeError::Account(format!("root certificate {}: {e}", pem.display()));
            let root = CertificateDer::from_pem_file(pem).map_err(|e| bad(&e))?;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).map_err(|e| bad(&e))?;
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(&e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
        None => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .map_err(|e| AcmeError::Account(format!("platform certificate verifier: {e}")))?,
    };
    let https = connector.https_only().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, instant_acme::BodyWrapper<bytes::Bytes>>(https);
    Ok(Account::builder_with_http(Box::new(client)))
}

impl AcmeClient {
    /// Register a new account at `directory` (terms of service agreed). `api_root`
    /// trusts a private CA for the ACME API itself (test CAs); `None` uses the web PKI.
    /// Returns the client and the account's credentials (a secret: seal it in the
    /// keyring and hand it to [`Self::from_credentials`] next time).
    pub async fn create_account(
        directory: &str,
        api_root: Option<&Path>,
        contact: &[&str],
    ) -> Result<(Self, SecretString), AcmeError> {
        let new = NewAccount { contact, terms_of_service_agreed: true, only_return_existing: false };
        let created =
            tokio::time::timeout(ACCOUNT_TIMEOUT, builder(api_root)?.create(&new, directory.to_owned(), None))
                .await
                .map_err(|_| AcmeError::Unavailable {
                    directory: directory.to_owned(),
                    reason: format!("no answer to the account registration within {ACCOUNT_TIMEOUT:?}"),
                })?;
        let (account, credentials) = created.map_err(|e| AcmeError::from_acme(directory, "the account", e))?;
        let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Account(e.to_string()))?;
        Ok((Self::new(account, directory), SecretString::from(json)))
    }

    /// The account of stored `credentials`.
    pub async fn from_credentials(
        directory: &str,
        api_root: Option<&Path>,
        credentials: &SecretString,
    ) -> Result<Self, AcmeError> {
        let parsed: AccountCredentials = serde_json::from_str(credentials.expose_secret())
            .map_err(|_| AcmeError::Account("stored credentials are not an ACME account".into()))?;
        let restored = tokio::time::timeout(ACCOUNT_TIMEOUT, builder(api_root)?.from_credentials(parsed))
            .await
            .map_err(|_| AcmeError::Unavailable {
                directory: directory.to_owned(),
                reason: format!("no answer within {ACCOUNT_TIMEOUT:?}"),
            })?;
        let account = restored.map_err(|e| AcmeError::from_acme(directory, "the account", e))?;
        Ok(Self::new(account, directory))
    }

    /// The account rpcc keeps for `directory`: its credentials are the sealed secret
    /// [`account_record`]`(directory)` in `store`; the first call registers an account
    /// with `contact` and seals its credentials under the keyring's active key.
    pub async fn open_account(
        directory: &str,
        api_root: Option<&Path>,
        contact: &[&str],
        store: &dyn SecretStore,
        keyring: &Keyring,
    ) -> Result<Self, AcmeError> {
        let record = account_record(directory)?;
        let stored = store.secret(&record).await.map_err(|e| AcmeError::Account(format!("state store: {e}")))?;
        if let Some(envelope) = stored {
            let credentials = keyring.open(&record, &envelope).map_err(|e| AcmeError::Account(e.to_string()))?;
            return Self::from_credentials(directory, api_root, &credentials).await;
        }
        let (client, credentials) = Self::create_account(directory, api_root, contact).await?;
        let envelope = keyring.seal(&record, &credentials).map_err(|e| AcmeError::Account(e.to_string()))?;
        store.put_secrets(&[(record, envelope)]).await.map_err(|e| AcmeError::Account(format!("state store: {e}")))?;
        tracing::info!(directory, "ACME account registered");
        Ok(client)
    }

    fn new(account: Account, directory: &str) -> Self {
        Self { account, directory: directory.to_owned(), timeout: Duration::from_secs(90) }
    }

    /// Wait at most this long for an order to become ready, then valid.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Order one certificate for `domains` (the first is the site's name, then its
    /// aliases), answering each HTTP-01 challenge through `responder`.
    pub async fn issue(
        &self,
        domains: &[&str],
        responder: &dyn ChallengeResponder,
    ) -> Result<IssuedCertificate, AcmeError> {
        let mut published: Vec<(String, String)> = Vec::new();
        // Every request to the CA is bounded: a CA that stops answering (a stalled
        // connection, a hung handler) fails the order instead of the whole run.
        let limit = self.timeout + REQUEST_SLACK;
        let result = match tokio::time::timeout(limit, self.order(domains, responder, &mut published)).await {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Timeout { domains: domains.join(", "), after: limit }),
        };
        for (domain, token) in &published {
            responder.withdraw(domain, token).await;
        }
        result
    }

    async fn order(
        &self,
        domains: &[&str],
        responder: &dyn ChallengeResponder,
        published: &mut Vec<(String, String)>,
    ) -> Result<IssuedCertificate, AcmeError> {
        let names = domains.join(", ");
        let dir = self.directory.as_str();
        let what = format!("the order for {names}");
        let acme = |e| AcmeError::from_acme(dir, &what, e);
        let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns((*d).to_owned())).collect();
        let mut order = self.account.new_order(&NewOrder::new(&identifiers)).await.map_err(acme)?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme)?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(AcmeError::Protocol(format!("authorization for {names} is {other:?}"))),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::Protocol(format!("the CA offers no http-01 challenge for {names}")))?;
            let domain = challenge.identifier().to_string();
            let token = challenge.token.clone();
            let key_authorization = challenge.key_authorization();
            responder
                .publish(&domain, &token, key_authorization.as_str())
                .await
                .map_err(|reason| AcmeError::Publish { domain: domain.clone(), reason })?;
            published.push((domain, token));
            challenge.set_ready().await.map_err(acme)?;
        }
        let policy = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(self.timeout);
        let timeout = || AcmeError::Timeout { domains: names.clone(), after: self.timeout };
        let status = match order.poll_ready(&policy).await {
            Ok(s) => s,
            Err(instant_acme::Error::Timeout(_)) => return Err(timeout()),
            // An invalid order comes back as its problem: name the failed challenge's
            // domain when there is one.
            Err(e @ instant_acme::Error::Api(_)) => {
                return Err(match self.why_invalid(&mut order, &names).await {
                    failed @ AcmeError::ChallengeFailed { .. } => failed,
                    _ => acme(e),
                });
            }
            Err(e) => return Err(acme(e)),
        };
        if status != OrderStatus::Ready {
            return Err(self.why_invalid(&mut order, &names).await);
        }
        let key_pem = order.finalize().await.map_err(acme)?;
        let chain_pem = match order.poll_certificate(&policy).await {
            Ok(c) => c,
            Err(instant_acme::Error::Timeout(_)) => return Err(timeout()),
            Err(e) => return Err(acme(e)),
        };
        tracing::info!(domains = %names, "certificate issued");
        Ok(IssuedCertificate {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            chain_pem,
            key_pem: SecretString::from(key_pem),
        })
    }

    /// Revoke the certificate whose chain (leaf first) is `chain_pem`, issued to this
    /// account. `key_compromise` tells the CA the private key leaked (reason 1).
    pub async fn revoke(&self, chain_pem: &str, key_compromise: bool) -> Result<(), AcmeError> {
        let der = crate::facts::leaf_der(chain_pem)?;
        let certificate = rustls::pki_types::CertificateDer::from(der);
        let reason = if key_compromise {
            instant_acme::RevocationReason::KeyCompromise
        } else {
            instant_acme::RevocationReason::Superseded
        };
        let request = instant_acme::RevocationRequest { certificate: &certificate, reason: Some(reason) };
        match tokio::time::timeout(ACCOUNT_TIMEOUT, self.account.revoke(&request)).await {
            Ok(r) => r.map_err(|e| AcmeError::from_acme(&self.directory, "the revocation", e)),
            Err(_) => Err(AcmeError::Unavailable {
                directory: self.directory.clone(),
                reason: format!("no answer to the revocation within {ACCOUNT_TIMEOUT:?}"),
            }),
        }
    }

    /// The first failed challenge's problem, named by its domain.
    async fn why_invalid(&self, order: &mut instant_acme::Order, names: &str) -> AcmeError {
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            if authz.status != AuthorizationStatus::Invalid {
                continue;
            }
            let domain = authz.identifier().to_string();
            let problem = authz
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map(|p| format!("{}: {}", p.r#type.as_deref().unwrap_or("problem"), p.detail.as_deref().unwrap_or("")))
                .unwrap_or_else(|| "no detail from the CA".into());
            return AcmeError::ChallengeFailed { domain, problem };
        }
        AcmeError::Protocol(format!("the order for {names} became invalid"))
    }
}
