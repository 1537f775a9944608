//! A fleet of real sshd + nginx "servers" on loopback.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::KitError;
use crate::process::{ManagedProcess, fleet_dir, sweep_orphans};
use crate::user::{TestUser, current_uid};

const SSHD: &str = "/usr/sbin/sshd";
const NGINX: &str = "/usr/sbin/nginx";
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// One test server: an sshd and an nginx master of its own.
#[derive(Debug)]
pub struct TestServer {
    name: String,
    fleet_dir: PathBuf,
    ssh_port: u16,
    http_port: u16,
    https_port: u16,
    host_key_pin: String,
    host_key_public: String,
    dir: PathBuf,
    nginx_prefix: PathBuf,
    user: TestUser,
    sshd: ManagedProcess,
    nginx: ManagedProcess,
}

impl TestServer {
    /// The server's name in the fleet (`s0`, `s1`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address to connect to (always `127.0.0.1`).
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// sshd's port.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// nginx's plain-HTTP port (answers `GET /__testkit` with `ok`).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The SSH login user.
    pub fn user(&self) -> &str {
        &self.user.name
    }

    /// The pinned host key as rpcc's inventory writes it: `ssh-ed25519 SHA256:…`.
    pub fn host_key_pin(&self) -> &str {
        &self.host_key_pin
    }

    /// The host public key line (`ssh-ed25519 AAAA…`).
    pub fn host_key_public(&self) -> &str {
        &self.host_key_public
    }

    /// nginx's prefix directory (holds `nginx.conf`, `logs/`, and `rpcc/`, the managed
    /// root for deploys).
    pub fn nginx_prefix(&self) -> &Path {
        &self.nginx_prefix
    }

    /// The main nginx config the master was started with.
    pub fn nginx_conf(&self) -> PathBuf {
        self.nginx_prefix.join("nginx.conf")
    }

    /// A free loopback port reserved for this server's TLS listener (nothing listens
    /// on it until a deployed config does).
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// The name its host key is recorded under in [`Fleet::known_hosts`] (OpenSSH's
    /// `HostKeyAlias`).
    pub fn host_key_alias(&self) -> String {
        host_key_alias(&self.name)
    }

    /// The pid file of the running nginx master.
    pub fn nginx_pid_file(&self) -> PathBuf {
        self.nginx_prefix.join("logs/nginx.pid")
    }

    /// The directory rpcc manages on this server (`<prefix>/rpcc`).
    pub fn managed_root(&self) -> PathBuf {
        self.nginx_prefix.join("rpcc")
    }

