//! Key ids, key material and the keyring itself: where keys come from and which one
//! encrypts.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::KeyringError;

/// Length of a key in bytes (XChaCha20-Poly1305 takes 256-bit keys).
pub const KEY_LEN: usize = 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A key's id: 1-40 characters of `a-z A-Z 0-9 . _ -`, starting with a letter or digit.
/// It is written into every envelope, so it can never contain `:`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Validate a key id.
    ///
    /// ```
    /// use rpcc_core::keyring::KeyId;
    /// assert!(KeyId::parse("k20261123-a1b2").is_ok());
    /// assert!(KeyId::parse("has:colon").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if s.is_empty() || s.len() > 40 || !first_ok {
            return Err("must be 1-40 characters starting with a letter or digit");
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err("may only contain a-z, A-Z, 0-9, `.`, `_` and `-`");
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// 32 bytes of key material, zeroized on drop, never printed.
pub(crate) type KeyMaterial = SecretBox<[u8; KEY_LEN]>;

/// One listed key.
pub(crate) enum KeyState {
    /// Decrypts; the newest active key also encrypts.
    Active(KeyMaterial),
    /// Listed so that envelopes naming it get a precise error; its material is gone.
    Retired,
}

pub(crate) struct KeyEntry {
    pub(crate) id: KeyId,
    pub(crate) state: KeyState,
}

/// Where a keyring was loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// The `RPCC_KEYS` environment variable.
    Env,
    /// A 0600 key file.
    File(PathBuf),
    /// Built in memory (tests, embedding).
    Memory,
}

/// The versioned keyring: every listed key decrypts, the newest (last listed) active key
/// encrypts. Keys come from `RPCC_KEYS` or a 0600 key file, never from source code.
///
/// The list format (one entry per line, or comma-separated in `RPCC_KEYS`; `#` starts a
/// comment): `<key-id>:<base64url of 32 bytes>` for an active key, `<key-id>:retired`
/// for a retired one.
///
/// ```
/// use rpcc_core::keyring::{Keyring, RecordId};
/// use secrecy::{ExposeSecret, SecretString};
///
/// let (_, entry) = Keyring::generate_entry(None).unwrap();
/// let ring = Keyring::parse(&entry, "example").unwrap();
/// let record = RecordId::parse("server/edge-1/password").unwrap();
/// let envelope = ring.seal(&record, &SecretString::from("hunter2")).unwrap();
/// assert!(envelope.as_str().starts_with("rpcc:v1:"));
/// assert_eq!(ring.open(&record, &envelope).unwrap().expose_secret(), "hunter2");
/// // `Debug` names keys, never their material.
/// assert!(!format!("{ring:?}").contains(entry.split(':').nth(1).unwrap()));
/// ```
pub struct Keyring {
    pub(crate) keys: Vec<KeyEntry>,
    source: KeySource,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| match k.state {
                KeyState::Active(_) => format!("{} (active)", k.id),
                KeyState::Retired => format!("{} (retired)", k.id),
            })
            .collect();
        f.debug_struct("Keyring").field("keys", &keys).field("source", &self.source).finish()
    }
}

impl Keyring {
    /// The environment variable holding a key list.
    pub const ENV_KEYS: &'static str = "RPCC_KEYS";
    /// The environment variable naming a key file.
    pub const ENV_KEY_FILE: &'static str = "RPCC_KEY_FILE";

