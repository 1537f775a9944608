//! [`AcmeServer`]: a real ACME test CA (Let's Encrypt's Pebble, Debian package `pebble`)
//! on loopback, with its own throwaway TLS CA for the API, stopped with its process
//! group on drop.
//!
//! Pebble validates HTTP-01 challenges by connecting to `<domain>:<http_port>`; names
//! are resolved through the DNS server given (e.g. a [`crate::Resolver`] answering
//! `127.0.0.1`), so challenges reach the kit's nginx servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::KitError;
use crate::process::{ManagedProcess, fleet_dir};

const PEBBLE: &str = "/usr/bin/pebble";

/// Pebble on `127.0.0.1`: the ACME API (`directory_url`) and the management API
/// (`https://127.0.0.1:<management_port>/roots/0` serves the issuing root).
#[derive(Debug)]
pub struct AcmeServer {
    process: ManagedProcess,
    port: u16,
    management_port: u16,
    api_ca: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How Pebble should behave.
#[derive(Debug, Clone, Default)]
pub struct AcmeOptions {
    /// Where it resolves names for validation (`None`: the system resolver).
    pub dns: Option<SocketAddr>,
    /// The port it connects to for HTTP-01 (the kit nginx's HTTP port).
    pub http_port: u16,
    /// Accept every challenge without validating it (`PEBBLE_VA_ALWAYS_VALID`).
    pub always_valid: bool,
}

fn free_port() -> Result<u16, KitError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn openssl(args: &[&str], dir: &Path) -> Result<(), KitError> {
    let out = Command::new("openssl").args(args).current_dir(dir).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KitError::Start { what: "openssl".into(), detail: String::from_utf8_lossy(&out.stderr).into_owned() })
    }
}

/// A throwaway CA and a `localhost`/`127.0.0.1` certificate for Pebble's own HTTPS API.
fn api_certificates(dir: &Path) -> Result<(), KitError> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-days",
        "3",
        "-subj",
        "/CN=rpcc-testkit ACME API CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "api-ca.key",
        "-out",
        "api-ca.pem",
    ]);
    openssl(&ca, dir)?;
    let mut csr = vec!["req"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&["-subj", "/CN=localhost", "-keyout", "api.key", "-out", "api.csr"]);
    openssl(&csr, dir)?;
    std::fs::write(
        dir.join("api.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "api-ca.pem",
            "-CAkey",
            "api-ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            "api.ext",
            "-out",
            "api.pem",
        ],
        dir,
    )
}

impl AcmeServer {
    /// Start Pebble and wait until its API listens (at most 20 s).
    pub fn start(options: &AcmeOptions) -> Result<Self, KitError> {
        if !Path::new(PEBBLE).exists() {
            return Err(KitError::Missing {
                program: PEBBLE.into(),
                hint: "apt-get install pebble, or run scripts/setup-host".into(),
            });
        }
        let (dir, path) = fleet_dir()?;
        api_certificates(&path)?;
        let (port, management_port, tls_port) = (free_port()?, free_port()?, free_port()?);
        let config = format!(
            "{{\"pebble\": {{\"listenAddress\": \"127.0.0.1:{port}\", \"managementListenAddress\": \"127.0.0.1:{management_port}\", \
             \"certificate\": \"{cert}\", \"privateKey\": \"{key}\", \"httpPort\": {http}, \"tlsPort\": {tls_port}, \
             \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false}}}}\n",
            cert = path.join("api.pem").display(),
            key = path.join("api.key").display(),
            http = options.http_port,
        );
        std::fs::write(path.join("pebble.json"), config)?;
        let log = path.join("pebble.log");
        let mut cmd = Command::new(PEBBLE);
        cmd.arg("-config").arg(path.join("pebble.json"));
        if let Some(dns) = options.dns {
            cmd.args(["-dnsserver", &dns.to_string()]);
        }
        cmd.env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log)?));
        if options.always_valid {
            cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
        let mut process = ManagedProcess::spawn(cmd, "pebble", &path)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = process.exited() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(KitError::Start { what: "pebble".into(), detail: format!("exited with {status}: {tail}") });
            }
            if Instant::now() > deadline {
                return Err(KitError::Start { what: "pebble".into(), detail: format!("not listening on {port}") });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { process, port, management_port, api_ca: path.join("api-ca.pem"), log, _dir: dir })
    }

    /// The ACME directory (`https://127.0.0.1:<port>/dir`).
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The management API's base URL (`/roots/0` is the issuing root, `/intermediates/0`).
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.management_port)
    }

    /// The CA certificate (PEM file) that signed the API's TLS certificate: trust it
    /// to talk to the ACME API, nothing else.
    pub fn api_ca(&self) -> &Path {
        &self.api_ca
    }

    /// Pebble's own log (requests, validations).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
