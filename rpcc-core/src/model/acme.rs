//! `[acme]`: the CA that issues certificates of `tls.mode = "acme"` sites.

use std::path::PathBuf;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ACME CA and the account rpcc uses with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AcmeSettings {
    /// The CA's directory URL (`https://`).
    pub directory: String,
    /// Account contacts (`mailto:` URLs) the CA may write to about expiry and problems.
    pub contact: Vec<String>,
    /// A PEM root certificate to trust for the CA's API instead of the system's roots
    /// (private or test CAs); relative to the inventory's directory.
    pub ca_root: Option<PathBuf>,
    /// Renew certificates that expire within this many days.
    pub renew_days: u32,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self { directory: LETS_ENCRYPT.to_owned(), contact: Vec::new(), ca_root: None, renew_days: 30 }
    }
}
