//! Self-signed certificates (`tls.mode = "self_signed"`): generated here, per site, with
//! the same shape as an issued one so they are stored and deployed the same way.

use secrecy::SecretString;

use crate::{AcmeError, IssuedCertificate};

/// Year, month, day (UTC) of Unix seconds `secs`.
fn ymd(secs: i64) -> (i32, u8, u8) {
    let (y, m, d, ..) = rpcc_core::time::civil_utc(secs);
    (i32::try_from(y).unwrap_or(2000), u8::try_from(m).unwrap_or(1), u8::try_from(d).unwrap_or(1))
}

/// A self-signed ECDSA P-256 certificate for `domains` (the first is the subject's
/// common name; all are subject alternative names), valid from yesterday for `days`
/// days. The key is generated here and returned as a secret.
pub fn self_signed(domains: &[&str], days: u32) -> Result<IssuedCertificate, AcmeError> {
    let fail = |e: rcgen::Error| AcmeError::Generate(e.to_string());
    let first = domains.first().ok_or_else(|| AcmeError::Generate("no names to certify".into()))?;
    let mut params =
        rcgen::CertificateParams::new(domains.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>()).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, *first);
    let now = crate::now_unix();
    let (y, m, d) = ymd(now - 86_400);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(now + i64::from(days) * 86_400);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(IssuedCertificate {
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        chain_pem: cert.pem(),
        key_pem: SecretString::from(key.serialize_pem()),
    })
}
