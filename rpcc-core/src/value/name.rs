//! Names: DNS domain names (IDNA), identifiers for servers and groups, Unix user names,
//! systemd unit names.

use super::{ValueError, reject_unsafe, string_newtype_impls};

/// A fully qualified DNS name in its ASCII (punycode) lower-case form, as nginx's
/// `server_name` needs it. Unicode input is converted with IDNA (UTS #46, STD3 rules).
///
/// A leading `*.` wildcard label is accepted by [`DomainName::parse`]; use
/// [`DomainName::is_wildcard`] where wildcards are not allowed (a site's primary domain).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DomainName(String);

/// Longest name DNS allows (RFC 1035, without the trailing dot).
const MAX_DOMAIN_LEN: usize = 253;

impl DomainName {
    /// Validate and normalise a domain name.
    ///
    /// ```
    /// # use rpcc_core::value::DomainName;
    /// assert_eq!(DomainName::parse("Bücher.example").unwrap().as_str(), "xn--bcher-kva.example");
    /// assert!(DomainName::parse("*.example.com").unwrap().is_wildcard());
    /// assert!(DomainName::parse("a.*.example.com").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() {
            return Err(ValueError::new("is empty; a domain name such as app.example.com is required"));
        }
        reject_unsafe(input, false)?;
        let input = input.strip_suffix('.').unwrap_or(input);
        let (wildcard, rest) = match input.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        if rest.contains('*') {
            return Err(ValueError::new(
                "has a '*' that is not a leading \"*.\" label; only *.example.com style wildcards exist",
            ));
        }
        let ascii = idna::domain_to_ascii_strict(rest).map_err(|_| {
            ValueError::new("is not a valid domain name (IDNA/STD3: letters, digits and '-' in dot-separated labels)")
        })?;
        check_hostname_labels(&ascii, 2)?;
        if ascii.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(ValueError::new("looks like an IP address; a domain name is required here"));
        }
        let name = if wildcard { format!("*.{ascii}") } else { ascii };
        if name.len() > MAX_DOMAIN_LEN {
            return Err(ValueError::new(format!("is longer than {MAX_DOMAIN_LEN} characters")));
        }
        Ok(Self(name))
    }

    /// True for `*.example.com` style names.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
}
string_newtype_impls!(DomainName);

/// Check RFC 1123 label syntax on an ASCII name: 1-63 characters of `a-z 0-9 -`, no
/// leading or trailing hyphen, at least `min_labels` labels.
pub(crate) fn check_hostname_labels(ascii: &str, min_labels: usize) -> Result<(), ValueError> {
    let mut count = 0;
    for label in ascii.split('.') {
        count += 1;
        if label.is_empty() {
            return Err(ValueError::new("has an empty label (two dots in a row, or a leading dot)"));
        }
        if label.len() > 63 {
            return Err(ValueError::new("has a label longer than 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(ValueError::new(format!(
                "contains {}; labels allow only letters, digits and '-'",
                super::describe_char(c)
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ValueError::new("has a label that starts or ends with '-'"));
        }
    }
    if count < min_labels {
        return Err(ValueError::new("needs at least two labels (e.g. example.com)"));
    }
    Ok(())
}

/// A name for a server, a group or another inventory object: 1-63 characters of
/// `a-z 0-9 . _ -`, starting with a letter or digit. Safe in file names, log lines and
/// remote paths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Identifier(String);

impl Identifier {
    /// Validate an identifier.
    ///
    /// ```
    /// # use rpcc_core::value::Identifier;
    /// assert!(Identifier::parse("edge-1").is_ok());
    /// assert!(Identifier::parse("../etc").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() {
            return Err(ValueError::new("is empty; 1-63 characters of a-z, 0-9, '.', '_', '-' are required"));
        }
        reject_unsafe(input, false)?;
        if input.len() > 63 {
            return Err(ValueError::new("is longer than 63 characters"));
        }
        if let Some(c) =
            input.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ValueError::new(format!(
                "contains {}; allowed are a-z, 0-9, '.', '_' and '-'",
                super::describe_char(c)
            )));
        }
        if !input.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(ValueError::new("must start with a letter or a digit"));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(Identifier);

/// A Unix login name: `[a-z_][a-z0-9_-]{0,31}` (the portable POSIX subset).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UnixUser(String);

impl UnixUser {
    /// Validate a user name.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        let ok_first = input.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        let ok_rest = input.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if input.is_empty() || input.len() > 32 || !ok_first || !ok_rest {
            return Err(ValueError::new(
                "is not a Unix user name (1-32 characters of a-z, 0-9, '_', '-', starting with a letter or '_')",
            ));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(UnixUser);

/// A systemd unit or SysV service name used to reload nginx, e.g. `nginx` or
/// `nginx.service`: 1-64 characters of `A-Z a-z 0-9 . _ @ -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UnitName(String);

impl UnitName {
    /// Validate a unit name.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        let ok = !input.is_empty()
            && input.len() <= 64
            && !input.starts_with('-')
            && input.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
        if !ok {
            return Err(ValueError::new(
                "is not a service name (1-64 characters of letters, digits, '.', '_', '@', '-', not starting with '-')",
            ));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(UnitName);
