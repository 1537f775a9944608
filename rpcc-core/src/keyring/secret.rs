//! A secret field's value as an inventory holds it: sealed in an envelope, or plain text
//! that the operator explicitly allowed.

use secrecy::SecretString;

use super::{Envelope, Keyring, KeyringError, RecordId};

/// A secret as configured: an [`Envelope`] (the normal case) or plain text (only with
/// `--allow-plaintext`). `Debug` shows the record and the key id, never the value.
#[derive(Clone)]
pub struct Secret {
    record: RecordId,
    value: SecretValue,
}

#[derive(Clone)]
enum SecretValue {
    Sealed(Envelope),
    Plain(SecretString),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            SecretValue::Sealed(e) => write!(f, "Secret({}, sealed with key {})", self.record, e.key_id()),
            SecretValue::Plain(_) => write!(f, "Secret({}, plain text, redacted)", self.record),
        }
    }
}

impl Secret {
    /// A sealed secret.
    pub fn sealed(record: RecordId, envelope: Envelope) -> Self {
        Self { record, value: SecretValue::Sealed(envelope) }
    }

    /// A plain-text secret (allowed only when the operator asked for it).
    pub fn plain(record: RecordId, value: SecretString) -> Self {
        Self { record, value: SecretValue::Plain(value) }
    }

    /// Where the secret lives.
    pub fn record(&self) -> &RecordId {
        &self.record
    }

    /// The envelope, when sealed.
    pub fn envelope(&self) -> Option<&Envelope> {
        match &self.value {
            SecretValue::Sealed(e) => Some(e),
            SecretValue::Plain(_) => None,
        }
    }

    /// Whether it is plain text.
    pub fn is_plaintext(&self) -> bool {
        matches!(self.value, SecretValue::Plain(_))
    }

    /// The value: plain text as is, an envelope decrypted with `keyring`
    /// ([`KeyringError::NoKeys`] when sealed and no keyring is configured).
    pub fn open(&self, keyring: Option<&Keyring>) -> Result<SecretString, KeyringError> {
        match &self.value {
            SecretValue::Plain(s) => Ok(s.clone()),
            SecretValue::Sealed(e) => keyring.ok_or(KeyringError::NoKeys)?.open(&self.record, e),
        }
    }
}
