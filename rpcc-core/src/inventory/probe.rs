//! Decoding a site's `probe = { path, status, body }`.

use super::decoder::Decoder;
use super::node::Node;
use crate::model::ProbeExpectation;
use crate::validate::FieldPath;
use crate::value::{UrlPath, ValueError};

const PROBE_FIELDS: &[&str] = &["path", "status", "body"];

/// Text to find in a response body: 1–256 bytes, printable, no control characters.
fn body_text(s: &str) -> Result<String, ValueError> {
    if s.is_empty() || s.len() > ProbeExpectation::MAX_BODY_TEXT {
        return Err(ValueError::new(format!(
            "must be 1 to {} bytes of text to find in the response body",
            ProbeExpectation::MAX_BODY_TEXT
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(ValueError::new("contains a control character (tabs, newlines and the like are not allowed)"));
    }
    Ok(s.to_owned())
}

pub(crate) fn decode_probe(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<ProbeExpectation> {
    let mut t = d.table(node, path, PROBE_FIELDS)?;
    let probe_path = match t.get("path") {
        Some((n, p)) => d.parse(n, &p, UrlPath::parse).map(Some),
        None => Some(None),
    };
    let status = match t.get("status") {
        Some((n, p)) => d.int(n, &p, 100, 599, "an HTTP status").and_then(|v| u16::try_from(v).ok()).map(Some),
        None => Some(None),
    };
    let body = match t.get("body") {
        Some((n, p)) => d.parse(n, &p, body_text).map(Some),
        None => Some(None),
    };
    t.finish(d);
    Some(ProbeExpectation { path: probe_path?, status: status?, body: body? })
}
