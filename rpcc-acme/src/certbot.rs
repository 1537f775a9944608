//! [`CertbotClient`]: `certbot certonly --webroot` on one server, for operators who
//! already run certbot. rpcc serves the webroot (`<managed root>/acme`) on every server,
//! runs certbot over the server's transport with its state under
//! `<managed root>/certbot` (never `certbot --nginx`, which would edit configs behind
//! rpcc's back), and reads the certificate back to store and deploy it like any other.

use std::sync::Arc;
use std::time::Duration;

use rpcc_core::transport::{Argv, ExecRequest, Transport};
use rpcc_core::value::RemotePath;
use secrecy::SecretString;

use crate::{AcmeError, IssuedCertificate};

/// certbot on one server.
#[derive(Clone)]
pub struct CertbotClient {
    server: String,
    transport: Arc<dyn Transport>,
    managed_root: RemotePath,
    directory: String,
    ca_bundle: Option<String>,
    email: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for CertbotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertbotClient").field("server", &self.server).field("directory", &self.directory).finish()
    }
}

impl CertbotClient {
    /// certbot on `server` (reached through `transport`), for the CA at `directory`.
    pub fn new(server: &str, transport: Arc<dyn Transport>, managed_root: RemotePath, directory: &str) -> Self {
        Self {
            server: server.to_owned(),
            transport,
            managed_root,
            directory: directory.to_owned(),
            ca_bundle: None,
            email: None,
            timeout: Duration::from_secs(300),
        }
    }

    /// Trust this PEM bundle (a path on the server) for the CA's API (test CAs).
    pub fn with_ca_bundle(mut self, path: &str) -> Self {
        self.ca_bundle = Some(path.to_owned());
        self
    }

    /// Register the account with this e-mail address (otherwise without one).
    pub fn with_email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    fn path(&self, rel: &str) -> Result<RemotePath, AcmeError> {
        let mut p = self.managed_root.clone();
        for seg in rel.split('/') {
            p = p.join(seg).map_err(|e| AcmeError::Certbot { server: self.server.clone(), detail: e.to_string() })?;
        }
        Ok(p)
    }

    async fn run(&self, argv: Argv, timeout: Duration) -> Result<Vec<u8>, AcmeError> {
        let fail = |detail: String| AcmeError::Certbot { server: self.server.clone(), detail };
        let out =
            self.transport.exec(ExecRequest::new(argv).timeout(timeout)).await.map_err(|e| fail(e.to_string()))?;
        if out.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // certbot's own explanation is the last lines it printed.
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        Err(fail(tail[tail.len().saturating_sub(6)..].join(" / ")))
    }

    /// `certbot certonly --webroot` for `names` under the certificate name `cert_name`
    /// (the site's id), then the chain and key read back.
    pub async fn issue(&self, cert_name: &str, names: &[&str]) -> Result<IssuedCertificate, AcmeError> {
        let fail = |detail: String| AcmeError::Certbot { server: self.server.clone(), detail };
        if cert_name.is_empty() || !cert_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(fail(format!("{cert_name:?} is not a certificate name")));
        }
        let webroot = self.path("acme")?;
        let config = self.path("certbot/config")?;
        let mut args: Vec<String> = Vec::new();
        if let Some(bundle) = &self.ca_bundle {
            args.push(format!("REQUESTS_CA_BUNDLE={bundle}"));
        }
        args.extend(["certbot", "certonly", "--webroot", "-w", webroot.as_str()].map(str::to_owned));
        args.extend(["--cert-name".to_owned(), cert_name.to_owned()]);
        for n in names {
            args.extend(["-d".to_owned(), (*n).to_owned()]);
        }
        let (work, logs) = (self.path("certbot/work")?, self.path("certbot/logs")?);
        args.extend(
            [
                "--server",
                &self.directory,
                "--non-interactive",
                "--agree-tos",
                "--key-type",
                "ecdsa",
                // rpcc calls certbot only when a certificate is due: renew now.
                "--force-renewal",
                "--config-dir",
                config.as_str(),
                "--work-dir",
                work.as_str(),
                "--logs-dir",
                logs.as_str(),
            ]
            .map(str::to_owned),
        );
        match &self.email {
            Some(e) => args.extend(["-m".to_owned(), e.clone()]),
            None => args.push("--register-unsafely-without-email".to_owned()),
        }
        // The webroot rpcc's config serves; certbot wants it to exist.
        let mkdir = Argv::new("mkdir", ["-p", webroot.as_str()]).map_err(|e| fail(e.to_string()))?;
        self.run(mkdir, Duration::from_secs(30)).await?;
        let argv = Argv::new("env", args).map_err(|e| fail(e.to_string()))?;
        self.run(argv, self.timeout).await?;
        let read = |file: &str| -> Result<Argv, AcmeError> {
            let p = self.path(&format!("certbot/config/live/{cert_name}/{file}"))?;
            Argv::new("cat", [p.as_str()]).map_err(|e| fail(e.to_string()))
        };
        let chain = self.run(read("fullchain.pem")?, Duration::from_secs(30)).await?;
        let key = self.run(read("privkey.pem")?, Duration::from_secs(30)).await?;
        let text =
            |b: Vec<u8>| String::from_utf8(b).map_err(|_| fail("certbot wrote a file that is not PEM text".into()));
        Ok(IssuedCertificate {
            domains: names.iter().map(|n| (*n).to_owned()).collect(),
            chain_pem: text(chain)?,
            key_pem: SecretString::from(text(key)?),
        })
    }
}
