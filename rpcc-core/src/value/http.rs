//! HTTP values: header names and values, URL paths, redirect targets, and the two
//! structured security headers (CSP, Permissions-Policy) whose syntax needs `;`/`'`.

use super::{ValueError, describe_char, reject_unsafe, string_newtype_impls};

/// An HTTP header name: 1-64 characters of `A-Z a-z 0-9 -`, not starting with `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct HeaderName(String);

impl HeaderName {
    /// Validate a header name.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        let ok = !input.is_empty()
            && input.len() <= 64
            && !input.starts_with('-')
            && input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ValueError::new(
                "is not a header name (1-64 characters of letters, digits and '-', not starting with '-')",
            ));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(HeaderName);

/// An HTTP header value that is always rendered inside double quotes: printable ASCII
/// and spaces, at most 1024 characters, none of `$ ; { } " ' \` (nginx would expand
/// `$` as a variable) and no leading or trailing space.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct HeaderValue(String);

impl HeaderValue {
    /// Validate a header value.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() {
            return Err(ValueError::new("is empty"));
        }
        reject_unsafe(input, true)?;
        if let Some(c) = input.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
            return Err(ValueError::new(format!("contains {}; header values are printable ASCII", describe_char(c))));
        }
        if input.starts_with(' ') || input.ends_with(' ') {
            return Err(ValueError::new("has leading or trailing spaces"));
        }
        if input.len() > 1024 {
            return Err(ValueError::new("is longer than 1024 characters"));
        }
        Ok(Self(input.to_owned()))
    }

    /// A built-in literal; checked by tests, never from input.
    pub(crate) fn from_static(s: &'static str) -> Self {
        debug_assert!(Self::parse(s).is_ok(), "literal header value {s:?} must be valid");
        Self(s.to_owned())
    }
}
string_newtype_impls!(HeaderValue);

/// Characters allowed in a path besides ASCII letters and digits (RFC 3986 `pchar` minus
/// `;`, `'`, `$`, which nginx or shells treat specially).
const PATH_PUNCT: &[char] = &['/', '.', '-', '_', '~', '%', '!', '&', '+', ',', '=', ':', '@', '*', '(', ')'];

/// A URL path for a `location`, a redirect source or a health endpoint: starts with
/// `/`, at most 1024 characters, `%` only as a `%XX` escape, no `..` segments, no query
/// or fragment, and no character from the unsafe set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UrlPath(String);

impl UrlPath {
    /// Validate a path.
    ///
    /// ```
    /// # use rpcc_core::value::UrlPath;
    /// assert!(UrlPath::parse("/api/v1/").is_ok());
    /// assert!(UrlPath::parse("/a/../etc").is_err());
    /// assert!(UrlPath::parse("api").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        check_path(input)?;
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(UrlPath);

fn check_path(input: &str) -> Result<(), ValueError> {
    if !input.starts_with('/') {
        return Err(ValueError::new("must start with '/'"));
    }
    reject_unsafe(input, false)?;
    if input.len() > 1024 {
        return Err(ValueError::new("is longer than 1024 characters"));
    }
    if let Some(c) = input.chars().find(|c| !(c.is_ascii_alphanumeric() || PATH_PUNCT.contains(c))) {
        let hint = match c {
            '?' | '#' => "; a path has no query or fragment here",
            _ => "; paths allow letters, digits and / . - _ ~ % ! & + , = : @ * ( )",
        };
        return Err(ValueError::new(format!("contains {}{hint}", describe_char(c))));
    }
    let bytes = input.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err(ValueError::new("has a '%' that is not a %XX escape"));
            }
        }
    }
    if input.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(ValueError::new("has a '.' or '..' segment"));
    }
    Ok(())
}

/// An absolute `http://` or `https://` URL used as a redirect target. The host is a
/// validated domain name or IP; the path follows [`UrlPath`] rules; an optional query
/// allows only letters, digits and `- _ . ~ % & = + ,`. nginx would expand `$`, so it
/// never appears.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RedirectUrl(String);

