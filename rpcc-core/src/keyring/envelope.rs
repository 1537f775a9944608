//! The `rpcc:v1:<key-id>:<base64url(nonce ‖ ciphertext ‖ tag)>` envelope.
//!
//! XChaCha20-Poly1305 with a 24-byte nonce whose first 8 bytes are a keyed tag of the
//! record (HMAC-SHA256 under a key derived from the encryption key) and whose last 16 are
//! random. The associated data is `rpcc:v1:<key-id>:<record>`. The record tag lets a
//! failed decryption say *why*: an envelope moved from another record
//! ([`KeyringError::WrongRecord`]) versus altered bytes ([`KeyringError::Tampered`]).

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::{KEY_LEN, fill_random};
use super::{EnvelopeSyntax, KeyId, Keyring, KeyringError, RecordId};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const PREFIX: &str = "rpcc:";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const RECORD_TAG_LEN: usize = 8;

/// A parsed envelope. Envelopes hold only ciphertext, so they may be shown, logged and
/// stored; the key id says which key opens it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    text: String,
    key_id: KeyId,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Envelope({}, key {})", abbreviated(&self.text), self.key_id)
    }
}

impl std::fmt::Display for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl Envelope {
    /// Check the syntax of an envelope (no key needed).
    pub fn parse(text: &str) -> Result<Self, EnvelopeSyntax> {
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Err(EnvelopeSyntax::NotAnEnvelope);
        };
        let mut parts = rest.splitn(3, ':');
        let version = parts.next().unwrap_or("");
        if version != VERSION {
            let shown: String = version.chars().take(12).filter(|c| c.is_ascii_graphic()).collect();
            return Err(EnvelopeSyntax::UnknownVersion(shown));
        }
        let (Some(id), Some(payload)) = (parts.next(), parts.next()) else {
            return Err(EnvelopeSyntax::Malformed("expected `rpcc:v1:<key-id>:<payload>`"));
        };
        let key_id = KeyId::parse(id).map_err(|_| EnvelopeSyntax::Malformed("the key id is not a valid key id"))?;
        let bytes = B64.decode(payload).map_err(|_| EnvelopeSyntax::Malformed("the payload is not base64url"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN + 1 {
            return Err(EnvelopeSyntax::Truncated(bytes.len()));
        }
        Ok(Self { text: text.to_owned(), key_id })
    }

    /// Whether `text` looks like an envelope (starts with `rpcc:`), valid or not.
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The envelope text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn payload(&self) -> Vec<u8> {
        // Checked in `parse`.
        let start = PREFIX.len() + VERSION.len() + 1 + self.key_id.as_str().len() + 1;
        B64.decode(&self.text[start..]).unwrap_or_default()
    }
}

fn abbreviated(text: &str) -> String {
    if text.len() > 40 { format!("{}…", &text[..40]) } else { text.to_owned() }
}

fn aad(key_id: &KeyId, record: &RecordId) -> Vec<u8> {
    format!("{PREFIX}{VERSION}:{key_id}:{record}").into_bytes()
}

/// First 8 bytes of HMAC-SHA256(HMAC-SHA256(key, "rpcc:v1 record tag"), record).
/// (HMAC accepts keys of any length, so `None` is never returned in practice.)
fn record_tag(key: &[u8; KEY_LEN], record: &RecordId) -> Option<[u8; RECORD_TAG_LEN]> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    derive.update(b"rpcc:v1 record tag");
    let subkey = Zeroizing::new(derive.finalize().into_bytes().to_vec());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&subkey).ok()?;
    mac.update(record.as_str().as_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; RECORD_TAG_LEN];
    tag.copy_from_slice(&full[..RECORD_TAG_LEN]);
    Some(tag)
}

impl Keyring {
    /// Encrypt `secret` for `record` with the active key.
    pub fn seal(&self, record: &RecordId, secret: &SecretString) -> Result<Envelope, KeyringError> {
        let mut random = [0u8; NONCE_LEN - RECORD_TAG_LEN];
        fill_random(&mut random);
        self.seal_with(record, secret.expose_secret().as_bytes(), random)
    }

    /// Encrypt with the given random part of the nonce (known-answer tests).
    pub(crate) fn seal_with(
        &self,
        record: &RecordId,
        plaintext: &[u8],
        random: [u8; NONCE_LEN - RECORD_TAG_LEN],
    ) -> Result<Envelope, KeyringError> {
        if plaintext.is_empty() {
            return Err(KeyringError::EmptySecret { record: record.to_string() });
        }
        let (key_id, material) = self.active()?;
        let key = material.expose_secret();
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..RECORD_TAG_LEN].copy_from_slice(&record_tag(key, record).ok_or(KeyringError::NoActiveKey)?);
        nonce[RECORD_TAG_LEN..].copy_from_slice(&random);
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| KeyringError::NoActiveKey)?;
        let sealed = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad(key_id, record) })
            .map_err(|_| KeyringError::Tampered { record: record.to_string(), key_id: key_id.to_string() })?;
        let mut payload = Vec::with_capacity(NONCE_LEN + sealed.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        Ok(Envelope { text: format!("{PREFIX}{VERSION}:{key_id}:{}", B64.encode(payload)), key_id: key_id.clone() })
    }

    /// Decrypt `envelope` as the secret of `record`.
    pub fn open(&self, record: &RecordId, envelope: &Envelope) -> Result<SecretString, KeyringError> {
        let key_id = envelope.key_id();
        let entry = self
            .entry(key_id.as_str())
            .ok_or_else(|| KeyringError::UnknownKey { record: record.to_string(), key_id: key_id.to_string() })?;
        let Some(key) = entry.material() else {
            return Err(KeyringError::RetiredKey { record: record.to_string(), key_id: key_id.to_string() });
        };
        let payload = envelope.payload();
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| KeyringError::NoActiveKey)?;
        let mut nonce_arr = [0u8; NONCE_LEN];
        nonce_arr.copy_from_slice(nonce);
        let opened = cipher.decrypt(&XNonce::from(nonce_arr), Payload { msg: sealed, aad: &aad(key_id, record) });
        let plain = match opened {
            Ok(p) => Zeroizing::new(p),
            Err(_) => {
                let tag = record_tag(key, record);
                return Err(if tag.is_some_and(|t| nonce[..RECORD_TAG_LEN] == t) {
                    KeyringError::Tampered { record: record.to_string(), key_id: key_id.to_string() }
                } else {
                    KeyringError::WrongRecord { record: record.to_string(), key_id: key_id.to_string() }
                });
            }
        };
        let text = std::str::from_utf8(&plain).map_err(|_| KeyringError::NotUtf8 { record: record.to_string() })?;
        Ok(SecretString::from(text))
    }

    /// Parse and decrypt an envelope's text in one step.
    pub fn open_str(&self, record: &RecordId, text: &str) -> Result<SecretString, KeyringError> {
        let envelope =
            Envelope::parse(text).map_err(|problem| KeyringError::Envelope { record: record.to_string(), problem })?;
        self.open(record, &envelope)
    }
}
