//! HTTP-01 across a real fleet: two sshd + nginx servers serve a site over plain HTTP
//! (rpcc's config serves `/.well-known/acme-challenge/` from `<managed root>/acme`), the
//! answer is uploaded to both over the pooled SSH transports, a real Pebble validates it
//! through a real DNS server, and the certificate is issued; the answers are gone from
//! both servers afterwards. Published on one server only, the CA — sent by DNS to the
//! other — refuses: every serving server must answer.

mod common;

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use common::{deployer, inventory, render, runtime, site, targets, transports};
use rpcc::acme::{AcmeClient, AcmeError, ChallengeResponder, WebrootResponder, WebrootTarget};
use rpcc::core::deploy::{DeploymentState, MemoryStore, RolloutPolicy};
use rpcc::ssh::SshPool;
use rpcc_testkit::{AcmeOptions, AcmeServer, Fleet, Resolver};

/// `GET path` with `Host` on `127.0.0.1:port`: status and body.
fn fetch(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Wraps the real responder and checks, right after each publish, that every server
/// answers the token with the key authorization.
struct Checked {
    inner: WebrootResponder,
    ports: Vec<u16>,
    seen: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ChallengeResponder for Checked {
    async fn publish(&self, domain: &str, token: &str, key_authorization: &str) -> Result<(), String> {
        self.inner.publish(domain, token, key_authorization).await?;
        for port in &self.ports {
            let got = fetch(*port, domain, &format!("/.well-known/acme-challenge/{token}"));
            if got.as_ref().map(|(s, b)| (*s, b.as_str())) != Some((200, key_authorization)) {
                return Err(format!("server on port {port} answers {got:?}"));
            }
        }
        self.seen.lock().map_err(|e| e.to_string())?.push(token.to_owned());
        Ok(())
    }
    async fn withdraw(&self, domain: &str, token: &str) {
        self.inner.withdraw(domain, token).await;
    }
}

#[test]
fn http01_answered_by_every_serving_server_gets_a_certificate() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let inv = inventory(&fleet, &site("app.acme.test", "v1"));
    let rt = runtime();
    let pool = SshPool::new();
    let tr = transports(&pool, &inv);
    let gens = render(&inv);
    let report = rt.block_on(
        deployer(Arc::new(MemoryStore::new())).rollout(&targets(&inv, &gens, &tr), &RolloutPolicy::default()),
    );
    assert!(report.servers.iter().all(|r| r.state == DeploymentState::Succeeded), "{report:?}");

    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    // DNS sends the CA to s0 (its HTTP port).
    let s0_port = fleet.servers()[0].http_port();
    let acme = AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port: s0_port, always_valid: false })?;
    let webroots: Vec<WebrootTarget> = inv
        .servers
        .iter()
        .zip(&tr)
        .map(|(s, t)| WebrootTarget {
            server: s.name.to_string(),
            transport: t.clone(),
            webroot: s.nginx.managed_root.join("acme").expect("webroot"),
        })
        .collect();
    let ports: Vec<u16> = fleet.servers().iter().map(|s| s.http_port()).collect();

    rt.block_on(async {
        let (client, _) = AcmeClient::create_account(&acme.directory_url(), Some(acme.api_ca()), &[]).await?;
        let both =
            Checked { inner: WebrootResponder::new(webroots.clone()), ports: ports.clone(), seen: Default::default() };
        let cert = client.issue(&["app.acme.test"], &both).await?;
        assert!(cert.chain_pem.contains("BEGIN CERTIFICATE"));
        let tokens = both.seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(tokens.len(), 1);
        // Withdrawn from every server.
        for port in &ports {
            let got = fetch(*port, "app.acme.test", &format!("/.well-known/acme-challenge/{}", tokens[0]));
            assert_eq!(got.map(|(s, _)| s), Some(404), "port {port}");
        }

        // Published on s1 only: the CA, sent to s0, cannot validate.
        let only_s1 = WebrootResponder::new(vec![webroots[1].clone()]);
        let err = client.issue(&["app.acme.test"], &only_s1).await.unwrap_err();
        assert!(matches!(err, AcmeError::ChallengeFailed { ref domain, .. } if domain == "app.acme.test"), "{err}");
        anyhow::Ok(())
    })?;
    Ok(())
}
