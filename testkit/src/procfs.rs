//! Reading processes from `/proc` (nginx masters and their workers), for tests and
//! benches that watch reloads.

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// State letter (`R` running, `S` sleeping, `D` disk wait, `Z` zombie …).
    pub state: char,
    /// Parent process id.
    pub parent: u32,
    /// Start time, in clock ticks after boot.
    pub start_ticks: u64,
}

/// `/proc/<pid>/stat` of one process (`None` once it is gone).
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The children of `parent`, by pid.
pub fn children_of(parent: u32) -> Vec<ProcStat> {
    let mut kids: Vec<ProcStat> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.parent == parent)
        .collect();
    kids.sort_unstable_by_key(|p| p.pid);
    kids
}

/// The pids of `parent`'s children, sorted.
pub fn child_pids(parent: u32) -> Vec<u32> {
    children_of(parent).into_iter().map(|p| p.pid).collect()
}

/// The command line of `pid`, arguments joined by spaces (empty once it is gone, and
/// for a moment while it is being exec'd: the kernel lets a `vfork` parent, and so
/// `Command::spawn`, go on before it has placed the new program's arguments).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim_end().to_owned())
        .unwrap_or_default()
}

/// A process held stopped (SIGSTOP); it continues (SIGCONT) when this is dropped, also
/// when a test panics. For tests that must act while a process is between two steps.
#[derive(Debug)]
pub struct Paused {
    pid: u32,
}

/// Stops `pid` until the returned guard is dropped. `None` if it could not be signalled
/// (gone, or not ours).
pub fn pause(pid: u32) -> Option<Paused> {
    send_signal(pid, libc::SIGSTOP).then_some(Paused { pid })
}

impl Drop for Paused {
    fn drop(&mut self) {
        send_signal(self.pid, libc::SIGCONT);
    }
}

fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) on one positive pid has no memory effects.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, signal) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_child() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        let child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let mut child = Reap(child);
        let pid = child.0.id();
        assert!(child_pids(me).contains(&pid));
        // spawn returns as soon as the exec has taken over the child's memory, which
        // is before the kernel has set up its arguments: wait for them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut line = cmdline(pid);
        while line.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
            line = cmdline(pid);
        }
        assert!(line.starts_with("sleep 5"), "command line of the child: {line:?}");
        let _ = child.0.kill();
        let _ = child.0.wait();
        assert!(!child_pids(me).contains(&pid));
    }

    #[test]
    fn a_paused_process_is_stopped_until_the_guard_is_dropped() {
        let child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let pid = child.id();
        let mut child = Reap(child);
        let state = |pid| proc_stat(pid).map(|s| s.state);
        let wait_for = |want: char| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while state(pid) != Some(want) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            state(pid)
        };
        let paused = pause(pid).expect("our child can be paused");
        assert_eq!(wait_for('T'), Some('T'), "stopped");
        drop(paused);
        assert_eq!(wait_for('S'), Some('S'), "running again");
        assert!(pause(0).is_none() && pause(u32::MAX).is_none(), "no group or invalid pid is signalled");
        let _ = child.0.kill();
    }

    /// Kills and reaps a child when dropped, also when an assertion fails.
    struct Reap(std::process::Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
