//! How the HTTP clients describe a failed exchange: the kind and the root cause, never
//! the URL (a Bot API URL holds its token).

/// `timed out`, `cannot connect`, `TLS handshake or connection failed` or `request failed`.
pub(crate) fn kind(e: &reqwest::Error, tls: bool) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() && tls {
        "TLS handshake or connection failed"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    }
}

/// The kind followed by the innermost cause (`cannot connect: Connection refused …`).
pub(crate) fn describe(e: &reqwest::Error, tls: bool) -> String {
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let kind = kind(e, tls);
    if cause.is_empty() { kind.to_owned() } else { format!("{kind}: {cause}") }
}
