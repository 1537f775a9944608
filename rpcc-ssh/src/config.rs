//! Where and how to connect.

use std::path::PathBuf;
use std::time::Duration;

use rpcc_core::model::{Server, ServerAuth};
use rpcc_core::transport::TransportError;
use rpcc_core::value::HostKeyPin;
use secrecy::SecretString;

/// How a server's host key is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostKeyPolicy {
    /// Only this algorithm and fingerprint (the default; from the inventory).
    Pinned(HostKeyPin),
    /// Trust on first use: accept any key and report it. Only for an explicit,
    /// audited enrol step.
    Enrol,
}

/// How to authenticate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SshAuth {
    /// A private key file, optionally encrypted.
    KeyFile {
        /// Path on this machine.
        path: PathBuf,
        /// Passphrase of an encrypted key (never logged).
        passphrase: Option<SecretString>,
    },
}

/// Timeouts that are always on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus SSH handshake.
    pub connect: Duration,
    /// Authentication.
    pub auth: Duration,
    /// Keepalive interval; the connection is dropped after 3 unanswered.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(10), auth: Duration::from_secs(10), keepalive: Duration::from_secs(15) }
    }
}

/// One server to connect to.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// Server name (for messages).
    pub name: String,
    /// `host:port` to connect to.
    pub address: String,
    /// Login user.
    pub user: String,
    /// Credentials.
    pub auth: SshAuth,
    /// Host-key trust.
    pub host_key: HostKeyPolicy,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// At most this many channels at once on the connection (keep it below sshd's
    /// `MaxSessions`, 10 by default).
    pub max_channels: usize,
}

impl SshTarget {
    /// The target for an inventory server. Relative key paths resolve against
    /// `base_dir`. A server without a pinned host key is refused here: it must be
    /// enrolled first.
    pub fn from_server(server: &Server, base_dir: &std::path::Path) -> Result<Self, TransportError> {
        let target = server.address();
        let host_key = server.host_key.clone().map(HostKeyPolicy::Pinned).ok_or_else(|| TransportError::HostKey {
            target: target.clone(),
            reason: "no host_key is pinned in the inventory; enrol the server first".into(),
        })?;
        let auth = match &server.auth {
            ServerAuth::KeyFile { path, passphrase } => {
                SshAuth::KeyFile { path: path.resolve(base_dir), passphrase: passphrase.clone() }
            }
            _ => {
                return Err(TransportError::Auth {
                    target,
                    method: "password/agent (not supported by rpcc-ssh yet)".into(),
                });
            }
        };
        Ok(Self {
            name: server.name.to_string(),
            address: server.host.to_authority(server.port),
            user: server.user.to_string(),
            auth,
            host_key,
            timeouts: Timeouts::default(),
            max_channels: 8,
        })
    }

    /// `user@host:port`.
    pub fn describe(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }
}
