//! # rpcc-acme
//!
//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server), on the native
//! client ([`AcmeClient`], built on `instant-acme` with rustls): an account whose
//! credentials are a secret for the keyring, orders for a site's names, and HTTP-01
//! challenges answered through a [`ChallengeResponder`] — the role that puts each
//! key authorization where every server serving the name answers
//! `/.well-known/acme-challenge/<token>` (DNS may point at any of them).
//!
//! [`WebrootResponder`] is the responder for rpcc's own servers: it uploads each answer
//! over the servers' transports into the ACME webroot their config already serves.
//!
//! **Status:** the client, the webroot responder and their tests against a real ACME
//! test CA (Pebble) and a real sshd + nginx fleet are here;
//! the two-phase flow inside `rpcc apply` (serve the challenge over HTTP on every serving
//! server, obtain, switch the site to TLS), renewal, self-signed and certbot backends are
//! not yet.

mod client;
mod error;
mod webroot;

pub use client::{AcmeClient, ChallengeResponder, IssuedCertificate};
pub use error::AcmeError;
pub use webroot::{WebrootResponder, WebrootTarget};