    /// Lay the server out as `rpcc bootstrap` leaves a real one for an installed helper
    /// (run as root): the nginx root (the prefix, its `nginx.conf`) and the managed root
    /// (created when missing) become root's, 0755/0644, and every directory above them
    /// is checked to be root's alone; `logs/` and `tmp/`, which the running master (the
    /// test user) writes, stay the user's. The managed root's `acme` webroot is the
    /// user's, as bootstrap makes it.
    pub fn hand_config_to_root(&self) -> Result<(), KitError> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let managed = self.managed_root();
        std::fs::create_dir_all(managed.join("acme"))?;
        for (path, mode) in [(&self.nginx_prefix, 0o755), (&managed, 0o755)] {
            std::os::unix::fs::chown(path, Some(0), Some(0))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        let main = self.nginx_prefix.join("nginx.conf");
        if main.is_file() && !main.is_symlink() {
            std::os::unix::fs::chown(&main, Some(0), Some(0))?;
            std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o644))?;
        }
        for entry in std::fs::read_dir(&managed)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == "acme") {
                chown_tree(&path, &self.user)?;
            } else {
                chown_tree(&path, &TestUser { name: "root".into(), uid: 0, gid: 0, shell: "/bin/sh".into() })?;
            }
        }
        let mut dir = self.nginx_prefix.parent();
        while let Some(d) = dir {
            let meta = std::fs::metadata(d)?;
            let sticky = meta.mode() & 0o1000 != 0;
            if meta.uid() != 0 || (meta.mode() & 0o022 != 0 && !sticky) {
                return Err(KitError::Command {
                    what: "handing the config to root".into(),
                    detail: format!("{} is not root's alone (uid {}, mode {:o})", d.display(), meta.uid(), meta.mode()),
                });
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// sshd's log (LogLevel VERBOSE): shows every authentication attempt.
    pub fn sshd_log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// nginx's error log.
    pub fn nginx_error_log(&self) -> PathBuf {
        self.nginx_prefix.join("logs/error.log")
    }

    /// PID of the nginx master.
    pub fn nginx_pid(&self) -> u32 {
        self.nginx.pid()
    }

    /// PID of the sshd listener.
    pub fn sshd_pid(&self) -> u32 {
        self.sshd.pid()
    }

    /// `nginx -t` for this server's prefix and config, as an argv for a remote shell.
    pub fn nginx_test_argv(&self) -> Vec<String> {
        let p = self.nginx_prefix.display().to_string();
        vec![
            NGINX.into(),
            "-t".into(),
            "-p".into(),
            format!("{p}/"),
            "-c".into(),
            self.nginx_conf().display().to_string(),
            "-e".into(),
            self.nginx_error_log().display().to_string(),
        ]
    }

    /// Stop sshd (the connection target then refuses).
    pub fn stop_sshd(&mut self) {
        self.sshd.stop();
    }

    /// Restart sshd on the same port, optionally with a freshly generated host key
    /// (as after a server reinstall). As with a real sshd, established sessions keep
    /// running; cut them with a [`crate::FaultProxy`] to force reconnects.
    pub fn restart_sshd(&mut self, new_host_key: bool) -> Result<(), KitError> {
        self.sshd.stop();
        if new_host_key {
            let key = self.dir.join("ssh_host_ed25519_key");
            let _ = std::fs::remove_file(&key);
            let _ = std::fs::remove_file(self.dir.join("ssh_host_ed25519_key.pub"));
            keygen(&key, "ed25519")?;
            let pub_path = self.dir.join("ssh_host_ed25519_key.pub");
            self.host_key_pin = fingerprint(&pub_path, "ssh-ed25519")?;
            self.host_key_public =
                std::fs::read_to_string(&pub_path)?.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        }
        let mut sshd = spawn_sshd(&self.name, &self.fleet_dir, &self.dir)?;
        wait_ready(&mut sshd, self.ssh_port, &format!("{} sshd", self.name), &self.dir.join("sshd.log"))?;
        self.sshd = sshd;
        Ok(())
    }
}

/// A set of test servers, stopped on drop.
#[derive(Debug)]
pub struct Fleet {
    servers: Vec<TestServer>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    // Dropped last: the servers' processes stop before their files go.
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Start `n` servers. Fails with a clear error if sshd or nginx is missing.
    pub fn start(n: usize) -> Result<Self, KitError> {
        for (program, package) in
            [(SSHD, "openssh-server"), (NGINX, "nginx-light"), ("/usr/bin/ssh-keygen", "openssh-client")]
        {
            if !Path::new(program).exists() {
                return Err(KitError::Missing {
                    program: program.into(),
                    hint: format!("apt-get install {package}, or run scripts/setup-host"),
                });
            }
        }
        sweep_orphans();
        let (guard, dir) = fleet_dir()?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let user = TestUser::resolve()?;
        let running_as_root = current_uid()? == 0;
        if running_as_root {
            std::fs::create_dir_all("/run/sshd")?;
        }
        let client_key = dir.join("client_key");
        keygen(&client_key, "ed25519")?;
        let client_pub = std::fs::read_to_string(dir.join("client_key.pub"))?;
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, &client_pub)?;
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644))?;

        let mut servers = Vec::with_capacity(n);
        let mut known = String::new();
        for i in 0..n {
            let server = start_server(&format!("s{i}"), &dir, &user, &authorized, running_as_root)?;
            known.push_str(&format!("{} {}\n", host_key_alias(&server.name), server.host_key_public));
            servers.push(server);
        }
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, known)?;
        Ok(Self { servers, client_key, known_hosts, _dir: guard })
    }

    /// The servers.
    pub fn servers(&self) -> &[TestServer] {
        &self.servers
    }

    /// Mutable access (e.g. to stop an sshd).
    pub fn servers_mut(&mut self) -> &mut [TestServer] {
        &mut self.servers
    }

    /// The private key authorized on every server (ed25519, no passphrase).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// Generate another client key pair of `kind` (`ed25519`, `ecdsa`, `rsa`),
    /// optionally encrypted with `passphrase`, authorize it on every server and return
    /// the private key's path.
    pub fn add_client_key(&self, kind: &str, passphrase: Option<&str>) -> Result<PathBuf, KitError> {
        let dir = self.client_key.parent().unwrap_or(Path::new("/tmp"));
        let n = std::fs::read_dir(dir)?.count();
        let path = dir.join(format!("client_key_{kind}_{n}"));
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", passphrase.unwrap_or(""), "-C", "rpcc-testkit", "-f"]).arg(&path);
        if kind == "rsa" {
            cmd.args(["-b", "3072"]);
        }
        run(&mut cmd, "ssh-keygen")?;
        let public = std::fs::read_to_string(
            path.with_file_name(format!("{}.pub", path.file_name().and_then(|f| f.to_str()).unwrap_or_default())),
        )?;
        let mut authorized = std::fs::OpenOptions::new().append(true).open(dir.join("authorized_keys"))?;
        std::io::Write::write_all(&mut authorized, public.as_bytes())?;
        Ok(path)
    }

    /// An OpenSSH `known_hosts` file with each server's key under its host-key alias.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// An OpenSSH client command for `server`, strict host-key checking on, ready for
    /// `.arg(remote command)`.
    pub fn ssh(&self, server: &TestServer) -> Command {
        self.ssh_via(server, server.ssh_port)
    }

    /// Like [`Fleet::ssh`] but connecting to `port` on loopback (e.g. a [`crate::FaultProxy`]
    /// in front of the server); the host key is still checked against the server's.
    pub fn ssh_via(&self, server: &TestServer, port: u16) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&self.client_key)
            .args(["-p", &port.to_string()])
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-o")
            .arg(format!("HostKeyAlias={}", host_key_alias(&server.name)))
            .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg(format!("{}@{}", server.user.name, server.host()))
            .stdin(Stdio::null());
        cmd
    }

    /// [`Fleet::inventory_servers_toml`] without any `host_key` line: servers that were
    /// never enrolled.
    pub fn unenrolled_inventory_toml(&self) -> String {
        self.inventory_servers_toml().lines().filter(|l| !l.starts_with("host_key")).map(|l| format!("{l}\n")).collect()
    }

    /// [`Fleet::inventory_servers_toml`] for deploys: each server's nginx settings point
    /// at its running master (pid file, error log, no `user` directive since the test
    /// nginx is not root) and its own loopback ports (`listen_http` is the port the
    /// master already listens on, `listen_https` a reserved free port).
    pub fn deploy_inventory_toml(&self) -> String {
        let mut toml = self.inventory_servers_toml();
        for s in &self.servers {
            let prefix = s.nginx_prefix.display().to_string();
            toml = toml.replace(
                &format!("managed_root = \"{prefix}/rpcc\", reload = \"signal\""),
                &format!(
                    "managed_root = \"{prefix}/rpcc\", reload = \"signal\", user = \"\", log_dir = \"{prefix}/logs\", \
                     pid = \"{prefix}/logs/nginx.pid\", listen_http = \"127.0.0.1:{}\", listen_https = \"127.0.0.1:{}\"",
                    s.http_port, s.https_port
                ),
            );
        }
        toml
    }

    /// [`Fleet::deploy_inventory_toml`] (or text built from it) with single-parse
    /// activation (`nginx.validate = "master"`) on every server.
    pub fn single_parse(inventory_toml: &str) -> String {
        inventory_toml.replace("reload = \"signal\",", "reload = \"signal\", validate = \"master\",")
    }

    /// An rpcc inventory (TOML) describing this fleet: one group `all` with every
    /// server, the fleet's key, pinned host keys, nginx under each server's prefix.
    pub fn inventory_servers_toml(&self) -> String {
        let mut out = String::new();
        for s in &self.servers {
            out.push_str(&format!(
                "[[servers]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\nauth = {{ key_file = \"{}\" }}\nnginx = {{ root = \"{}\", managed_root = \"{}\", reload = \"signal\" }}\n\n",
                s.name,
                s.ssh_port,
                s.user.name,
                s.host_key_pin,
                self.client_key.display(),
                s.nginx_prefix.display(),
                s.managed_root().display(),
            ));
        }
        let names: Vec<String> = self.servers.iter().map(|s| format!("\"{}\"", s.name)).collect();
        out.push_str(&format!("[[groups]]\nname = \"all\"\nservers = [{}]\n", names.join(", ")));
        out
    }
}

