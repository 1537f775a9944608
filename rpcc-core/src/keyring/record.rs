//! Record identities: where a secret lives (`server/edge-1/password`). The identity is
//! the envelope's associated data, so an envelope copied to another record fails.

use super::KeyringError;

/// The identity of a secret: two or more `/`-separated segments of `a-z A-Z 0-9 . _ -`,
/// at most 200 characters, e.g. `server/edge-1/password`.
///
/// ```
/// use rpcc_core::keyring::RecordId;
///
/// let r = RecordId::parse("server/edge-1/password").unwrap();
/// assert_eq!(r.as_str(), "server/edge-1/password");
/// assert!(RecordId::parse("password").is_err());
/// assert!(RecordId::parse("server/../x").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RecordId(String);

impl RecordId {
    /// Validate a record identity.
    pub fn parse(s: &str) -> Result<Self, KeyringError> {
        let reason = if s.is_empty() || s.len() > 200 {
            Some("must be 1-200 characters")
        } else if !s.contains('/') {
            Some("must have at least two `/`-separated segments, e.g. `server/edge-1/password`")
        } else if s.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            Some("has an empty, `.` or `..` segment")
        } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-')) {
            Some("may only contain a-z, A-Z, 0-9, `.`, `_`, `-` and `/`")
        } else {
            None
        };
        match reason {
            // A rejected record is echoed only when it is short and printable; it names
            // a place, but a user may have pasted a secret by mistake.
            Some(reason) => Err(KeyringError::InvalidRecord { record: shown(s), reason }),
            None => Ok(Self(s.to_owned())),
        }
    }

    /// `server/<name>/<field>`, for a server's secret field.
    pub fn server_field(server: &str, field: &str) -> Result<Self, KeyringError> {
        Self::parse(&format!("server/{server}/{field}"))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RecordId {
    type Err = KeyringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn shown(s: &str) -> String {
    if s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) {
        s.to_owned()
    } else {
        format!("<{} characters, not shown>", s.chars().count())
    }
}
