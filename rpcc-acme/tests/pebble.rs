//! The native ACME client against a real ACME test CA (Pebble, from rpcc-testkit): names
//! resolved by a real DNS server (dnsmasq) to loopback, HTTP-01 answered by an HTTP
//! server on loopback that serves what the responder published. A certificate for a
//! name and its alias, chained to Pebble's root and matching its key; an account reused
//! from its sealed credentials; a challenge the CA cannot validate (nothing deployed,
//! the domain and the CA's reason named, tokens withdrawn); a CA that is down.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use rpcc_acme::{AcmeClient, AcmeError, ChallengeResponder};
use rpcc_testkit::{AcmeOptions, AcmeServer, Resolver};
use secrecy::ExposeSecret as _;

type Answers = Arc<Mutex<HashMap<String, String>>>;

/// An HTTP server on loopback answering `/.well-known/acme-challenge/<token>` from `answers`.
fn challenge_server(answers: Answers) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let token = path.strip_prefix("/.well-known/acme-challenge/").unwrap_or("");
            let answer = answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned();
            let resp = match answer {
                Some(body) => {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                }
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = reader.get_mut().write_all(resp.as_bytes());
        }
    });
    Ok(port)
}

/// Publishes into the map the challenge server reads (or, `broken`, publishes a wrong
/// answer); remembers what was withdrawn.
struct MapResponder {
    answers: Answers,
    broken: bool,
    withdrawn: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ChallengeResponder for MapResponder {
    async fn publish(&self, _domain: &str, token: &str, key_authorization: &str) -> Result<(), String> {
        let value = if self.broken { "not-the-key-authorization".to_owned() } else { key_authorization.to_owned() };
        self.answers.lock().map_err(|e| e.to_string())?.insert(token.to_owned(), value);
        Ok(())
    }
    async fn withdraw(&self, _domain: &str, token: &str) {
        if let Ok(mut a) = self.answers.lock() {
            a.remove(token);
        }
        if let Ok(mut w) = self.withdrawn.lock() {
            w.push(token.to_owned());
        }
    }
}

fn openssl(args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

struct Bed {
    acme: AcmeServer,
    answers: Answers,
    _dns: Resolver,
}

fn bed() -> anyhow::Result<Bed> {
    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    let answers: Answers = Arc::default();
    let http_port = challenge_server(answers.clone())?;
    let acme = AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port, always_valid: false })?;
    Ok(Bed { acme, answers, _dns: dns })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_a_certificate_for_a_name_and_its_alias() -> anyhow::Result<()> {
    let bed = bed()?;
    let (client, credentials) =
        AcmeClient::create_account(&bed.acme.directory_url(), Some(bed.acme.api_ca()), &["mailto:ops@acme.test"])
            .await?;
    assert!(!format!("{client:?}").contains(credentials.expose_secret()));
    let responder = MapResponder { answers: bed.answers.clone(), broken: false, withdrawn: Mutex::default() };
    let cert = client.issue(&["app.acme.test", "www.app.acme.test"], &responder).await?;
    assert_eq!(cert.domains, ["app.acme.test", "www.app.acme.test"]);
    assert!(!format!("{cert:?}").contains("PRIVATE KEY"), "Debug shows no key");
    assert!(cert.chain_pem.matches("BEGIN CERTIFICATE").count() >= 2, "leaf and intermediate");
    let leaf = openssl(&["x509", "-noout", "-ext", "subjectAltName"], &cert.chain_pem)?;
    assert!(leaf.contains("DNS:app.acme.test") && leaf.contains("DNS:www.app.acme.test"), "{leaf}");
    // The key is the certificate's.
    let cert_pub = openssl(&["x509", "-noout", "-pubkey"], &cert.chain_pem)?;
    let key_pub = openssl(&["pkey", "-pubout"], cert.key_pem.expose_secret())?;
    assert_eq!(cert_pub, key_pub);
    // The chain ends at Pebble's root.
    let root = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(bed.acme.api_ca())
        .arg(format!("{}/roots/0", bed.acme.management_url()))
        .output()?;
    anyhow::ensure!(root.status.success(), "{}", String::from_utf8_lossy(&root.stderr));
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("root.pem"), &root.stdout)?;
    let first_end = cert.chain_pem.find("-----END CERTIFICATE-----").expect("leaf") + 25;
    std::fs::write(dir.path().join("leaf.pem"), &cert.chain_pem[..first_end])?;
    std::fs::write(dir.path().join("chain.pem"), &cert.chain_pem[first_end..])?;
    let verify = Command::new("openssl")
        .current_dir(dir.path())
        .args(["verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"])
        .output()?;
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    // Every published answer was withdrawn.
    assert_eq!(responder.withdrawn.lock().map(|w| w.len()).unwrap_or(0), 2);
    assert!(bed.answers.lock().map(|a| a.is_empty()).unwrap_or(false));

    // The same account again, from its stored credentials.
    let again = AcmeClient::from_credentials(&bed.acme.directory_url(), Some(bed.acme.api_ca()), &credentials).await?;
    let second = again.issue(&["api.acme.test"], &responder).await?;
    assert!(openssl(&["x509", "-noout", "-ext", "subjectAltName"], &second.chain_pem)?.contains("DNS:api.acme.test"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_the_ca_cannot_validate_names_the_domain_and_the_reason() -> anyhow::Result<()> {
    let bed = bed()?;
    let (client, _) = AcmeClient::create_account(&bed.acme.directory_url(), Some(bed.acme.api_ca()), &[]).await?;
    let responder = MapResponder { answers: bed.answers.clone(), broken: true, withdrawn: Mutex::default() };
    let err = client.issue(&["shop.acme.test"], &responder).await.unwrap_err();
    match &err {
        AcmeError::ChallengeFailed { domain, problem } => {
            assert_eq!(domain, "shop.acme.test");
            assert!(problem.contains("unauthorized") || problem.contains("key authorization"), "{problem}");
        }
        other => panic!("expected ChallengeFailed, got {other}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(responder.withdrawn.lock().map(|w| w.len()).unwrap_or(0), 1, "the token was withdrawn");

    // A name nobody answers for (NXDOMAIN-free but nothing published): refused too.
    let silent = MapResponder { answers: Arc::default(), broken: false, withdrawn: Mutex::default() };
    let err = client.issue(&["void.acme.test"], &silent).await.unwrap_err();
    assert!(matches!(err, AcmeError::ChallengeFailed { ref domain, .. } if domain == "void.acme.test"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_is_down_is_unavailable_and_retryable() -> anyhow::Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let err = AcmeClient::create_account(&format!("https://127.0.0.1:{port}/dir"), None, &[]).await.unwrap_err();
    assert!(matches!(err, AcmeError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    Ok(())
}
