//! Secrets at rest: the versioned [`Keyring`], the `rpcc:v1` [`Envelope`]
//! (XChaCha20-Poly1305, the record's identity as associated data), the [`Secret`] value
//! of inventory fields, the [`SecretStore`] role, [`rotate`] and legacy [`FernetKey`]
//! import.
//!
//! Keys come from `RPCC_KEYS` or a 0600 key file, never from source code. Every listed
//! key decrypts; the newest active one encrypts. Nothing in this module ever formats a
//! secret or key material: `Debug` and errors name records and key ids only.

mod envelope;
mod error;
mod fernet;
pub(crate) mod keys;
mod record;
pub mod rotate;
mod secret;

use std::io::Write as _;
use std::path::Path;

pub use crate::store::{SecretStore, SecretSwap};
pub use envelope::Envelope;
pub use error::{EnvelopeSyntax, KeyringError};
pub use fernet::FernetKey;
pub use keys::{KEY_LEN, KeyId, KeySource, Keyring};
pub use record::RecordId;
pub use secret::Secret;

/// Replace `path` with `contents` atomically: a temporary file in the same directory
/// (created with `mode`), synced, renamed over `path`, directory synced.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyringError> {
    write_atomically_with(path, contents, mode, || Ok::<(), KeyringError>(()))
}

/// [`write_atomically`] with a check between the synced temporary file and the rename
/// (crash-injection point); the temporary file is removed when the check fails.
pub(crate) fn write_atomically_with<E: From<KeyringError>>(
    path: &Path,
    contents: &[u8],
    mode: u32,
    before_rename: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| KeyringError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut nonce = [0u8; 6];
    keys::fill_random(&mut nonce);
    let tmp = dir.join(format!(".{name}.rpcc-{}.tmp", nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let result = (|| -> Result<(), E> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io)?;
        file.write_all(contents).map_err(io)?;
        file.sync_all().map_err(io)?;
        before_rename()?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            d.sync_all().map_err(io)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
