//! The `SecretStore` role: where the control plane keeps secrets that are not in an
//! inventory file (e.g. imported legacy passwords, secrets the Python panel stores). It
//! holds envelopes only, never plain text.

use super::StoreError;
use crate::keyring::{Envelope, KeyId, RecordId};

/// One compare-and-swap of a stored secret: replace `old` with `new` for `record`.
#[derive(Clone, Debug)]
pub struct SecretSwap {
    /// The record.
    pub record: RecordId,
    /// What the store must still hold.
    pub old: Envelope,
    /// The replacement.
    pub new: Envelope,
}

/// Storage of sealed secrets.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// Insert or replace the envelope of `record`.
    async fn put_secret(&self, record: &RecordId, envelope: &Envelope) -> Result<(), StoreError> {
        self.put_secrets(&[(record.clone(), envelope.clone())]).await
    }

    /// Insert or replace several envelopes in one transaction (all or none).
    async fn put_secrets(&self, items: &[(RecordId, Envelope)]) -> Result<(), StoreError>;

    /// The envelope of `record`.
    async fn secret(&self, record: &RecordId) -> Result<Option<Envelope>, StoreError>;

    /// Up to `limit` secrets **not** sealed by `key`, in record order, strictly after
    /// `after` when given.
    async fn secrets_not_under(
        &self,
        key: &KeyId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<(RecordId, Envelope)>, StoreError>;

    /// Records sealed by `key`, in record order, at most `limit`.
    async fn secrets_under(&self, key: &KeyId, limit: usize) -> Result<Vec<RecordId>, StoreError>;

    /// Apply every swap whose record still holds its `old` envelope, in one transaction:
    /// all of them become visible together or none does. Returns how many were applied
    /// (a swap whose record changed meanwhile is skipped).
    async fn replace_secrets(&self, swaps: &[SecretSwap]) -> Result<usize, StoreError>;

    /// How many secrets each key id seals.
    async fn secret_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
}