    /// Parse a key list; `origin` names it in errors (`RPCC_KEYS`, a path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<KeyEntry> = Vec::new();
        let entries = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let malformed = |reason: &str| KeyringError::MalformedKey {
                origin: origin.to_owned(),
                entry: i + 1,
                reason: reason.into(),
            };
            let Some((id, value)) = entry.split_once(':') else {
                return Err(malformed("is not `<key-id>:<base64url key>` or `<key-id>:retired`"));
            };
            let id = KeyId::parse(id.trim()).map_err(|why| malformed(&format!("has an id that {why}")))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyringError::DuplicateKeyId { origin: origin.to_owned(), id: id.0 });
            }
            let value = value.trim();
            let state = if value == "retired" {
                KeyState::Retired
            } else {
                KeyState::Active(decode_material(value).map_err(|why| malformed(&format!("({id}) {why}")))?)
            };
            keys.push(KeyEntry { id, state });
        }
        if keys.is_empty() {
            return Err(KeyringError::NoKeys);
        }
        Ok(Self { keys, source: KeySource::Memory })
    }

    /// Read a key file. It must be a regular file with no group or other permission
    /// bits (0600 or stricter); anything else is refused with the reason.
    pub fn from_file(path: &Path) -> Result<Self, KeyringError> {
        let text = read_key_file(path)?;
        let mut ring = Self::parse(&text, &path.display().to_string())?;
        ring.source = KeySource::File(path.to_path_buf());
        Ok(ring)
    }

    /// The keyring configured for this process: `RPCC_KEYS`, or the key file given
    /// (`--key-file`) or named by `RPCC_KEY_FILE`. Both set is an error; none is
    /// [`KeyringError::NoKeys`].
    pub fn load(key_file: Option<&Path>) -> Result<Self, KeyringError> {
        let env_file = std::env::var_os(Self::ENV_KEY_FILE).filter(|v| !v.is_empty()).map(PathBuf::from);
        let file = key_file.map(Path::to_path_buf).or(env_file);
        let env_keys = std::env::var(Self::ENV_KEYS).ok().filter(|v| !v.trim().is_empty()).map(Zeroizing::new);
        match (env_keys, file) {
            (Some(_), Some(path)) => Err(KeyringError::AmbiguousSource { path }),
            (Some(text), None) => {
                let mut ring = Self::parse(&text, Self::ENV_KEYS)?;
                ring.source = KeySource::Env;
                Ok(ring)
            }
            (None, Some(path)) => Self::from_file(&path),
            (None, None) => Err(KeyringError::NoKeys),
        }
    }

    /// Where the keys came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key that encrypts: the last active key listed.
    pub fn active_id(&self) -> Option<&KeyId> {
        self.keys.iter().rev().find(|k| matches!(k.state, KeyState::Active(_))).map(|k| &k.id)
    }

    /// Every listed key id with whether it is retired, in listed order.
    pub fn key_ids(&self) -> impl Iterator<Item = (&KeyId, bool)> {
        self.keys.iter().map(|k| (&k.id, matches!(k.state, KeyState::Retired)))
    }

    /// Whether `id` is listed and active.
    pub fn is_active(&self, id: &KeyId) -> bool {
        self.keys.iter().any(|k| &k.id == id && matches!(k.state, KeyState::Active(_)))
    }

    pub(crate) fn entry(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    pub(crate) fn active(&self) -> Result<(&KeyId, &KeyMaterial), KeyringError> {
        self.keys
            .iter()
            .rev()
            .find_map(|k| match &k.state {
                KeyState::Active(m) => Some((&k.id, m)),
                KeyState::Retired => None,
            })
            .ok_or(KeyringError::NoActiveKey)
    }

    /// A new random key as a list entry `<id>:<base64url>`. The id defaults to
    /// `k<YYYYMMDD>-<4 hex>` (UTC). The entry holds key material: write it only to a
    /// key file or a secret manager.
    pub fn generate_entry(id: Option<KeyId>) -> Result<(KeyId, Zeroizing<String>), KeyringError> {
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(material.as_mut_slice());
        let id = match id {
            Some(id) => id,
            None => {
                let mut tag = [0u8; 2];
                fill_random(&mut tag);
                let id = format!("k{}-{:02x}{:02x}", utc_date(), tag[0], tag[1]);
                KeyId::parse(&id).map_err(|reason| KeyringError::MalformedKey {
                    origin: "generated id".into(),
                    entry: 1,
                    reason: reason.into(),
                })?
            }
        };
        let entry = Zeroizing::new(format!("{id}:{}", B64.encode(material.as_slice())));
        Ok((id, entry))
    }

    /// Append a freshly generated key to a key file (created 0600 when missing; an
    /// existing one must already be 0600). The new key becomes the encrypting key.
    pub fn add_to_file(path: &Path, id: Option<KeyId>) -> Result<KeyId, KeyringError> {
        let existing = match read_key_file(path) {
            Ok(text) => Some(text),
            Err(KeyringError::KeyFileMissing { .. }) => None,
            Err(e) => return Err(e),
        };
        let (id, entry) = Self::generate_entry(id)?;
        if let Some(text) = &existing
            && Self::parse(text, &path.display().to_string())?.entry(id.as_str()).is_some()
        {
            return Err(KeyringError::DuplicateKeyId { origin: path.display().to_string(), id: id.0 });
        }
        let old = match existing {
            Some(text) => text,
            None => Zeroizing::new(String::from(
                "# rpcc keyring: <key-id>:<base64url key> or <key-id>:retired, one per line.\n\
                 # The last active key encrypts; every key listed decrypts. Keep this file 0600.\n",
            )),
        };
        let mut text = Zeroizing::new(old.to_string());
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&entry);
        text.push('\n');
        // Check the result parses before it replaces the file.
        Self::parse(&text, &path.display().to_string())?;
        super::write_atomically(path, text.as_bytes(), 0o600)?;
        Ok(id)
    }

    /// Mark `id` retired in a key file: its material is erased from the file, the id
    /// stays so envelopes naming it get a precise error. The caller checks first that no
    /// secret still uses it.
    pub fn retire_in_file(path: &Path, id: &KeyId) -> Result<(), KeyringError> {
        let old = read_key_file(path)?;
        let ring = Self::parse(&old, &path.display().to_string())?;
        if ring.entry(id.as_str()).is_none() {
            return Err(KeyringError::UnknownKey { record: path.display().to_string(), key_id: id.0.clone() });
        }
        let mut text = Zeroizing::new(String::with_capacity(old.len()));
        for line in old.lines() {
            let body = line.split('#').next().unwrap_or("");
            let mut first = true;
            let mut rewritten = Zeroizing::new(String::new());
            let mut changed = false;
            for part in body.split(',') {
                let named = part.split_once(':').is_some_and(|(k, _)| k.trim() == id.as_str());
                if !first {
                    rewritten.push(',');
                }
                first = false;
                if named {
                    rewritten.push_str(&format!("{id}:retired"));
                    changed = true;
                } else {
                    rewritten.push_str(part);
                }
            }
            if changed {
                text.push_str(&rewritten);
                if let Some((_, comment)) = line.split_once('#') {
                    text.push_str(" #");
                    text.push_str(comment);
                }
            } else {
                text.push_str(line);
            }
            text.push('\n');
        }
        let check = Self::parse(&text, &path.display().to_string())?;
        if check.is_active(id) {
            return Err(KeyringError::Conflict { what: path.display().to_string() });
        }
        super::write_atomically(path, text.as_bytes(), 0o600)
    }
}

