//! The keyring's error type. No variant ever holds a secret or key material: records
//! and key ids name *where* a problem is, never *what* the value was.

use std::path::PathBuf;

/// Why a string is not a usable `rpcc:v1` envelope (found before any key is used).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeSyntax {
    /// It does not start with `rpcc:`.
    #[error("is not an rpcc envelope (expected `rpcc:v1:<key-id>:<payload>`)")]
    NotAnEnvelope,
    /// A version this rpcc does not read.
    #[error("has unknown envelope version `{0}` (this rpcc reads v1)")]
    UnknownVersion(String),
    /// The fields are not `rpcc:v1:<key-id>:<payload>`.
    #[error("is a malformed envelope: {0}")]
    Malformed(&'static str),
    /// The payload is too short to hold a nonce and a tag.
    #[error("is truncated: its payload has {0} bytes, at least 41 are needed (24-byte nonce, ciphertext, 16-byte tag)")]
    Truncated(usize),
}

/// Errors from the keyring, envelopes and legacy imports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// No keys are configured.
    #[error(
        "no keyring: set RPCC_KEYS or point RPCC_KEY_FILE / --key-file at a 0600 key file (create one with `rpcc keys generate --key-file <path>`)"
    )]
    NoKeys,
    /// Both `RPCC_KEYS` and a key file are set.
    #[error("both RPCC_KEYS and the key file {} are set; use one key source", path.display())]
    AmbiguousSource {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not exist.
    #[error("key file {} does not exist (create it with `rpcc keys generate --key-file {}`)", path.display(), path.display())]
    KeyFileMissing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is readable or writable by group or others.
    #[error("key file {} has mode {mode:04o}: group or others can access it; run `chmod 600 {}`", path.display(), path.display())]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file belongs to another user (who could have put keys of their own in it).
    #[error("key file {} is owned by uid {owner}, not by this user (uid {user}) or root; run `chown` on it", path.display())]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// The key file is not a regular file.
    #[error("key file {} is not a regular file", path.display())]
    KeyFileNotRegular {
        /// The key file.
        path: PathBuf,
    },
    /// An entry of the key list is malformed (the material is never shown).
    #[error("{origin}: key entry {entry} {reason}")]
    MalformedKey {
        /// `RPCC_KEYS` or the key file's path.
        origin: String,
        /// 1-based entry number.
        entry: usize,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Two entries share an id.
    #[error("{origin}: key id `{id}` is listed twice; ids must be unique")]
    DuplicateKeyId {
        /// `RPCC_KEYS` or the key file's path.
        origin: String,
        /// The id.
        id: String,
    },
    /// Every key is retired: nothing can encrypt.
    #[error("the keyring has no active key: every key is retired; add one with `rpcc keys generate`")]
    NoActiveKey,
    /// A record identity is malformed.
    #[error("record `{record}` {reason}")]
    InvalidRecord {
        /// The offending record (records name places, never values).
        record: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// The secret's text is not an envelope the keyring can read.
    #[error("secret {record} {problem}")]
    Envelope {
        /// The record.
        record: String,
        /// The problem.
        #[source]
        problem: EnvelopeSyntax,
    },
    /// The envelope names a key the keyring does not hold.
    #[error("secret {record} is encrypted with key `{key_id}`, which is not in the keyring")]
    UnknownKey {
        /// The record.
        record: String,
        /// The key id in the envelope.
        key_id: String,
    },
    /// The envelope names a retired key.
    #[error("secret {record} is encrypted with key `{key_id}`, which is retired; its material is gone")]
    RetiredKey {
        /// The record.
        record: String,
        /// The key id.
        key_id: String,
    },
    /// The envelope was made for another record (moved or copied).
    #[error("secret {record} holds an envelope made for a different record; envelopes cannot be moved between records")]
    WrongRecord {
        /// The record.
        record: String,
        /// The key id.
        key_id: String,
    },
    /// Authentication failed: the ciphertext was altered.
    #[error("secret {record} failed authentication under key `{key_id}`: the envelope was altered or corrupted")]
    Tampered {
        /// The record.
        record: String,
        /// The key id.
        key_id: String,
    },
    /// The decrypted value is not UTF-8 text.
    #[error("secret {record} decrypted to bytes that are not UTF-8 text")]
    NotUtf8 {
        /// The record.
        record: String,
    },
    /// An empty secret.
    #[error("secret {record} is empty; a secret needs at least one character")]
    EmptySecret {
        /// The record.
        record: String,
    },
    /// A legacy Fernet key is unusable.
    #[error("legacy key {origin} {reason}")]
    LegacyKey {
        /// Where it came from (an environment variable's name).
        origin: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A legacy Fernet token could not be read.
    #[error("legacy token for {record} {reason}")]
    Fernet {
        /// The record.
        record: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another writer changed a file or record while it was being rewritten.
    #[error("{what} changed while it was being rewritten; nothing was written, run the command again")]
    Conflict {
        /// The file or record.
        what: String,
    },
}

impl KeyringError {
    /// Whether retrying may succeed. Only I/O and a concurrent writer can be transient.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Conflict { .. })
    }

    /// The record an error is about, when there is one.
    pub fn record(&self) -> Option<&str> {
        match self {
            Self::Envelope { record, .. }
            | Self::UnknownKey { record, .. }
            | Self::RetiredKey { record, .. }
            | Self::WrongRecord { record, .. }
            | Self::Tampered { record, .. }
            | Self::NotUtf8 { record }
            | Self::EmptySecret { record }
            | Self::Fernet { record, .. } => Some(record),
            _ => None,
        }
    }
}
