//! [`GlancesServer`]: a real Glances web server (REST API v4) on loopback, from the tools
//! venv that `scripts/setup-host` installs, stopped with its process group on drop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::KitError;
use crate::process::{ManagedProcess, fleet_dir};

/// `glances -w --disable-webui` on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct GlancesServer {
    process: ManagedProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl GlancesServer {
    /// Start it and wait until it listens (at most 30 s).
    pub fn start() -> Result<Self, KitError> {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let venv = std::env::var("RPCC_TOOLS_VENV").unwrap_or_else(|_| format!("{home}/.cache/rpcc-tools"));
        let bin = format!("{venv}/bin/glances");
        if !std::path::Path::new(&bin).exists() {
            return Err(KitError::Missing { program: bin, hint: "run scripts/setup-host (PyPI glances[web])".into() });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (dir, path) = fleet_dir()?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "-w",
            "--disable-webui",
            "--disable-autodiscover",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let process = ManagedProcess::spawn(cmd, "glances", &path)?;
        let server = Self { process, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(KitError::Start {
                    what: "glances".into(),
                    detail: format!("not listening on {port} after 30 s"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The API's port (`http://127.0.0.1:<port>/api/4/`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
