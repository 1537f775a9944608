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

/// The command line of `pid`, arguments joined by spaces (empty once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_child() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        assert!(child_pids(me).contains(&child.id()));
        assert!(cmdline(child.id()).starts_with("sleep 5"), "{}", cmdline(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!child_pids(me).contains(&child.id()));
    }
}
