//! Reading legacy Fernet tokens (the Flask panel's encrypted SSH passwords) so they can
//! be re-sealed as `rpcc:v1` envelopes. Decrypt only: rpcc never writes Fernet.
//!
//! A token is base64url(`0x80` ‖ timestamp (8) ‖ IV (16) ‖ AES-128-CBC ciphertext ‖
//! HMAC-SHA256 (32)); the 32-byte key is the HMAC key followed by the AES key. The MAC is
//! checked (in constant time) before anything is decrypted.

use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{KeyringError, RecordId};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A legacy Fernet key. `Debug` never shows it.
pub struct FernetKey {
    signing: SecretBox<[u8; 16]>,
    encryption: SecretBox<[u8; 16]>,
}

impl std::fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FernetKey(redacted)")
    }
}

impl FernetKey {
    /// Parse a Fernet key (44 base64url characters for 32 bytes); `origin` names it in
    /// errors (e.g. the environment variable).
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyringError> {
        let bad = |reason| KeyringError::LegacyKey { origin: origin.to_owned(), reason };
        let bytes = Zeroizing::new(
            B64.decode(text.trim().trim_end_matches('='))
                .map_err(|_| bad("is not base64url; a Fernet key is 44 characters from Fernet.generate_key()"))?,
        );
        if bytes.len() != 32 {
            return Err(bad("does not decode to 32 bytes; a Fernet key is 44 characters from Fernet.generate_key()"));
        }
        let mut signing = Box::new([0u8; 16]);
        let mut encryption = Box::new([0u8; 16]);
        signing.copy_from_slice(&bytes[..16]);
        encryption.copy_from_slice(&bytes[16..]);
        Ok(Self { signing: SecretBox::new(signing), encryption: SecretBox::new(encryption) })
    }

    /// Read the key from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, KeyringError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| KeyringError::LegacyKey {
            origin: format!("${var}"),
            reason: "is not set (or is not UTF-8)",
        })?);
        Self::parse(&value, &format!("${var}"))
    }

    /// Decrypt `token`, the legacy value of `record`. Token age is not checked: legacy
    /// secrets are old by nature.
    pub fn decrypt(&self, record: &RecordId, token: &str) -> Result<SecretString, KeyringError> {
        let bad = |reason| KeyringError::Fernet { record: record.to_string(), reason };
        let raw = B64.decode(token.trim().trim_end_matches('=')).map_err(|_| bad("is not base64url"))?;
        if raw.len() < 1 + 8 + 16 + 16 + 32 || (raw.len() - (1 + 8 + 16 + 32)) % 16 != 0 {
            return Err(bad("has the wrong length for a Fernet token (truncated?)"));
        }
        if raw[0] != 0x80 {
            return Err(bad("has an unknown Fernet version byte (expected 0x80)"));
        }
        let (signed, mac) = raw.split_at(raw.len() - 32);
        let mut check = <Hmac<Sha256> as Mac>::new_from_slice(self.signing.expose_secret())
            .map_err(|_| bad("cannot be checked"))?;
        check.update(signed);
        check.verify_slice(mac).map_err(|_| bad("fails its HMAC check: wrong legacy key, or the token was altered"))?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&signed[9..25]);
        let mut buf = Zeroizing::new(signed[25..].to_vec());
        let plain = cbc::Decryptor::<aes::Aes128>::new(self.encryption.expose_secret().into(), &iv.into())
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map_err(|_| bad("has bad padding after decryption"))?;
        if plain.is_empty() {
            return Err(KeyringError::EmptySecret { record: record.to_string() });
        }
        let text = std::str::from_utf8(plain).map_err(|_| KeyringError::NotUtf8 { record: record.to_string() })?;
        Ok(SecretString::from(text))
    }
}
