//! [`PgServer`]: a real PostgreSQL server from the distribution's package, on loopback
//! with a throwaway data directory (`initdb` + `postgres`, as the test user when the
//! tests run as root: PostgreSQL refuses to run as root), stopped by PID on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::KitError;
use crate::process::{ManagedProcess, fleet_dir};
use crate::user::{TestUser, current_uid};

/// The superuser role of the test cluster (trust authentication on loopback only).
pub const PG_USER: &str = "rpcc";

/// A running PostgreSQL cluster on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct PgServer {
    process: ManagedProcess,
    port: u16,
    bin: PathBuf,
    run_as: Option<TestUser>,
    _dir: tempfile::TempDir,
}

/// Where the server programs are: `RPCC_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu), else `/usr/pgsql-<version>/bin`
/// (RHEL family), else `PATH`.
fn bin_dir() -> Result<PathBuf, KitError> {
    if let Some(dir) = std::env::var_os("RPCC_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for (root, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = std::fs::read_dir(root) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok()) else { continue };
            let bin = e.path().join("bin");
            if bin.join("initdb").exists() && bin.join("postgres").exists() {
                found.push((version, bin));
            }
        }
    }
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).find(|d| d.join("initdb").exists()))
        .unwrap_or_default();
    on_path.ok_or_else(|| KitError::Missing {
        program: "initdb / postgres".into(),
        hint: "install PostgreSQL (scripts/setup-host: apt-get install postgresql) or set RPCC_PG_BIN".into(),
    })
}

impl PgServer {
    /// Initialise a cluster in a temporary directory and start it (at most 60 s).
    pub fn start() -> Result<Self, KitError> {
        let bin = bin_dir()?;
        let (dir, path) = fleet_dir()?;
        let run_as = if current_uid()? == 0 {
            let user = TestUser::resolve()?;
            (user.uid != 0).then_some(user)
        } else {
            None
        };
        let data = path.join("pgdata");
        let sockets = path.join("pgsock");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&sockets)?;
        if let Some(user) = &run_as {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            for d in [&data, &sockets] {
                std::os::unix::fs::chown(d, Some(user.uid), Some(user.gid))?;
            }
        }
        let mut initdb = Self::command(&bin, "initdb", run_as.as_ref());
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .stdin(Stdio::null());
        let out = initdb.output().map_err(|e| KitError::Start { what: "initdb".into(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(KitError::Start {
                what: "initdb".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut cmd = Self::command(&bin, "postgres", run_as.as_ref());
            cmd.arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(&sockets)
                // A throwaway cluster: durability off, enough connections for parallel tests.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(path.join("postgres.log"))?));
            let mut process = ManagedProcess::spawn_with_stop_signal(cmd, "postgres", &path, libc::SIGINT)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = process.exited() {
                    let log = std::fs::read_to_string(path.join("postgres.log")).unwrap_or_default();
                    last = format!("postgres exited ({status}) on port {port}: {}", log.trim());
                    break;
                }
                if Self::ready(&bin, port) {
                    return Ok(Self { process, port, bin, run_as, _dir: dir });
                }
                if Instant::now() > deadline {
                    return Err(KitError::Start {
                        what: "postgres".into(),
                        detail: format!("not ready on {port} after 60 s"),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(KitError::Start { what: "postgres".into(), detail: last })
    }

    fn command(bin: &Path, program: &str, run_as: Option<&TestUser>) -> Command {
        let mut cmd = Command::new(bin.join(program));
        if let Some(user) = run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid).gid(user.gid).env("HOME", "/tmp");
        }
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    fn ready(bin: &Path, port: u16) -> bool {
        Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", PG_USER, "-d", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id (the postmaster).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A URL for database `db` (`postgres://rpcc@127.0.0.1:<port>/<db>`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a fresh, empty database and return its URL (a unique name per call).
    pub fn fresh_database(&self) -> Result<String, KitError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("rpcc_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Run `sql` in database `db` with psql (stop at the first error); its output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, KitError> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", PG_USER, "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| KitError::Start { what: "psql".into(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(KitError::Command {
                what: format!("psql -c {sql:?}"),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Everything database `url` (one of [`Self::url`]'s) holds, as `pg_dump` prints it
    /// (schema and data): what a backup of it would contain.
    pub fn dump(&self, url: &str) -> Result<String, KitError> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--no-owner", "-d", url])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| KitError::Start { what: "pg_dump".into(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(KitError::Command {
                what: "pg_dump".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the server runs as the kit's test user (the tests run as root).
    pub fn runs_as(&self) -> Option<&TestUser> {
        self.run_as.as_ref()
    }
}
