//! Who holds a server's lock: this process's `user@host` for audit entries, and lock
//! holder names `<user>@<host>:<pid>:<nonce>`, which tell a dead process of this machine
//! (its lock may be broken) from a live or remote one.

/// `user@host` of this process, for audit entries.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{}", user.trim(), host.trim())
}

/// The name of this process's real uid, from `/proc/self/status` and `/etc/passwd`.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Lock holder names travel as shell arguments and live in a lock file: keep them to
/// `A-Z a-z 0-9 . _ : @ -`.
pub(super) fn holder_name(actor: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let clean: String = actor
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._:@-".contains(c) { c } else { '_' })
        .take(64)
        .collect();
    format!("{clean}:{}:{nonce:08x}", std::process::id())
}

/// Whether lock holder `other` was an rpcc process on this machine that has exited.
/// Holder names are `<user>@<host>:<pid>:<nonce>`; `me` is ours.
pub(super) fn holder_is_dead_here(other: &str, me: &str) -> bool {
    fn split(h: &str) -> Option<(&str, &str)> {
        let mut parts = h.rsplitn(3, ':');
        let _nonce = parts.next()?;
        let pid = parts.next()?;
        let actor = parts.next()?;
        Some((actor.rsplit_once('@').map_or(actor, |(_, host)| host), pid))
    }
    let (Some((other_host, pid)), Some((my_host, _))) = (split(other), split(me)) else { return false };
    other_host == my_host
        && !pid.is_empty()
        && pid.chars().all(|c| c.is_ascii_digit())
        && pid != std::process::id().to_string()
        && !std::path::Path::new("/proc").join(pid).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_holders_of_this_machine_are_breakable() {
        let me = holder_name("ops@cp-1");
        let host = me.split(':').next().unwrap().to_owned();
        assert!(holder_is_dead_here(&format!("{host}:999999999:ab"), &me), "no such pid");
        assert!(!holder_is_dead_here(&format!("{host}:1:ab"), &me), "pid 1 is alive");
        assert!(!holder_is_dead_here("ops@cp-2:999999999:ab", &me), "another machine");
        assert!(!holder_is_dead_here(&me, &me), "ourselves");
        assert!(!holder_is_dead_here("garbage", &me));
    }

    #[test]
    fn holder_names_are_shell_and_lockfile_safe() {
        let h = holder_name("ops team@cp-1; rm -rf /");
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c)), "{h}");
    }

    #[test]
    fn the_local_actor_names_a_user() {
        assert!(!local_actor().starts_with("unknown@"));
    }
}
