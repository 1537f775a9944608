//! Validated value types: every string that can reach an nginx config or a remote
//! command passes an allow-list here, at construction.
//!
//! nginx has no escaping that is safe for every context, so characters it cannot hold
//! safely (`$ ; { } " ' \`, newline, NUL, other control characters, and spaces where a
//! directive argument cannot have them) are **rejected**, never escaped. Each type's
//! `parse` returns a [`ValueError`] that says what is wrong and what is allowed; the
//! inventory decoder adds the field path.
//!
//! ```
//! use rpcc_core::value::{Backend, DomainName, Port};
//!
//! let d = DomainName::parse("App.Example.COM").unwrap();
//! assert_eq!(d.as_str(), "app.example.com");
//! assert!(DomainName::parse("evil.com;include /etc/shadow").is_err());
//! let b = Backend::parse("10.0.0.5:8080").unwrap();
//! assert_eq!(b.port(), Port::new(8080).unwrap());
//! ```

mod http;
mod name;
mod net;
mod path;
mod quantity;

pub use http::{ContentSecurityPolicy, HeaderName, HeaderValue, PermissionsPolicy, RedirectUrl, UrlPath};
pub use name::{DomainName, Identifier, UnitName, UnixUser};
pub use net::{Backend, Host, HostKeyAlgorithm, HostKeyPin, ListenAddr, Port};
pub use path::{FilePath, RemotePath};
pub use quantity::{DurationValue, Rate, RateUnit, Size};

use std::fmt;

/// Why a value was rejected. The message names the problem and what is allowed; it
/// never contains secret material (secret fields are reported without their value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    message: String,
}

impl ValueError {
    /// A rejection with a human-readable reason, e.g. `is not a port (1-65535)`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The reason, without the value or the field path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// Characters that may never appear in any value that reaches a config file.
pub const NGINX_UNSAFE: &[char] = &['$', ';', '{', '}', '"', '\'', '\\', '\n', '\r', '\0', '`'];

/// Describe a character for an error message (`'$'`, `newline`, `U+0007`).
pub(crate) fn describe_char(c: char) -> String {
    match c {
        '\n' => "a newline".to_owned(),
        '\r' => "a carriage return".to_owned(),
        '\t' => "a tab".to_owned(),
        '\0' => "a NUL byte".to_owned(),
        ' ' => "a space".to_owned(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

/// Reject the first character that is in `NGINX_UNSAFE`, a control character, or (if
/// `allow_space` is false) whitespace. Used before any type-specific grammar so the
/// error names the dangerous character itself.
pub(crate) fn reject_unsafe(s: &str, allow_space: bool) -> Result<(), ValueError> {
    for c in s.chars() {
        let bad = NGINX_UNSAFE.contains(&c) || c.is_control() || (!allow_space && c.is_whitespace());
        if bad {
            return Err(ValueError::new(format!(
                "contains {}, which nginx cannot hold safely; it is rejected, not escaped",
                describe_char(c)
            )));
        }
    }
    Ok(())
}

/// Implements `as_str`, `Display`, `FromStr`, `TryFrom<String>`, `AsRef<str>` and serde
/// (serialize as the string, deserialize through `parse`) for a string newtype.
macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl $ty {
            /// The validated value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::value::ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = $crate::value::ValueError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(|e| <D::Error as ::serde::de::Error>::custom(format!("{s:?} {e}")))
            }
        }
    };
}
pub(crate) use string_newtype_impls;

/// For composite values that keep their canonical text: `Display` and serde (as the
/// text, parsed back through `parse`), given `as_str()` and `parse()`.
macro_rules! text_value_impls {
    ($ty:ident) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(|e| <D::Error as ::serde::de::Error>::custom(format!("{s:?} {e}")))
            }
        }
    };
}
pub(crate) use text_value_impls;

#[cfg(test)]
mod tests;
