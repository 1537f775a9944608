//! # rpcc-nginx
//!
//! **Not implemented yet** (issue: "rpcc-nginx: render complete, hardened nginx
//! configuration"). This crate will render one deterministic generation tree per server
//! from a validated [`rpcc_core::Inventory`] with embedded minijinja templates: TLS,
//! HTTP/2, HSTS and security headers, upstreams with several backends, websockets, rate
//! limits, redirects, ACME webroot, maintenance mode; and the remote layout plus the
//! validate/reload commands. Every rendered tree must pass `nginx -t` and `gixy`.