fn host_key_alias(name: &str) -> String {
    format!("rpcc-testkit-{name}")
}

fn run(cmd: &mut Command, what: &str) -> Result<String, KitError> {
    let out = cmd.output().map_err(|e| KitError::Command { what: what.into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(KitError::Command { what: what.into(), detail: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn keygen(path: &Path, kind: &str) -> Result<(), KitError> {
    run(
        Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", "rpcc-testkit", "-f"]).arg(path),
        "ssh-keygen",
    )
    .map(drop)
}

/// `ssh-keygen -lf` prints `256 SHA256:… comment (ED25519)`.
fn fingerprint(pub_path: &Path, algorithm: &str) -> Result<String, KitError> {
    let line = run(Command::new("ssh-keygen").args(["-E", "sha256", "-lf"]).arg(pub_path), "ssh-keygen -lf")?;
    let fp = line
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .ok_or_else(|| KitError::Command { what: "ssh-keygen -lf".into(), detail: line.clone() })?;
    Ok(format!("{algorithm} {fp}"))
}

fn free_port() -> Result<u16, KitError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn chown_tree(path: &Path, user: &TestUser) -> Result<(), KitError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), user)?;
        }
    }
    Ok(())
}

fn start_server(
    name: &str,
    fleet: &Path,
    user: &TestUser,
    authorized: &Path,
    as_root: bool,
) -> Result<TestServer, KitError> {
    let dir = fleet.join(name);
    std::fs::create_dir_all(&dir)?;
    let host_key = dir.join("ssh_host_ed25519_key");
    keygen(&host_key, "ed25519")?;
    let pub_path = dir.join("ssh_host_ed25519_key.pub");
    let host_key_pin = fingerprint(&pub_path, "ssh-ed25519")?;
    let host_key_public = std::fs::read_to_string(&pub_path)?.split_whitespace().take(2).collect::<Vec<_>>().join(" ");

    let prefix = dir.join("nginx");
    for sub in ["conf", "logs", "tmp", "rpcc"] {
        std::fs::create_dir_all(prefix.join(sub))?;
    }
    if as_root && user.uid != 0 {
        chown_tree(&prefix, user)?;
    }

    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        let ssh_port = free_port()?;
        let http_port = free_port()?;
        let https_port = free_port()?;
        match start_processes(name, fleet, &dir, &prefix, user, authorized, &host_key, ssh_port, http_port, as_root) {
            Ok((sshd, nginx)) => {
                return Ok(TestServer {
                    name: name.to_owned(),
                    fleet_dir: fleet.to_path_buf(),
                    ssh_port,
                    http_port,
                    https_port,
                    host_key_pin,
                    host_key_public,
                    dir,
                    nginx_prefix: prefix,
                    user: user.clone(),
                    sshd,
                    nginx,
                });
            }
            Err(e) if e.is_retryable() => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| KitError::Start { what: name.into(), detail: "no attempt made".into() }))
}

