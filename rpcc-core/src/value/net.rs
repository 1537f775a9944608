//! Network values: ports, hosts, backends (`host:port`), pinned SSH host keys.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::name::check_hostname_labels;
use super::{ValueError, reject_unsafe, string_newtype_impls, text_value_impls};

/// A TCP port, 1-65535.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    /// A port from a number; 0 is refused.
    pub fn new(n: u16) -> Result<Self, ValueError> {
        if n == 0 {
            return Err(ValueError::new("is not a port (1-65535)"));
        }
        Ok(Self(n))
    }

    /// A port from any integer, with the range checked.
    pub fn from_i64(n: i64) -> Result<Self, ValueError> {
        u16::try_from(n).ok().filter(|p| *p != 0).map(Self).ok_or_else(|| ValueError::new("is not a port (1-65535)"))
    }

    /// Parse a decimal port number.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::new("is not a port (1-65535)"));
        }
        s.parse::<i64>().map_err(|_| ValueError::new("is not a port (1-65535)")).and_then(Self::from_i64)
    }

    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = <i64 as serde::Deserialize>::deserialize(d)?;
        Self::from_i64(n).map_err(|e| <D::Error as serde::de::Error>::custom(format!("{n} {e}")))
    }
}

/// A host to connect to: an IPv4 or IPv6 address, or a DNS host name (one label such as
/// `localhost` is allowed). Stored lower-case; IPv6 without brackets.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Host(String);

impl Host {
    /// Validate a host.
    ///
    /// ```
    /// # use rpcc_core::value::Host;
    /// assert_eq!(Host::parse("[2001:db8::1]").unwrap().as_str(), "2001:db8::1");
    /// assert!(Host::parse("10.0.0.5").unwrap().ip().is_some());
    /// assert!(Host::parse("host name").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() {
            return Err(ValueError::new("is empty; an IP address or a host name is required"));
        }
        reject_unsafe(input, false)?;
        let bare = input.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(input);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self(ip.to_string()));
        }
        if bare.contains(':') {
            return Err(ValueError::new("is not a valid IPv6 address"));
        }
        let lower = bare.to_ascii_lowercase();
        if lower.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(ValueError::new("is not a valid IPv4 address"));
        }
        if lower.len() > 253 {
            return Err(ValueError::new("is longer than 253 characters"));
        }
        check_hostname_labels(&lower, 1)?;
        Ok(Self(lower))
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }

    /// The host as it goes in a `host:port` pair (IPv6 in brackets).
    pub fn to_authority(&self, port: Port) -> String {
        if self.0.parse::<Ipv6Addr>().is_ok() { format!("[{}]:{port}", self.0) } else { format!("{}:{port}", self.0) }
    }
}
string_newtype_impls!(Host);

/// A backend of an upstream: `host:port` (IPv6 as `[addr]:port`). The port is required.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Backend {
    host: Host,
    port: Port,
    text: String,
}

impl Backend {
    /// Parse `host:port`.
    ///
    /// ```
    /// # use rpcc_core::value::Backend;
    /// assert_eq!(Backend::parse("[::1]:8080").unwrap().as_str(), "[::1]:8080");
    /// assert!(Backend::parse("10.0.0.5:99999").is_err());
    /// assert!(Backend::parse("10.0.0.5").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (h, p) =
                rest.split_once("]:").ok_or_else(|| ValueError::new("is not host:port (IPv6 as [addr]:port)"))?;
            (h, p)
        } else {
            let (h, p) = input
                .rsplit_once(':')
                .ok_or_else(|| ValueError::new("has no port; backends are host:port, e.g. 10.0.0.5:8080"))?;
            if h.contains(':') {
                return Err(ValueError::new("is ambiguous; write IPv6 backends as [addr]:port"));
            }
            (h, p)
        };
        let host = Host::parse(host).map_err(|e| ValueError::new(format!("has a bad host: {e}")))?;
        let port = Port::parse(port)
            .map_err(|_| ValueError::new(format!("has an invalid port: {port} is not a port (1-65535)")))?;
        let text = host.to_authority(port);
        Ok(Self { host, port, text })
    }

    /// Build from parts.
    pub fn new(host: Host, port: Port) -> Self {
        let text = host.to_authority(port);
        Self { host, port, text }
    }

    /// The host part.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port part.
    pub fn port(&self) -> Port {
        self.port
    }

    /// `host:port` as nginx's `server` directive takes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Where nginx listens: a port (all addresses) or `address:port`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ListenAddr {
    ip: Option<std::net::IpAddr>,
    port: Port,
    text: String,
}

