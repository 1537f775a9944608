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
//! key so the caller can record it.
//!
//! Commands are argument vectors; every argument is shell-quoted here, never
//! concatenated. Connect, authentication and command timeouts and keepalive are always
//! set.
//!
//! State of this crate: key-file authentication (ed25519, ECDSA, RSA with SHA-2,
//! optional passphrase) and ssh-agent authentication, pinned/enrol host-key policies,
//! pooled connection with bounded channels, connection retries with jittered backoff
//! for transient failures only, `sudo -n`, exec with stdin, output caps and timeouts,
//! atomic file upload and all-or-nothing tree upload in one tar stream. Used by
//! `rpcc run` and `rpcc enroll`. Not yet: password authentication, a `KnownHosts`
//! policy, a pool object shared across servers.

mod config;
mod handler;
mod transport;

pub use config::{HostKeyPolicy, RetryPolicy, SshAuth, SshTarget, Timeouts};
pub use handler::ObservedHostKey;
pub use transport::SshTransport;
