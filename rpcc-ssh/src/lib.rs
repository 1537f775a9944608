//! # rpcc-ssh
//!
//! [`SshTransport`] implements [`rpcc_core::transport::Transport`] over russh: one
//! authenticated connection per server, reused for every command (channels bounded
//! below sshd's `MaxSessions`), re-established when it died.
//!
//! Host keys are **pinned** by algorithm and SHA-256 fingerprint
//! ([`HostKeyPolicy::Pinned`], the default, from the inventory's `host_key`). A server
//! that presents an unknown key, a changed key or a key of another algorithm is refused
//! during key exchange, **before any credential is sent**. [`HostKeyPolicy::Enrol`]
//! (trust on first use) exists only for an explicit enrol step and reports the observed
//! key so the caller can record it. [`HostKeyPolicy::KnownHosts`] checks an OpenSSH
//! `known_hosts` file with the same strictness.
//!
//! Commands are argument vectors; every argument is shell-quoted here, never
//! concatenated. Connect, authentication and command timeouts and keepalive are always
//! set.
//!
//! Authentication: key files (ed25519, ECDSA, RSA with SHA-2 signatures, optional
//! passphrase), passwords and ssh-agent; a failure names the server and the method,
//! never the secret, and is never retried. Connections are retried with jittered
//! backoff only for transient failures; idle connections expire (never while a command
//! runs). `sudo -n` is available per server. Files upload atomically and whole trees
//! upload all-or-nothing in one tar stream. Used by `rpcc run` and `rpcc enroll`.
//!
//! [`SshPool`] hands out one shared transport per server identity (address, user,
//! credential, host-key policy), so every caller reuses the same connection.

mod config;
mod handler;
mod pool;
mod transport;

pub use config::{HostKeyPolicy, RetryPolicy, SshAuth, SshTarget, Timeouts};
pub use handler::ObservedHostKey;
pub use pool::{SshPool, SshTransportPool};
pub use transport::SshTransport;
