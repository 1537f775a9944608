//! # rpcc-acme
//!
//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server), on the native
//! client ([`AcmeClient`], built on `instant-acme` with rustls): an account whose
//! credentials are a secret for the keyring, orders for a site's names, and HTTP-01
//! challenges answered through a [`ChallengeResponder`] — the role that puts each
//! key authorization where every server serving the name answers
//! `/.well-known/acme-challenge/<token>` (DNS may point at any of them).
//!
//! **Status:** the client and its tests against a real ACME test CA (Pebble) are here;
//! the two-phase flow inside `rpcc apply` (serve the challenge over HTTP on every serving
//! server, obtain, switch the site to TLS), renewal, self-signed and certbot backends are
//! not yet.

mod client;
mod error;

pub use client::{AcmeClient, ChallengeResponder, IssuedCertificate};
pub use error::AcmeError;
