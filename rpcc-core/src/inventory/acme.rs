//! Decoding `[acme]`.

use std::path::PathBuf;

use super::decoder::Decoder;
use super::node::Node;
use crate::model::AcmeSettings;
use crate::validate::FieldPath;
use crate::value::{RedirectUrl, ValueError};

const ACME_FIELDS: &[&str] = &["directory", "contact", "ca_root", "renew_days"];

fn directory(s: &str) -> Result<String, ValueError> {
    if !s.starts_with("https://") {
        return Err(ValueError::new("must be an https:// URL (ACME servers are only reached over HTTPS)"));
    }
    RedirectUrl::parse(s).map(|_| s.to_owned())
}

fn contact(s: &str) -> Result<String, ValueError> {
    let bad = || ValueError::new("is not a mailto: address (e.g. mailto:ops@example.com)");
    let addr = s.strip_prefix("mailto:").ok_or_else(bad)?;
    let (local, domain) = addr.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    if !local_ok || crate::value::DomainName::parse(domain).is_err() {
        return Err(bad());
    }
    Ok(s.to_owned())
}

fn ca_root(s: &str) -> Result<PathBuf, ValueError> {
    if s.is_empty() || s.contains('\0') || s.len() > 4096 {
        return Err(ValueError::new("is not a file path"));
    }
    Ok(PathBuf::from(s))
}

pub(crate) fn decode_acme(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<AcmeSettings> {
    let def = AcmeSettings::default();
    let mut t = d.table(node, path, ACME_FIELDS)?;
    let directory = t.get("directory").map_or(Some(def.directory), |(n, p)| d.parse(n, &p, directory));
    let contact = t.get("contact").map_or(Some(Vec::new()), |(n, p)| d.array(n, &p, |d, n, p| d.parse(n, p, contact)));
    let ca_root = match t.get("ca_root") {
        Some((n, p)) => d.parse(n, &p, ca_root).map(Some),
        None => Some(None),
    };
    let renew_days = t.get("renew_days").map_or(Some(def.renew_days), |(n, p)| {
        d.int(n, &p, 1, 89, "a number of days").and_then(|v| u32::try_from(v).ok())
    });
    t.finish(d);
    Some(AcmeSettings { directory: directory?, contact: contact?, ca_root: ca_root?, renew_days: renew_days? })
}
