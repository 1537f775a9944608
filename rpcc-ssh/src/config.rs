//! Where and how to connect.

use std::path::PathBuf;
use std::time::Duration;

use rpcc_core::keyring::{Keyring, Secret};
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
    /// The keys an OpenSSH `known_hosts` file lists for this host and port (hashed
    /// entries included). A host with no entry, a changed key or only keys of other
    /// algorithms is refused.
    KnownHosts(PathBuf),
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
    /// A password (never logged, never in errors).
    Password(SecretString),
    /// Keys held by an ssh-agent: the socket at `socket`, or `SSH_AUTH_SOCK`.
    Agent {
        /// Agent socket; `None` reads `SSH_AUTH_SOCK` when connecting.
        socket: Option<PathBuf>,
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
    /// An unused connection is closed after this long (the next command reconnects).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            auth: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            idle: Duration::from_secs(300),
        }
    }
}

/// Retries of the connection step, only for transient failures (refused, reset,
/// timed out): never for host-key refusals, authentication failures or commands that
/// ran and failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubles each time, with ±50 % jitter.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(2) }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), jittered with `noise` in 0..1.
    pub fn delay(&self, retry: u32, noise: f64) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + noise.clamp(0.0, 1.0))
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
    /// Connection retries.
    pub retry: RetryPolicy,
    /// Run every command through `sudo -n --` (non-interactive: fails instead of
    /// prompting when sudo wants a password).
    pub sudo: bool,
    /// Accept host-key signatures made with SHA-1 (`ssh-rsa`, for servers older than
    /// OpenSSH 7.2 with only an RSA key). Off by default: RSA host keys are then used
    /// with `rsa-sha2-512`/`rsa-sha2-256` only, and a server offering nothing else is
    /// refused during key exchange, before any credential is sent.
    pub allow_rsa_sha1: bool,
}

impl SshTarget {
    /// The target for an inventory server. Relative key paths resolve against
    /// `base_dir`; sealed passwords and passphrases are opened with `keyring`. A server
    /// without a pinned host key is refused here: it must be enrolled first.
    pub fn from_server(
        server: &Server,
        base_dir: &std::path::Path,
        keyring: Option<&Keyring>,
    ) -> Result<Self, TransportError> {
        let target = server.address();
        let host_key = server.host_key.clone().map(HostKeyPolicy::Pinned).ok_or_else(|| TransportError::HostKey {
            target: target.clone(),
            reason: "no host_key is pinned in the inventory; enrol the server first".into(),
        })?;
        let open = |secret: &Secret| {
            secret.open(keyring).map_err(|source| TransportError::Credentials { target: target.clone(), source })
        };
        let auth = match &server.auth {
            ServerAuth::KeyFile { path, passphrase } => SshAuth::KeyFile {
                path: path.resolve(base_dir),
                passphrase: passphrase.as_ref().map(open).transpose()?,
            },
            ServerAuth::Agent => SshAuth::Agent { socket: None },
            ServerAuth::Password(p) => SshAuth::Password(open(p)?),
            _ => {
                return Err(TransportError::Auth {
                    target,
                    method: "an authentication method rpcc-ssh does not know".into(),
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
            retry: RetryPolicy::default(),
            sudo: server.sudo,
            allow_rsa_sha1: false,
        })
    }

    /// A target that only observes the host key (enrolment): trust on first use, no
    /// pin required. Never use it to run commands.
    pub fn for_enrolment(
        server: &Server,
        base_dir: &std::path::Path,
        keyring: Option<&Keyring>,
    ) -> Result<Self, TransportError> {
        let auth = match &server.auth {
            ServerAuth::KeyFile { path, passphrase } => SshAuth::KeyFile {
                path: path.resolve(base_dir),
                passphrase: passphrase
                    .as_ref()
                    .map(|s| s.open(keyring))
                    .transpose()
                    .map_err(|source| TransportError::Credentials { target: server.address(), source })?,
            },
            _ => SshAuth::Agent { socket: None },
        };
        Ok(Self {
            name: server.name.to_string(),
            address: server.host.to_authority(server.port),
            user: server.user.to_string(),
            auth,
            host_key: HostKeyPolicy::Enrol,
            timeouts: Timeouts::default(),
            max_channels: 1,
            retry: RetryPolicy::default(),
            sudo: false,
            allow_rsa_sha1: false,
        })
    }

    /// Host and port of `address` (`[v6]:port` understood).
    pub fn host_port(&self) -> (String, u16) {
        let (host, port) = self.address.rsplit_once(':').unwrap_or((&self.address, "22"));
        (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().unwrap_or(22))
    }

    /// `user@host:port`.
    pub fn describe(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let p =
            RetryPolicy { attempts: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(350) };
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(350), "capped");
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(50), "jitter -50 %");
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(150), "jitter +50 %");
        assert_eq!(p.delay(40, 0.5), Duration::from_millis(350), "no overflow");
    }
}
