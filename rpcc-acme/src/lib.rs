//! # rpcc-acme
//!
//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server), on the native
//! client ([`AcmeClient`], built on `instant-acme` with rustls): an account whose
//! credentials are a secret for the keyring, orders for a site's names, and HTTP-01
//! challenges answered through a [`ChallengeResponder`] — the role that puts each
//! key authorization where every server serving the name answers
//! `/.well-known/acme-challenge/<token>` (DNS may point at any of them).
//! [`WebrootResponder`] is the responder for rpcc's own servers: it uploads each answer
//! over the servers' transports into the ACME webroot their config already serves.
//! [`self_signed`] makes certificates of the same shape for `tls.mode = "self_signed"`.
//!
//! ```no_run
//! # async fn demo(targets: Vec<rpcc_acme::WebrootTarget>) -> Result<(), rpcc_acme::AcmeError> {
//! use rpcc_acme::{AcmeClient, WebrootResponder};
//! let directory = "https://acme-staging-v02.api.letsencrypt.org/directory";
//! let (client, credentials) = AcmeClient::create_account(directory, None, &["mailto:ops@example.com"]).await?;
//! // `credentials` is a secret: seal it in the keyring for `AcmeClient::from_credentials`.
//! let cert = client.issue(&["app.example.com", "www.app.example.com"], &WebrootResponder::new(targets)).await?;
//! println!("{} bytes of chain", cert.chain_pem.len());
//! # drop(credentials);
//! # Ok(()) }
//! ```
//!
//! The facade's `rpcc::certs` drives these: which certificates are due, the two-phase
//! flow inside `Engine::apply` (serve the challenge over HTTP on every serving server,
//! obtain, deploy the certificate inside the generation), and `rpcc certs`.
//! [`certificate_record`] reads an issued chain into the record the state store keeps.
//!
//! [`CertbotClient`] is the alternative for `client = "certbot"` sites: `certbot certonly
//! --webroot` on one server, its result read back and deployed the same way.
//!
//! **Not yet:** revocation, RSA keys (ECDSA P-256 only).

mod certbot;
mod client;
mod error;
mod facts;
mod self_signed;
mod webroot;

pub use certbot::CertbotClient;
pub use client::{AcmeClient, ChallengeResponder, IssuedCertificate, account_record};
pub use error::AcmeError;
pub use facts::{certificate_record, leaf_fingerprint};
pub use self_signed::self_signed;
pub use webroot::{WebrootResponder, WebrootTarget};

/// Unix seconds now (0 if the clock is before 1970).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}