impl RedirectUrl {
    /// Validate a redirect URL.
    ///
    /// ```
    /// # use rpcc_core::value::RedirectUrl;
    /// assert!(RedirectUrl::parse("https://new.example.com/path?a=1").is_ok());
    /// assert!(RedirectUrl::parse("https://x.example.com/$request_uri").is_err());
    /// assert!(RedirectUrl::parse("javascript:alert(1)").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        let rest = input
            .strip_prefix("https://")
            .or_else(|| input.strip_prefix("http://"))
            .ok_or_else(|| ValueError::new("must be an absolute http:// or https:// URL"))?;
        let (authority, path_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (authority, query_only) = match authority.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (authority, None),
        };
        let (host, port) = if authority.starts_with('[') {
            match authority.split_once("]:") {
                Some((h, p)) => (&authority[..h.len() + 1], Some(p)),
                None => (authority, None),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        super::Host::parse(host).map_err(|e| ValueError::new(format!("has a bad host: {e}")))?;
        if let Some(p) = port {
            super::Port::parse(p)?;
        }
        let (path, query) = match (path_query.split_once('?'), query_only) {
            (_, Some(q)) => ("", Some(q)),
            (Some((p, q)), None) => (p, Some(q)),
            (None, None) => (path_query, None),
        };
        if !path.is_empty() {
            check_path(path)?;
        }
        if let Some(q) = query
            && let Some(c) = q.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.~%&=+,".contains(*c)))
        {
            return Err(ValueError::new(format!(
                "has {} in its query; allowed are letters, digits and - _ . ~ % & = + ,",
                describe_char(c)
            )));
        }
        if input.len() > 2048 {
            return Err(ValueError::new("is longer than 2048 characters"));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype_impls!(RedirectUrl);

/// CSP keywords that are written in single quotes.
const CSP_KEYWORDS: &[&str] = &[
    "'self'",
    "'none'",
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'strict-dynamic'",
    "'unsafe-hashes'",
    "'wasm-unsafe-eval'",
    "'report-sample'",
];

/// A Content-Security-Policy, parsed into directives and re-emitted in canonical form
/// (`name src src; name src`). Its `;` and `'` come from the structure, not from input:
/// directive names are `a-z -`; sources are the quoted CSP keywords, `'sha256-…'`/
/// `'sha384-…'`/`'sha512-…'` hashes, or host/scheme sources of letters, digits and
/// `. : / * - _ + ? = %`. Rendered inside double quotes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ContentSecurityPolicy(String);

impl ContentSecurityPolicy {
    /// Parse and canonicalise a policy.
    ///
    /// ```
    /// # use rpcc_core::value::ContentSecurityPolicy;
    /// let csp = ContentSecurityPolicy::parse("default-src 'self';img-src * data:").unwrap();
    /// assert_eq!(csp.as_str(), "default-src 'self'; img-src * data:");
    /// assert!(ContentSecurityPolicy::parse("default-src 'self' \"x").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if let Some(c) = input.chars().find(|c| matches!(c, '$' | '{' | '}' | '"' | '\\' | '`') || c.is_control()) {
            return Err(ValueError::new(format!("contains {}, which nginx cannot hold safely", describe_char(c))));
        }
        let mut out = Vec::new();
        for directive in input.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let mut words = directive.split_ascii_whitespace();
            let name = words.next().unwrap_or_default();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                return Err(ValueError::new(format!("has a bad directive name {name:?} (a-z and '-' only)")));
            }
            let mut parts = vec![name.to_owned()];
            for src in words {
                if !(CSP_KEYWORDS.contains(&src) || is_csp_hash(src) || is_csp_host_source(src)) {
                    return Err(ValueError::new(format!(
                        "has a source {src:?} that is not a CSP keyword ('self', 'none', …), a 'sha256-…' hash, or a host/scheme source"
                    )));
                }
                parts.push(src.to_owned());
            }
            out.push(parts.join(" "));
        }
        if out.is_empty() {
            return Err(ValueError::new("has no directives"));
        }
        let s = out.join("; ");
        if s.len() > 4096 {
            return Err(ValueError::new("is longer than 4096 characters"));
        }
        Ok(Self(s))
    }
}
string_newtype_impls!(ContentSecurityPolicy);

fn is_csp_hash(src: &str) -> bool {
    let Some(inner) = src.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) else { return false };
    let Some((alg, b64)) = inner.split_once('-') else { return false };
    matches!(alg, "sha256" | "sha384" | "sha512")
        && !b64.is_empty()
        && b64.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

fn is_csp_host_source(src: &str) -> bool {
    !src.is_empty() && src.chars().all(|c| c.is_ascii_alphanumeric() || ".:/*-_+?=%".contains(c))
}

/// A Permissions-Policy header: comma-separated `feature=(allowlist)` entries where the
/// allowlist holds `self`, `*`, or nothing, e.g. `camera=(), geolocation=(self)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PermissionsPolicy(String);

impl PermissionsPolicy {
    /// Parse and canonicalise a policy.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, true)?;
        let mut out = Vec::new();
        for entry in input.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (feature, list) = entry
                .split_once('=')
                .ok_or_else(|| ValueError::new(format!("has an entry {entry:?} that is not feature=(…)")))?;
            let feature = feature.trim();
            if feature.is_empty() || !feature.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                return Err(ValueError::new(format!("has a bad feature name {feature:?} (a-z and '-' only)")));
            }
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .map(str::trim)
                .ok_or_else(|| ValueError::new(format!("has an allowlist {list:?} that is not in parentheses")))?;
            let items: Vec<&str> = inner.split_ascii_whitespace().collect();
            if let Some(bad) = items.iter().find(|i| !matches!(**i, "self" | "*")) {
                return Err(ValueError::new(format!("has an allowlist item {bad:?}; only self and * are supported")));
            }
            out.push(format!("{feature}=({})", items.join(" ")));
        }
        if out.is_empty() {
            return Err(ValueError::new("has no entries"));
        }
        Ok(Self(out.join(", ")))
    }
}
string_newtype_impls!(PermissionsPolicy);
