//! # rpcc-acme
//!
//! **Not implemented yet.** This crate will hold certificate issuance and renewal: a
//! two-phase HTTP-01 flow (serve the challenge over plain HTTP, obtain, switch the site
//! to TLS), a native ACME client and a `certbot --webroot` backend, tested against a real
//! ACME test server (Pebble).
