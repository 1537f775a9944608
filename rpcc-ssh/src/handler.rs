//! Host-key verification during key exchange.

use std::sync::{Arc, Mutex};

use russh::keys::HashAlg;
use russh::keys::PublicKey;

use crate::config::HostKeyPolicy;

/// The key a server presented: algorithm and SHA-256 fingerprint, as the inventory
/// writes them (`ssh-ed25519 SHA256:…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedHostKey {
    /// OpenSSH algorithm name, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:<base64>`.
    pub fingerprint: String,
}

impl ObservedHostKey {
    pub(crate) fn of(key: &PublicKey) -> Self {
        Self {
            algorithm: key.algorithm().as_str().to_owned(),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        }
    }

    /// `ssh-ed25519 SHA256:…`, ready for the inventory's `host_key`.
    pub fn pin(&self) -> String {
        format!("{} {}", self.algorithm, self.fingerprint)
    }
}

/// What the handler saw, shared with the connecting code.
#[derive(Default, Debug)]
pub(crate) struct KeyCheck {
    pub(crate) observed: Option<ObservedHostKey>,
    pub(crate) refusal: Option<String>,
}

pub(crate) struct Handler {
    pub(crate) policy: HostKeyPolicy,
    /// Host and port, for `known_hosts` look-ups.
    pub(crate) host_port: (String, u16),
    pub(crate) check: Arc<Mutex<KeyCheck>>,
}

impl russh::client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.record(None, Some("the server presented a certificate; rpcc pins plain host keys".into()));
            return Ok(false);
        };
        let observed = ObservedHostKey::of(key);
        let verdict = match &self.policy {
            HostKeyPolicy::Enrol => None,
            HostKeyPolicy::KnownHosts(path) => known_hosts_verdict(path, &self.host_port, key),
            HostKeyPolicy::Pinned(pin) => {
                let fingerprint = format!("SHA256:{}", pin.sha256_base64());
                if observed.algorithm != pin.algorithm().name() {
                    Some(format!(
                        "the server presented a {} key but {} is pinned; refused before authentication",
                        observed.algorithm,
                        pin.algorithm().name()
                    ))
                } else if observed.fingerprint != fingerprint {
                    Some(format!(
                        "the host key changed: pinned {fingerprint}, presented {}; refused before authentication",
                        observed.fingerprint
                    ))
                } else {
                    None
                }
            }
        };
        let ok = verdict.is_none();
        self.record(Some(observed), verdict);
        Ok(ok)
    }
}

impl Handler {
    fn record(&self, observed: Option<ObservedHostKey>, refusal: Option<String>) {
        if let Ok(mut c) = self.check.lock() {
            c.observed = observed;
            c.refusal = refusal;
        }
    }
}

/// `None` when `known_hosts` lists exactly this key for the host; otherwise why not.
fn known_hosts_verdict(path: &std::path::Path, (host, port): &(String, u16), key: &PublicKey) -> Option<String> {
    let entries = match russh::keys::known_hosts::known_host_keys_path(host, *port, path) {
        Ok(e) => e,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    if entries.is_empty() {
        return Some(format!("{host}:{port} is not in {}; refused before authentication", path.display()));
    }
    let same_alg: Vec<&(usize, PublicKey)> = entries.iter().filter(|(_, k)| k.algorithm() == key.algorithm()).collect();
    if same_alg.iter().any(|(_, k)| k == key) {
        return None;
    }
    match same_alg.first() {
        Some((line, _)) => Some(format!(
            "the host key changed: {} line {line} lists another {} key; refused before authentication",
            path.display(),
            key.algorithm().as_str()
        )),
        None => Some(format!(
            "{} lists no {} key for {host}:{port} (only other algorithms); refused before authentication",
            path.display(),
            key.algorithm().as_str()
        )),
    }
}