impl ListenAddr {
    /// Parse `443`, `127.0.0.1:8443` or `[::1]:8443`.
    ///
    /// ```
    /// # use rpcc_core::value::ListenAddr;
    /// assert_eq!(ListenAddr::parse("127.0.0.1:8080").unwrap().as_str(), "127.0.0.1:8080");
    /// assert_eq!(ListenAddr::parse("443").unwrap().port().get(), 443);
    /// assert!(ListenAddr::parse("localhost:80").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        if input.bytes().all(|b| b.is_ascii_digit()) {
            let port = Port::parse(input)?;
            return Ok(Self { ip: None, port, text: port.to_string() });
        }
        let backend = Backend::parse(input)?;
        let ip = backend
            .host()
            .ip()
            .ok_or_else(|| ValueError::new("must be a port or an IP address with a port (e.g. 127.0.0.1:8080)"))?;
        Ok(Self { ip: Some(ip), port: backend.port(), text: backend.as_str().to_owned() })
    }

    /// A listen address on all interfaces.
    pub fn port_only(port: Port) -> Self {
        Self { ip: None, port, text: port.to_string() }
    }

    /// The port.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The address, if one was given.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.ip
    }

    /// As nginx's `listen` takes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

text_value_impls!(Backend);
text_value_impls!(ListenAddr);
text_value_impls!(HostKeyPin);

/// SSH host-key algorithms rpcc accepts for pinning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum HostKeyAlgorithm {
    /// `ssh-ed25519`
    #[serde(rename = "ssh-ed25519")]
    Ed25519,
    /// `ecdsa-sha2-nistp256`
    #[serde(rename = "ecdsa-sha2-nistp256")]
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`
    #[serde(rename = "ecdsa-sha2-nistp384")]
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`
    #[serde(rename = "ecdsa-sha2-nistp521")]
    EcdsaP521,
    /// `ssh-rsa` key (used with rsa-sha2-256/512 signatures)
    #[serde(rename = "ssh-rsa")]
    Rsa,
}

impl HostKeyAlgorithm {
    /// All accepted algorithms with their OpenSSH names.
    pub const ALL: [(HostKeyAlgorithm, &'static str); 5] = [
        (Self::Ed25519, "ssh-ed25519"),
        (Self::EcdsaP256, "ecdsa-sha2-nistp256"),
        (Self::EcdsaP384, "ecdsa-sha2-nistp384"),
        (Self::EcdsaP521, "ecdsa-sha2-nistp521"),
        (Self::Rsa, "ssh-rsa"),
    ];

    /// The OpenSSH name, e.g. `ssh-ed25519`.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(a, _)| *a == self).map(|(_, n)| *n).unwrap_or("unknown")
    }

    /// Parse an OpenSSH algorithm name.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(a, _)| *a).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
            ValueError::new(format!("is not a supported host-key algorithm (one of {})", names.join(", ")))
        })
    }
}

/// A pinned SSH host key: algorithm and SHA-256 fingerprint, written as OpenSSH prints
/// them: `ssh-ed25519 SHA256:<43 base64 characters>`. The algorithm is required so that
/// a server presenting a key of another algorithm is refused.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct HostKeyPin {
    algorithm: HostKeyAlgorithm,
    sha256: String,
    text: String,
}

impl HostKeyPin {
    /// Parse `<algorithm> SHA256:<base64>`.
    ///
    /// ```
    /// # use rpcc_core::value::{HostKeyPin, HostKeyAlgorithm};
    /// let pin = HostKeyPin::parse("ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s").unwrap();
    /// assert_eq!(pin.algorithm(), HostKeyAlgorithm::Ed25519);
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, true)?;
        let (alg, fp) = input.split_once(' ').ok_or_else(|| {
            ValueError::new("is not a pinned host key; expected \"<algorithm> SHA256:<fingerprint>\" as `ssh-keygen -lf` prints it, e.g. \"ssh-ed25519 SHA256:…\"")
        })?;
        let algorithm = HostKeyAlgorithm::parse(alg.trim())?;
        let b64 = fp.trim().strip_prefix("SHA256:").ok_or_else(|| ValueError::new("has no SHA256: fingerprint"))?;
        let ok = b64.len() == 43 && b64.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if !ok {
            return Err(ValueError::new("has a malformed SHA256 fingerprint (43 unpadded base64 characters expected)"));
        }
        Ok(Self { algorithm, sha256: b64.to_owned(), text: format!("{} SHA256:{b64}", algorithm.name()) })
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> HostKeyAlgorithm {
        self.algorithm
    }

    /// The fingerprint's base64 part (without `SHA256:`), as OpenSSH prints it.
    pub fn sha256_base64(&self) -> &str {
        &self.sha256
    }

    /// `ssh-ed25519 SHA256:…`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}
