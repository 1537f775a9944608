//! Which `rpcc:plugin` WIT versions this host loads. The host implements one version
//! ([`WIT_VERSION`]) and accepts plugins built against any semver-compatible one
//! ([`WIT_VERSIONS`]: the same minor version while the major is 0): within a range,
//! a newer version only adds functions, so a plugin that uses only what this host has
//! links, and one that calls something newer is refused at load with the missing name.

use std::fmt;

/// The WIT package version this host implements (`wit/rpcc-plugin@0.1.0`).
pub const WIT_VERSION: &str = "0.1.0";

/// The plugin WIT versions this host loads, for messages.
pub const WIT_VERSIONS: &str = ">=0.1.0, <0.2.0";

/// A WIT package version (`major.minor.patch`; pre-release and build suffixes are not
/// accepted in plugin interfaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WitVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl WitVersion {
    /// The version this host implements.
    pub const HOST: Self = Self { major: 0, minor: 1, patch: 0 };

    /// Parse `major.minor.patch` (decimal, no leading `+`, no suffix).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Self { major: next()?, minor: next()?, patch: next()? };
        parts.next().is_none().then_some(v)
    }

    /// Whether a plugin built against `self` may load in this host: the same major
    /// version (and, while it is 0, the same minor version) as [`Self::HOST`].
    pub fn is_supported(self) -> bool {
        let host = Self::HOST;
        self.major == host.major && (host.major > 0 || self.minor == host.minor)
    }
}

impl fmt::Display for WitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_version_is_the_wit_directory_version() {
        assert_eq!(WitVersion::parse(WIT_VERSION), Some(WitVersion::HOST));
        assert_eq!(WitVersion::HOST.to_string(), WIT_VERSION);
    }

    #[test]
    fn only_the_same_minor_version_is_supported_below_1_0() {
        for ok in ["0.1.0", "0.1.1", "0.1.99"] {
            assert!(WitVersion::parse(ok).is_some_and(WitVersion::is_supported), "{ok}");
        }
        for refused in ["0.0.9", "0.2.0", "1.1.0", "0.10.0"] {
            assert!(!WitVersion::parse(refused).is_some_and(WitVersion::is_supported), "{refused}");
        }
        for bad in ["", "0.1", "0.1.0.0", "0.1.0-rc1", "+0.1.0", "0.1.x", "0.1.0000000001"] {
            assert_eq!(WitVersion::parse(bad), None, "{bad}");
        }
    }
}
