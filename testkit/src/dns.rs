//! [`Resolver`]: a real DNS server (dnsmasq) on loopback answering fixed names, stopped
//! with its process group on drop.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::KitError;
use crate::process::{ManagedProcess, fleet_dir};

/// dnsmasq on `127.0.0.1:<port>` with only the records given (no upstream, no hosts file).
#[derive(Debug)]
pub struct Resolver {
    process: ManagedProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A loopback port free for both UDP and TCP right now.
fn free_udp_and_tcp_port() -> Result<u16, KitError> {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

impl Resolver {
    /// Start it: each `(name, Some(ip))` answers `ip` for the name and its subdomains;
    /// `(name, None)` answers NXDOMAIN.
    pub fn start(records: &[(&str, Option<IpAddr>)]) -> Result<Self, KitError> {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or_else(|| KitError::Missing {
                program: "dnsmasq".into(),
                hint: "Debian package dnsmasq-base".into(),
            })?;
        // dnsmasq binds UDP and TCP on its port; a port free for UDP may be in use for TCP
        // (another test's connection), and dnsmasq then exits: try a few ports.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_udp_and_tcp_port()?;
            match Self::spawn(bin, port, records) {
                Ok(r) => return Ok(r),
                Err(e) => last = e.to_string(),
            }
        }
        Err(KitError::Start { what: "dnsmasq".into(), detail: last })
    }

    fn spawn(bin: &str, port: u16, records: &[(&str, Option<IpAddr>)]) -> Result<Self, KitError> {
        let (dir, path) = fleet_dir()?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
        ])
        .args(["--pid-file", "--conf-file=/dev/null"])
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (name, ip) in records {
            cmd.arg(format!("--address=/{name}/{}", ip.map(|i| i.to_string()).unwrap_or_default()));
        }
        let process = ManagedProcess::spawn(cmd, "dnsmasq", &path)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut resolver = Self { process, addr, _dir: dir };
        // Ready once the port is taken (binding it ourselves fails).
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(addr).is_ok() {
            if let Some(status) = resolver.process.exited() {
                return Err(KitError::Start {
                    what: "dnsmasq".into(),
                    detail: format!("exited ({status}) on port {port}"),
                });
            }
            if Instant::now() > deadline {
                return Err(KitError::Start { what: "dnsmasq".into(), detail: format!("not listening on {addr}") });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(resolver)
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
