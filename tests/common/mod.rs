//! Shared set-up for end-to-end deploy tests: a loopback fleet, an inventory for it,
//! SSH transports, a plain HTTP client that reads one response header.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rpcc::core::deploy::{DeploySource, Deployer, FleetTarget, MemoryStore, StateStore};
use rpcc::core::generation::{Generation, Renderer as _};
use rpcc::core::model::Inventory;
use rpcc::core::transport::Transport;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::ssh::{SshPool, SshTarget};
use rpcc_testkit::Fleet;

/// The `rpcc` binary with none of the environment that could change what it does
/// (keys, key file, state, checkpoint, fault injection), warnings logged, no stdin.
pub fn rpcc_cli(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rpcc"));
    c.args(args)
        .env_remove("RPCC_KEYS")
        .env_remove("RPCC_KEY_FILE")
        .env_remove("RPCC_STATE")
        .env_remove("RPCC_ENV")
        .env_remove("RPCC_AUDIT_CHECKPOINT")
        .env_remove("RPCC_FAULT_INJECT")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    c
}

/// A child process killed (and reaped) however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// stdout then stderr of a finished command, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Run `cmd` with `input` on its stdin; its output. A command that refuses its
/// arguments may exit before it reads stdin: that broken pipe is not an error.
pub fn output_with_stdin(mut cmd: std::process::Command, input: &str) -> anyhow::Result<std::process::Output> {
    use std::process::Stdio;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    Ok(child.wait_with_output()?)
}

/// A site block for the test inventory: answers `X-Deploy: <tag>` and serves a health path.
pub fn site(domain: &str, tag: &str) -> String {
    format!(
        "[[sites]]\ndomain = \"{domain}\"\ngroup = \"all\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
         tls = {{ mode = \"off\" }}\nhealth_path = \"/healthz\"\nheaders = {{ X-Deploy = \"{tag}\" }}\n\n"
    )
}

/// [`site`] with a TLS certificate that does not exist on the server: valid input that
/// nginx refuses.
pub fn refused_site(domain: &str, tag: &str) -> String {
    site(domain, tag).replace(
        "tls = { mode = \"off\" }",
        "tls = { mode = \"custom\", cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\", redirect_http = false }",
    )
}

/// The fleet's deploy inventory plus `sites`.
pub fn inventory(fleet: &Fleet, sites: &str) -> Inventory {
    let toml = format!("{}\n{sites}", fleet.deploy_inventory_toml());
    Inventory::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// Render every server.
pub fn render(inv: &Inventory) -> Vec<Arc<Generation>> {
    let r = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    inv.servers.iter().map(|s| Arc::new(r.render(inv, s).expect("render"))).collect()
}

/// One SSH transport per server, from a shared pool.
pub fn transports(pool: &SshPool, inv: &Inventory) -> Vec<Arc<dyn Transport>> {
    inv.servers
        .iter()
        .map(|s| {
            let t = SshTarget::from_server(s, Path::new("/"), None).expect("target");
            pool.transport(t).expect("transport") as Arc<dyn Transport>
        })
        .collect()
}

/// A deployer over an in-memory store with the real HTTP probe.
pub fn deployer(store: Arc<dyn StateStore>) -> Deployer {
    Deployer::new(store, "tester@ci").with_probe(Arc::new(rpcc::monitor::HttpHealthProbe::new(Duration::from_secs(3))))
}

/// A deployer over a fresh [`MemoryStore`].
pub fn memory_deployer() -> (Deployer, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (deployer(store.clone()), store)
}

/// Fleet targets for every server of `inv`.
pub fn targets<'a>(
    inv: &'a Inventory,
    gens: &[Arc<Generation>],
    transports: &[Arc<dyn Transport>],
) -> Vec<FleetTarget<'a>> {
    inv.servers
        .iter()
        .zip(gens)
        .zip(transports)
        .map(|((s, g), t)| FleetTarget {
            server: s,
            sites: inv.sites_for_server(s.name.as_str()).collect(),
            source: DeploySource::Generation(g.clone()),
            transport: t.clone(),
        })
        .collect()
}

/// `GET path` with `Host`, returning (status, value of `X-Deploy`), or None when the
/// connection closes without a response.
pub fn get(port: u16, host: &str, path: &str) -> Option<(u16, Option<String>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let tag = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("X-Deploy: ").or_else(|| l.strip_prefix("x-deploy: ")).map(str::to_owned));
    Some((status, tag))
}

