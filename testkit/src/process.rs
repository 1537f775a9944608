//! Child processes that are always stopped: each runs in its own process group, which
//! is signalled on drop; a sweep kills groups left by test binaries that were killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::KitError;

/// Prefix of every fleet directory in the temp dir.
pub(crate) const FLEET_DIR_PREFIX: &str = "rpcc-fleet-";

/// A running child process, stopped with its whole process group on drop.
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    child: Child,
    name: String,
    stop_signal: libc::c_int,
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals a process group; it has no memory
        // effects. The group is one this kit created (process_group(0) at spawn).
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl ManagedProcess {
    /// Spawn `cmd` in a new process group and record its PID in the fleet dir.
    pub(crate) fn spawn(cmd: Command, name: &str, fleet_dir: &Path) -> Result<Self, KitError> {
        Self::spawn_with_stop_signal(cmd, name, fleet_dir, libc::SIGTERM)
    }

    /// [`Self::spawn`], stopped with `stop_signal` first (SIGINT: PostgreSQL's fast
    /// shutdown) instead of SIGTERM.
    pub(crate) fn spawn_with_stop_signal(
        mut cmd: Command,
        name: &str,
        fleet_dir: &Path,
        stop_signal: libc::c_int,
    ) -> Result<Self, KitError> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| KitError::Start { what: name.to_owned(), detail: e.to_string() })?;
        let mut pids = std::fs::OpenOptions::new().create(true).append(true).open(fleet_dir.join("pids"))?;
        std::io::Write::write_all(&mut pids, format!("{}\n", child.id()).as_bytes())?;
        Ok(Self { child, name: name.to_owned(), stop_signal })
    }

    /// The process id (also its process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if it already exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stop the group: its stop signal (SIGTERM), then SIGKILL after 3 s.
    pub(crate) fn stop(&mut self) {
        if self.exited().is_some() {
            signal_group(self.child.id(), libc::SIGKILL);
            return;
        }
        signal_group(self.child.id(), self.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                // Reap stragglers of the group (e.g. nginx workers) too.
                signal_group(self.child.id(), libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(process = %self.name, pid = self.child.id(), "did not stop on SIGTERM; killing");
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill process groups recorded by fleets whose owning process is gone, and remove
/// their directories. A group is only killed if its leader's command line still
/// mentions that fleet's directory (guards against PID reuse).
pub(crate) fn sweep_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_fleet = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(FLEET_DIR_PREFIX));
        if !is_fleet {
            continue;
        }
        let owner: Option<u32> =
            std::fs::read_to_string(dir.join("owner.pid")).ok().and_then(|s| s.trim().parse().ok());
        let Some(owner) = owner else { continue };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        for pid in std::fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let needle = dir.to_string_lossy();
            if String::from_utf8_lossy(&cmdline).contains(needle.as_ref()) {
                signal_group(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Create a fresh fleet directory owned by this process.
pub(crate) fn fleet_dir() -> Result<(tempfile::TempDir, PathBuf), KitError> {
    let dir = tempfile::Builder::new().prefix(FLEET_DIR_PREFIX).tempdir()?;
    std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())?;
    let path = dir.path().to_path_buf();
    Ok((dir, path))
}
