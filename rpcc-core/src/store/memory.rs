//! `MemoryStore`: every store role in process memory (unit tests, dry runs, embedders
//! that keep state elsewhere). Locks are per instance.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state::{DeploymentRecord, DeploymentState, LocalLock, NewDeployment, StateStore, StoreError, unix_ms};
use super::{SecretStore, SecretSwap};
use crate::deploy::{AUDIT_GENESIS, AuditEvent, AuditRecord, AuditSeal, next_hash};
use crate::generation::Manifest;
use crate::keyring::{Envelope, KeyId, RecordId};

/// An in-memory [`StateStore`] (unit tests, dry runs). Locks are per instance.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
    seal: Option<Arc<AuditSeal>>,
}

#[derive(Default)]
struct MemoryInner {
    generations: BTreeMap<(String, String), Manifest>,
    deployments: Vec<DeploymentRecord>,
    audit: Vec<AuditRecord>,
    locks: HashMap<String, String>,
    secrets: BTreeMap<RecordId, Envelope>,
    certificates: BTreeMap<String, crate::certs::CertificateRecord>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner_lock();
        f.debug_struct("MemoryStore")
            .field("deployments", &inner.deployments.len())
            .field("audit", &inner.audit.len())
            .field("keyed", &self.seal.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl super::EngineStore for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn audit_keyed(&self) -> bool {
        self.seal.is_some()
    }

    async fn rekey_audit(&self, keyring: &crate::keyring::Keyring) -> Result<u64, StoreError> {
        let Some(seal) = &self.seal else { return Ok(0) };
        let changed = self.with(|s| {
            let changed = crate::deploy::rekey_chain(&s.audit, keyring, seal).map_err(|v| v.rekey_refusal())?;
            for c in &changed {
                if let Some(r) = s.audit.iter_mut().find(|r| r.seq == c.seq) {
                    r.clone_from(c);
                }
            }
            Ok::<_, StoreError>(changed)
        })?;
        if let Some(head) = changed.last()
            && let Err(e) = seal.rewrite_checkpoint(head)
        {
            tracing::error!(error = %e, "audit checkpoint not moved to the re-keyed head");
        }
        Ok(changed.len() as u64)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Key new audit entries with `seal`.
    pub fn with_audit_seal(mut self, seal: AuditSeal) -> Self {
        self.seal = Some(Arc::new(seal));
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> T {
        f(&mut self.inner_lock())
    }

    fn inner_lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryLockGuard {
    store: MemoryStore,
    server: String,
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        self.store.with(|s| s.locks.remove(&self.server));
    }
}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    async fn record_generation(&self, server: &str, manifest: &Manifest) -> Result<(), StoreError> {
        self.with(|s| s.generations.insert((server.to_owned(), manifest.id.clone()), manifest.clone()));
        Ok(())
    }

    async fn generation(&self, server: &str, id: &str) -> Result<Option<Manifest>, StoreError> {
        Ok(self.with(|s| s.generations.get(&(server.to_owned(), id.to_owned())).cloned()))
    }

    async fn start_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        Ok(self.with(|s| {
            let id = s.deployments.len() as i64 + 1;
            s.deployments.push(DeploymentRecord {
                id,
                server: d.server.clone(),
                action: d.action,
                generation: d.generation.clone(),
                previous: d.previous.clone(),
                state: DeploymentState::Running,
                actor: d.actor.clone(),
                started_ms: unix_ms(),
                finished_ms: None,
                detail: String::new(),
            });
            id
        }))
    }

    async fn finish_deployment(&self, id: i64, state: DeploymentState, detail: &str) -> Result<(), StoreError> {
        self.with(|s| {
            let row = s
                .deployments
                .iter_mut()
                .find(|d| d.id == id)
                .ok_or_else(|| StoreError::Corrupt { reason: format!("no deployment {id}") })?;
            row.state = state;
            row.detail = detail.to_owned();
            row.finished_ms = Some(unix_ms());
            Ok(())
        })
    }

    async fn abandon_running(&self, server: &str) -> Result<u64, StoreError> {
        Ok(self.with(|s| {
            let mut n = 0;
            for d in s.deployments.iter_mut().filter(|d| d.server == server && d.state == DeploymentState::Running) {
                d.state = DeploymentState::Abandoned;
                d.finished_ms = Some(unix_ms());
                n += 1;
            }
            n
        }))
    }

    async fn deployments(&self, server: Option<&str>, limit: u32) -> Result<Vec<DeploymentRecord>, StoreError> {
        Ok(self.with(|s| {
            s.deployments
                .iter()
                .rev()
                .filter(|d| server.is_none_or(|n| d.server == n))
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError> {
        let rec = self.with(|s| {
            let seq = s.audit.len() as i64 + 1;
            let prev_hash = s.audit.last().map_or_else(|| AUDIT_GENESIS.to_owned(), |r| r.hash.clone());
            let hash = next_hash(self.seal.as_deref(), event, seq, &prev_hash)?;
            let rec = AuditRecord { seq, event: event.clone(), prev_hash, hash };
            s.audit.push(rec.clone());
            Ok::<_, StoreError>(rec)
        })?;
        if let Some(seal) = &self.seal
            && let Err(e) = seal.advance(&rec)
        {
            tracing::error!(error = %e, "audit checkpoint not written: a deleted tail would go unnoticed");
        }
        Ok(rec)
    }

    async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.with(|s| s.audit.clone()))
    }

    async fn lock_server(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let taken = self.with(|s| match s.locks.get(server) {
                Some(h) => Err(h.clone()),
                None => {
                    s.locks.insert(server.to_owned(), holder.to_owned());
                    Ok(())
                }
            });
            match taken {
                Ok(()) => {
                    return Ok(LocalLock::new(MemoryLockGuard { store: self.clone(), server: server.to_owned() }));
                }
                Err(h) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::LockTimeout { server: server.to_owned(), holder: h, waited: wait });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

#[async_trait::async_trait]
impl SecretStore for MemoryStore {
    async fn put_secrets(&self, items: &[(RecordId, Envelope)]) -> Result<(), StoreError> {
        let mut inner = self.inner_lock();
        for (record, envelope) in items {
            inner.secrets.insert(record.clone(), envelope.clone());
        }
        Ok(())
    }

    async fn secret(&self, record: &RecordId) -> Result<Option<Envelope>, StoreError> {
        Ok(self.inner_lock().secrets.get(record).cloned())
    }

    async fn secrets_not_under(
        &self,
        key: &KeyId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<(RecordId, Envelope)>, StoreError> {
        let inner = self.inner_lock();
        Ok(inner
            .secrets
            .iter()
            .filter(|(r, e)| e.key_id() != key && after.is_none_or(|a| *r > a))
            .take(limit)
            .map(|(r, e)| (r.clone(), e.clone()))
            .collect())
    }

    async fn secrets_under(&self, key: &KeyId, limit: usize) -> Result<Vec<RecordId>, StoreError> {
        let inner = self.inner_lock();
        Ok(inner.secrets.iter().filter(|(_, e)| e.key_id() == key).take(limit).map(|(r, _)| r.clone()).collect())
    }

    async fn replace_secrets(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError> {
        let mut inner = self.inner_lock();
        let mut applied = 0;
        for swap in swaps {
            if inner.secrets.get(&swap.record) == Some(&swap.old) {
                inner.secrets.insert(swap.record.clone(), swap.new.clone());
                applied += 1;
            }
        }
        Ok(applied)
    }

    async fn secret_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for e in self.inner_lock().secrets.values() {
            *counts.entry(e.key_id().to_string()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }
}

#[async_trait::async_trait]
impl crate::certs::CertificateStore for MemoryStore {
    async fn put_certificate(&self, cert: &crate::certs::CertificateRecord, key: &Envelope) -> Result<(), StoreError> {
        let record = crate::certs::key_record(&cert.site).map_err(|e| StoreError::Corrupt { reason: e.to_string() })?;
        let mut inner = self.inner_lock();
        inner.secrets.insert(record, key.clone());
        inner.certificates.insert(cert.site.clone(), cert.clone());
        Ok(())
    }

    async fn certificates(&self) -> Result<Vec<crate::certs::CertificateRecord>, StoreError> {
        Ok(self.inner_lock().certificates.values().cloned().collect())
    }

    async fn remove_certificate(&self, site: &str) -> Result<bool, StoreError> {
        let mut inner = self.inner_lock();
        if let Ok(record) = crate::certs::key_record(site) {
            inner.secrets.remove(&record);
        }
        Ok(inner.certificates.remove(site).is_some())
    }
}
