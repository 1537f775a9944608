//! `SshPool`: one shared transport (and so one connection) per server identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rpcc_core::transport::TransportError;

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