fn decode_material(value: &str) -> Result<KeyMaterial, &'static str> {
    let bytes = Zeroizing::new(
        B64.decode(value.trim_end_matches('='))
            .map_err(|_| "is not base64url (A-Z a-z 0-9 - _); the key material is not shown")?,
    );
    if bytes.len() != KEY_LEN {
        return Err("does not decode to 32 bytes");
    }
    let mut material = Box::new([0u8; KEY_LEN]);
    material.copy_from_slice(&bytes);
    Ok(SecretBox::new(material))
}

/// The largest key file read (thousands of keys); anything bigger is not a key file.
const MAX_KEY_FILE: u64 = 1 << 20;

/// Open a key file once and check the open handle (`fstat`: a regular file, no group or
/// other permission bits, owned by this user or root), then read it from that same
/// handle: a file swapped between the check and the read is never the one read.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, KeyringError> {
    use std::io::Read as _;
    let io = |source| KeyringError::Io { path: path.to_path_buf(), source };
    // A FIFO or device would block or never end: refuse what is not a regular file
    // before opening it (the open handle is what is checked for real below).
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(KeyringError::KeyFileNotRegular { path: path.to_path_buf() }),
        _ => {}
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyringError::KeyFileMissing { path: path.to_path_buf() });
        }
        Err(source) => return Err(io(source)),
    };
    let meta = file.metadata().map_err(io)?;
    check_key_file_meta(path, &meta, effective_uid())?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidData, "larger than 1 MiB: not a key file")));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// This process's effective uid, from `/proc/self/status` (`None` where there is none).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn check_key_file_meta(
    path: &Path,
    meta: &std::fs::Metadata,
    euid: Option<u32>,
) -> Result<(), KeyringError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    if !meta.is_file() {
        return Err(KeyringError::KeyFileNotRegular { path: path.to_path_buf() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::KeyFilePermissions { path: path.to_path_buf(), mode });
    }
    if let Some(euid) = euid
        && meta.uid() != euid
        && meta.uid() != 0
    {
        return Err(KeyringError::KeyFileOwner { path: path.to_path_buf(), owner: meta.uid(), user: euid });
    }
    Ok(())
}

/// Fill `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // The OS generator failing is not recoverable: encrypting with a predictable nonce
    // or key would be worse than stopping.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random generator failed");
}

/// Today's UTC date as `YYYYMMDD`.
fn utc_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (year, month, day, ..) = crate::time::civil_utc(i64::try_from(secs).unwrap_or(0));
    format!("{year:04}{month:02}{day:02}")
}

impl KeyEntry {
    pub(crate) fn material(&self) -> Option<&[u8; KEY_LEN]> {
        match &self.state {
            KeyState::Active(m) => Some(m.expose_secret()),
            KeyState::Retired => None,
        }
    }
}
