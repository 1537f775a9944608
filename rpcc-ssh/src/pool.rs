//! `SshPool`: one shared transport (and so one connection) per server identity, and
//! `SshTransportPool`: the core `TransportPool` role over it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rpcc_core::keyring::Keyring;
use rpcc_core::model::Server;
use rpcc_core::transport::{Transport, TransportError, TransportPool};

use crate::config::{SshAuth, SshTarget};
use crate::transport::SshTransport;

/// Hands out one [`SshTransport`] per identity: address, user, credential and
/// host-key policy. Owned by its user (no global state); dropping it drops the
/// connections nobody else holds.
#[derive(Default)]
pub struct SshPool {
    transports: Mutex<HashMap<String, Arc<SshTransport>>>,
}

impl std::fmt::Debug for SshPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPool").field("transports", &self.len()).finish()
    }
}

fn identity(target: &SshTarget) -> String {
    let credential = match &target.auth {
        SshAuth::KeyFile { path, .. } => format!("key:{}", path.display()),
        SshAuth::Password(_) => "password".to_owned(),
        SshAuth::Agent { socket } => {
            format!("agent:{}", socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
        }
    };
    format!("{}|{}|{credential}|{:?}|sudo={}", target.address, target.user, target.host_key, target.sudo)
}

impl SshPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport for `target`'s identity, created on first use.
    pub fn transport(&self, target: SshTarget) -> Result<Arc<SshTransport>, TransportError> {
        let key = identity(&target);
        let mut map = self
            .transports
            .lock()
            .map_err(|_| TransportError::InvalidCommand { reason: "ssh pool lock poisoned".into() })?;
        if let Some(t) = map.get(&key) {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(SshTransport::new(target)?);
        map.insert(key, Arc::clone(&t));
        Ok(t)
    }

    /// How many identities the pool holds.
    pub fn len(&self) -> usize {
        self.transports.lock().map_or(0, |m| m.len())
    }

    /// True when the pool holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The [`TransportPool`] role over SSH: each server of an inventory reached with its
/// inventory settings (address, user, pinned host key, credential opened with the
/// keyring; key files relative to the inventory's directory), one connection per
/// identity.
pub struct SshTransportPool {
    pool: SshPool,
    base_dir: PathBuf,
    keyring: Option<Arc<Keyring>>,
}

impl std::fmt::Debug for SshTransportPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransportPool")
            .field("pool", &self.pool)
            .field("base_dir", &self.base_dir)
            .field("keyring", &self.keyring.is_some())
            .finish()
    }
}

impl SshTransportPool {
    /// A pool for servers whose key files are relative to `base_dir`, with `keyring`
    /// opening sealed credentials.
    pub fn new(base_dir: impl Into<PathBuf>, keyring: Option<Arc<Keyring>>) -> Self {
        Self { pool: SshPool::new(), base_dir: base_dir.into(), keyring }
    }

    /// The underlying per-identity pool.
    pub fn pool(&self) -> &SshPool {
        &self.pool
    }
}

impl TransportPool for SshTransportPool {
    fn transport(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        let target = SshTarget::from_server(server, &self.base_dir, self.keyring.as_deref())?;
        Ok(self.pool.transport(target)? as Arc<dyn Transport>)
    }
}