#[allow(clippy::too_many_arguments)]
fn start_processes(
    name: &str,
    fleet: &Path,
    dir: &Path,
    prefix: &Path,
    user: &TestUser,
    authorized: &Path,
    host_key: &Path,
    ssh_port: u16,
    http_port: u16,
    as_root: bool,
) -> Result<(ManagedProcess, ManagedProcess), KitError> {
    write_sshd_config(dir, user, authorized, host_key, ssh_port)?;
    let mut sshd = spawn_sshd(name, fleet, dir)?;

    let p = prefix.display();
    std::fs::write(
        prefix.join("nginx.conf"),
        format!(
            "# rpcc-testkit: a hand-made config, as on a fresh server\n\
             daemon off;\nworker_processes 1;\npid {p}/logs/nginx.pid;\nerror_log {p}/logs/error.log notice;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {p}/tmp/body;\n    proxy_temp_path {p}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {p}/tmp/fastcgi;\n    uwsgi_temp_path {p}/tmp/uwsgi;\n    scgi_temp_path {p}/tmp/scgi;\n\
             \x20   server {{\n        listen 127.0.0.1:{http_port} default_server;\n        location = /__testkit {{ return 200 \"ok\\n\"; }}\n\
             \x20       location / {{ return 404; }}\n    }}\n}}\n"
        ),
    )?;
    if as_root && user.uid != 0 {
        chown_tree(prefix, user)?;
    }
    let mut cmd = Command::new(NGINX);
    cmd.arg("-p")
        .arg(format!("{p}/"))
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(prefix.join("logs/error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if as_root && user.uid != 0 {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.gid);
    }
    let mut nginx = ManagedProcess::spawn(cmd, &format!("{name} nginx"), fleet)?;

    wait_ready(&mut sshd, ssh_port, &format!("{name} sshd"), &dir.join("sshd.log"))?;
    wait_ready(&mut nginx, http_port, &format!("{name} nginx"), &prefix.join("logs/error.log"))?;
    Ok((sshd, nginx))
}

fn write_sshd_config(
    dir: &Path,
    user: &TestUser,
    authorized: &Path,
    host_key: &Path,
    ssh_port: u16,
) -> Result<(), KitError> {
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {ssh_port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {auth}\n\
             AllowUsers {user}\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication yes\nPermitEmptyPasswords no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 200:30:400\n\
             LogLevel VERBOSE\nSubsystem sftp internal-sftp\nPrintMotd no\nAcceptEnv none\n",
            hk = host_key.display(),
            pid = dir.join("sshd.pid").display(),
            auth = authorized.display(),
            // `rpcc-boot-*`: users a bootstrap test creates (and removes) itself.
            user = std::iter::once(user.name.as_str())
                .chain(crate::user::SHELL_TEST_USERS.iter().copied())
                .chain(std::iter::once("rpcc-boot-*"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    )?;
    Ok(())
}

fn spawn_sshd(name: &str, fleet: &Path, dir: &Path) -> Result<ManagedProcess, KitError> {
    let mut cmd = Command::new(SSHD);
    cmd.args(["-D", "-f"])
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ManagedProcess::spawn(cmd, &format!("{name} sshd"), fleet)
}

fn wait_ready(proc: &mut ManagedProcess, port: u16, what: &str, log: &Path) -> Result<(), KitError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = proc.exited() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(KitError::Start { what: what.into(), detail: format!("exited with {status}: {tail}") });
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KitError::Start {
                what: what.into(),
                detail: format!("port {port} not listening after {READY_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
