//! Reading a certificate chain into the record the state store keeps.

use rpcc_core::certs::{CertificateOrigin, CertificateRecord};
use rpcc_core::generation::Sha256Digest;

use crate::AcmeError;

/// The first certificate (the leaf) of a PEM chain, as DER.
pub(crate) fn leaf_der(chain_pem: &str) -> Result<Vec<u8>, AcmeError> {
    let bad = |why: String| AcmeError::Protocol(format!("certificate chain: {why}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(bad(format!("starts with a {} block, not a CERTIFICATE", pem.label)));
    }
    Ok(pem.contents)
}

/// The SHA-256 fingerprint of a chain's leaf (what a TLS client sees the server present).
pub fn leaf_fingerprint(chain_pem: &str) -> Result<Sha256Digest, AcmeError> {
    leaf_der(chain_pem).map(|der| Sha256Digest::of(&der))
}

/// The record of `site`'s certificate `chain_pem` (leaf first): fingerprint, issuer,
/// validity and names read from the leaf. A chain whose leaf does not cover every name
/// of `names` is refused (a CA or generator bug must not reach a server).
pub fn certificate_record(
    site: &str,
    names: &[String],
    origin: CertificateOrigin,
    chain_pem: &str,
) -> Result<CertificateRecord, AcmeError> {
    use x509_parser::prelude::*;
    let der = leaf_der(chain_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| AcmeError::Protocol(format!("certificate for {site}: unreadable: {e}")))?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(missing) = names.iter().find(|n| !sans.iter().any(|s| s == &n.to_ascii_lowercase())) {
        return Err(AcmeError::Protocol(format!(
            "the certificate for {site} does not cover {missing} (it names {})",
            sans.join(", ")
        )));
    }
    Ok(CertificateRecord::new(
        site,
        names.to_vec(),
        origin,
        chain_pem.to_owned(),
        Sha256Digest::of(&der),
        cert.issuer().to_string(),
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_that_misses_a_name_is_refused() -> Result<(), AcmeError> {
        let c = crate::self_signed(&["a.example.com", "b.example.com"], 10)?;
        let names = vec!["a.example.com".to_owned(), "b.example.com".to_owned()];
        let rec = certificate_record("a.example.com", &names, CertificateOrigin::SelfSigned, &c.chain_pem)?;
        assert_eq!(rec.names, names);
        assert_eq!(rec.fingerprint, leaf_fingerprint(&c.chain_pem)?);
        assert!((9..=10).contains(&rec.days_left(crate::now_unix())), "{}", rec.days_left(crate::now_unix()));
        let more = vec!["a.example.com".to_owned(), "c.example.com".to_owned()];
        let err = certificate_record("a.example.com", &more, CertificateOrigin::SelfSigned, &c.chain_pem).unwrap_err();
        assert!(err.to_string().contains("does not cover c.example.com"), "{err}");
        assert!(leaf_fingerprint("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        Ok(())
    }
}
