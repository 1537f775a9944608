//! The systemd notification protocol (sd_notify(3)) without libsystemd: `READY=1`,
//! `WATCHDOG=1`, `STOPPING=1` as datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). Without the variable (not under systemd) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The service manager's socket, if rpcc runs under one.
pub(crate) struct SdNotify {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl SdNotify {
    /// From `$NOTIFY_SOCKET`; unusable values are logged and ignored.
    pub(crate) fn from_env() -> Self {
        let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else { return Self { target: None } };
        let raw = raw.to_string_lossy().into_owned();
        let addr = match raw.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => SocketAddr::from_pathname(&raw),
        };
        match (addr, UnixDatagram::unbound()) {
            (Ok(addr), Ok(sock)) => Self { target: Some((sock, addr)) },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(socket = %raw, error = %e, "NOTIFY_SOCKET unusable; no readiness or watchdog notifications");
                Self { target: None }
            }
        }
    }

    /// Send one state line (`READY=1`, `WATCHDOG=1`, `STATUS=…`).
    pub(crate) fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    /// The watchdog period systemd expects pings within (`$WATCHDOG_USEC`, when meant for
    /// this process).
    pub(crate) fn watchdog() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        match std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) if pid != std::process::id() => None,
            _ => Some(Duration::from_micros(usec)),
        }
    }
}