/// The generation `<managed_root>/current` points at, read locally.
pub fn current_generation(managed_root: &Path) -> Option<String> {
    std::fs::read_link(managed_root.join("current"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
}

/// A multi-threaded runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// One loopback server with everything a single-server deploy test needs.
pub struct Bed {
    /// The fleet (one server, `s0`).
    pub fleet: Fleet,
    /// The runtime deploys run on.
    pub rt: tokio::runtime::Runtime,
    /// The SSH pool.
    pub pool: SshPool,
    /// A deployer with the real HTTP probe over `store`.
    pub deployer: Deployer,
    /// The in-memory store.
    pub store: Arc<MemoryStore>,
}

impl Bed {
    /// Start the server.
    pub fn start() -> anyhow::Result<Self> {
        let (deployer, store) = memory_deployer();
        Ok(Self { fleet: Fleet::start(1)?, rt: runtime(), pool: SshPool::new(), deployer, store })
    }

    /// The test server.
    pub fn server(&self) -> &rpcc_testkit::TestServer {
        &self.fleet.servers()[0]
    }

    /// The fleet's deploy inventory plus `sites`.
    pub fn inventory(&self, sites: &str) -> Inventory {
        inventory(&self.fleet, sites)
    }

    /// Render `inv` and deploy it to `s0` with `deployer`.
    pub fn deploy_with(
        &self,
        deployer: &Deployer,
        inv: &Inventory,
    ) -> (Arc<Generation>, rpcc::core::deploy::ServerReport) {
        let generation = render(inv).remove(0);
        let transport = transports(&self.pool, inv).remove(0);
        let sites: Vec<&rpcc::core::model::Site> = inv.sites_for_server("s0").collect();
        let report = self.rt.block_on(deployer.deploy(&*transport, &inv.servers[0], &sites, generation.clone()));
        (generation, report)
    }

    /// Render and deploy `sites` with the bed's deployer.
    pub fn deploy(&self, sites: &str) -> (Arc<Generation>, rpcc::core::deploy::ServerReport) {
        self.deploy_with(&self.deployer, &self.inventory(sites))
    }

    /// The generation `current` points at.
    pub fn current(&self) -> Option<String> {
        current_generation(&self.server().managed_root())
    }
}

/// A self-signed certificate `<dir>/<name>.pem` and its key `<name>.key` for `cn` (also
/// the subjectAltName), made by `openssl req -newkey <key>` (`rsa:2048`, or `ec` for
/// P-256), valid `days`, readable by the test nginx (which runs as the fleet's user).
pub fn self_signed_files(dir: &Path, name: &str, cn: &str, key: &str, days: u32) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", key]);
    if key == "ec" {
        cmd.args(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    let out = cmd
        .args(["-nodes", "-days", &days.to_string(), "-subj", &format!("/CN={cn}")])
        .args(["-addext", &format!("subjectAltName=DNS:{cn}")])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .output()?;
    anyhow::ensure!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    for f in [format!("{name}.key"), format!("{name}.pem")] {
        std::process::Command::new("chmod").arg("0644").arg(dir.join(f)).status()?;
    }
    Ok(())
}

/// A keyring and an archive signing key sealed with it, made by the CLI as an operator
/// would (`rpcc keys generate`, `rpcc keys signing-key`).
#[allow(dead_code)]
pub struct SigningKey {
    /// The `RPCC_KEYS` value that opens the envelope.
    pub keys: String,
    /// The inventory block: `[deploy]` with `signing_key = "<envelope>"`.
    pub toml: String,
    /// The public key (PEM) the helper verifies with.
    pub public_pem: String,
}

/// A new [`SigningKey`].
#[allow(dead_code)]
pub fn signing_key() -> SigningKey {
    let out = rpcc_cli(&["keys", "generate"]).output().expect("rpcc keys generate");
    assert!(out.status.success(), "{}", output_text(&out));
    let keys = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = rpcc_cli(&["keys", "signing-key"]).env("RPCC_KEYS", &keys).output().expect("rpcc keys signing-key");
    assert!(out.status.success(), "{}", output_text(&out));
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let start = stderr.find("-----BEGIN PUBLIC KEY-----").expect("a public key");
    let public_pem = stderr[start..].to_owned();
    assert!(toml.starts_with("[deploy]\nsigning_key = \"rpcc:v1:"), "{toml}");
    SigningKey { keys, toml, public_pem }
}

#[allow(dead_code)]
/// The helper and sudoers entries this test installs, removed however it ends.
pub struct Installed {
    dir: std::path::PathBuf,
    sudoers: Vec<std::path::PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for f in &self.sudoers {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory a test installs its helper in (root's, under /usr/local/lib).
#[allow(dead_code)]
pub fn helper_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("/usr/local/lib").join(format!("rpcc-helper-test-{}", std::process::id()))
}

/// Install `rpcc helper --conf <dir>/helper.conf`'s output as a root-owned 0755 file, its
/// configuration for `server` of `inventory` and the public key (root, 0644), and a
/// sudoers entry per user allowing exactly that file (checked by `visudo -cf` before it
/// goes live), as `rpcc bootstrap` does.
#[allow(dead_code)]
pub fn install_helper(
    users: &[&str],
    inventory: &str,
    server: &str,
    key: &SigningKey,
) -> anyhow::Result<(Installed, std::path::PathBuf)> {
    let dir = helper_dir();
    let tag = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let mut installed = Installed { dir: dir.clone(), sudoers: Vec::new() };
    std::fs::create_dir_all(&dir)?;
    let helper = dir.join("rpcc-helper");
    let conf = dir.join("helper.conf");
    let public = dir.join("helper.pub");
    let out = rpcc_cli(&["helper", "--conf", conf.to_str().unwrap_or_default()]).output()?;
    assert!(out.status.success() && out.stdout.starts_with(b"#!/bin/sh\n"), "{}", output_text(&out));
    std::fs::write(&helper, &out.stdout)?;
    let inv = rpcc::core::model::Inventory::from_toml_str(inventory)?;
    let server = inv.server(server).expect("the server");
    let conf_text = rpcc::core::deploy::remote::HelperConf::for_server(server, public.to_str()).to_text();
    std::fs::write(&conf, conf_text)?;
    std::fs::write(&public, &key.public_pem)?;
    for (path, mode) in [(&dir, 0o755), (&helper, 0o755), (&conf, 0o644), (&public, 0o644)] {
        std::os::unix::fs::chown(path, Some(0), Some(0))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    for user in users {
        let entry = format!("{user} ALL=(root) NOPASSWD: {}\n", helper.display());
        let candidate = dir.join(format!("sudoers-{user}"));
        std::fs::write(&candidate, entry)?;
        let check = std::process::Command::new("visudo").arg("-cf").arg(&candidate).output()?;
        assert!(check.status.success(), "{}", output_text(&check));
        let live = std::path::PathBuf::from("/etc/sudoers.d").join(format!("{tag}-{user}"));
        std::fs::copy(&candidate, &live)?;
        std::fs::set_permissions(&live, std::os::unix::fs::PermissionsExt::from_mode(0o440))?;
        installed.sudoers.push(live);
    }
    Ok((installed, helper))
}
