//! `Keyring`: seal and open secrets, re-seal under the newest key, import legacy Fernet.

use std::path::PathBuf;

use pyo3::prelude::*;
use rpcc_core::keyring::{FernetKey, Keyring, RecordId};
use secrecy::{ExposeSecret as _, SecretString};

use crate::errors::{self, guarded};

/// The keyring (keys from `RPCC_KEYS`, a 0600 key file, or text). `repr` names key
/// ids only.
#[pyclass(name = "Keyring", module = "rpcc._rpcc", frozen)]
pub struct PyKeyring {
    ring: Keyring,
}

fn record(s: &str) -> PyResult<RecordId> {
    RecordId::parse(s).map_err(errors::keyring)
}

#[pymethods]
impl PyKeyring {
    /// The configured keyring: `RPCC_KEYS`, or `key_file` / `RPCC_KEY_FILE`.
    #[staticmethod]
    #[pyo3(signature = (key_file = None))]
    fn load(key_file: Option<PathBuf>) -> PyResult<Self> {
        guarded(|| Keyring::load(key_file.as_deref()).map(|ring| Self { ring }).map_err(errors::keyring))
    }

    /// A key list (`id:base64url` entries, newest last).
    #[staticmethod]
    fn from_keys(text: &str) -> PyResult<Self> {
        guarded(|| Keyring::parse(text, "keys").map(|ring| Self { ring }).map_err(errors::keyring))
    }

    /// A new key entry `id:base64url` (key material: store it like a password).
    #[staticmethod]
    #[pyo3(signature = (id = None))]
    fn generate_entry(id: Option<&str>) -> PyResult<String> {
        guarded(|| {
            let id = id
                .map(rpcc_core::keyring::KeyId::parse)
                .transpose()
                .map_err(|why| errors::KeyringError::new_err(format!("key id {why}")))?;
            Keyring::generate_entry(id).map(|(_, e)| e.to_string()).map_err(errors::keyring)
        })
    }

    /// The id of the key that encrypts.
    #[getter]
    fn active_key_id(&self) -> Option<String> {
        self.ring.active_id().map(ToString::to_string)
    }

    /// Every key id with whether it is retired.
    #[getter]
    fn key_ids(&self) -> Vec<(String, bool)> {
        self.ring.key_ids().map(|(id, retired)| (id.to_string(), retired)).collect()
    }

    /// Seal `value` for `record` (e.g. `server/edge-1/password`); returns the envelope.
    fn encrypt(&self, py: Python<'_>, record: &str, value: &str) -> PyResult<String> {
        guarded(|| {
            let r = self::record(record)?;
            let secret = SecretString::from(value);
            py.detach(|| self.ring.seal(&r, &secret)).map(|e| e.to_string()).map_err(errors::keyring)
        })
    }

    /// Open `envelope` as the secret of `record`.
    fn decrypt(&self, py: Python<'_>, record: &str, envelope: &str) -> PyResult<String> {
        guarded(|| {
            let r = self::record(record)?;
            py.detach(|| self.ring.open_str(&r, envelope))
                .map(|s| s.expose_secret().to_owned())
                .map_err(errors::keyring)
        })
    }

    /// Re-seal `envelope` under the active key (verified); returns the new envelope.
    fn rotate(&self, record: &str, envelope: &str) -> PyResult<String> {
        guarded(|| {
            let r = self::record(record)?;
            let old = rpcc_core::keyring::Envelope::parse(envelope).map_err(|problem| {
                errors::keyring(rpcc_core::keyring::KeyringError::Envelope { record: r.to_string(), problem })
            })?;
            rpcc_core::keyring::rotate::reseal(&self.ring, &r, &old).map(|e| e.to_string()).map_err(errors::keyring)
        })
    }

    /// Decrypt a legacy Fernet `token` with `legacy_key` and seal it for `record`.
    fn import_fernet(&self, record: &str, token: &str, legacy_key: &str) -> PyResult<String> {
        guarded(|| {
            let r = self::record(record)?;
            let key = FernetKey::parse(legacy_key, "legacy_key").map_err(errors::keyring)?;
            let value = key.decrypt(&r, token).map_err(errors::keyring)?;
            self.ring.seal(&r, &value).map(|e| e.to_string()).map_err(errors::keyring)
        })
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.ring)
    }
}
