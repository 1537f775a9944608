//! Self-signed certificates, checked by openssl: the names, self-issued, not a CA, the
//! key is the certificate's, valid now and for the days asked; the key never in `Debug`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use secrecy::ExposeSecret as _;

fn openssl(args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn self_signed_certificates_cover_the_names_and_match_their_key() -> anyhow::Result<()> {
    let cert = rpcc_acme::self_signed(&["app.example.com", "www.app.example.com", "*.cdn.example.com"], 90)?;
    assert!(!format!("{cert:?}").contains("PRIVATE"));
    let text = openssl(&["x509", "-noout", "-text"], &cert.chain_pem)?;
    for name in ["DNS:app.example.com", "DNS:www.app.example.com", "DNS:*.cdn.example.com"] {
        assert!(text.contains(name), "{name}: {text}");
    }
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let subject = openssl(&["x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253"], &cert.chain_pem)?;
    assert!(
        subject.contains("subject=CN=app.example.com") && subject.contains("issuer=CN=app.example.com"),
        "{subject}"
    );
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey"], &cert.chain_pem)?,
        openssl(&["pkey", "-pubout"], cert.key_pem.expose_secret())?
    );
    assert!(openssl(&["pkey", "-noout", "-text"], cert.key_pem.expose_secret())?.contains("prime256v1"));
    // Valid now, still valid in 88 days, no longer in 92.
    openssl(&["x509", "-noout", "-checkend", "0"], &cert.chain_pem)?;
    openssl(&["x509", "-noout", "-checkend", &(88 * 86_400).to_string()], &cert.chain_pem)?;
    assert!(openssl(&["x509", "-noout", "-checkend", &(92 * 86_400).to_string()], &cert.chain_pem).is_err());
    assert!(rpcc_acme::self_signed(&[], 90).is_err());
    Ok(())
}
