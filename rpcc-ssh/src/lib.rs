//! # rpcc-ssh
//!
//! **Not implemented yet** (issue: "rpcc-ssh: pooled russh transport"). This crate will
//! hold `SshTransport`, implementing [`rpcc_core::transport::Transport`] over russh:
//! one authenticated connection per server reused for all channels, host keys pinned by
//! algorithm and SHA-256 fingerprint (refused before any credential is sent), connect,
//! auth and command timeouts, keepalive, and retries only for transient errors.
//!
//! Until then, `rpcc_core::local::LocalTransport` is the only transport; nothing here
//! pretends to connect.
