//! The Unix user test sessions log in as.

use crate::KitError;

/// The default test user, created by `scripts/setup-host` with a `/bin/sh` shell.
pub const DEFAULT_TEST_USER: &str = "rpcc-test";

/// Users that `scripts/setup-host` creates with bash and zsh login shells; the kit's
/// sshd lets them log in with the fleet's client key, so remote quoting is tested under
/// dash (the default user's `/bin/sh`), bash and zsh.
pub const SHELL_TEST_USERS: &[&str] = &["rpcc-bash", "rpcc-zsh"];

/// A local user account read from `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Login shell.
    pub shell: String,
}

impl TestUser {
    /// `RPCC_TESTKIT_USER`, else `rpcc-test` if it exists, else the current user.
    pub fn resolve() -> Result<Self, KitError> {
        if let Ok(name) = std::env::var("RPCC_TESTKIT_USER") {
            return Self::lookup(&name)?.ok_or_else(|| KitError::Missing {
                program: format!("user {name}"),
                hint: "RPCC_TESTKIT_USER names a user that does not exist".into(),
            });
        }
        if let Some(user) = Self::lookup(DEFAULT_TEST_USER)? {
            return Ok(user);
        }
        let uid = current_uid()?;
        Self::by_uid(uid)?.ok_or_else(|| KitError::Missing {
            program: format!("passwd entry for uid {uid}"),
            hint: "cannot find the current user".into(),
        })
    }

    /// The test user's password, when `scripts/setup-host` gave it one (a random value
    /// in a root-only file: `$RPCC_TESTKIT_PASSWORD_FILE` or
    /// `~/.cache/rpcc-tools/rpcc-test.password`).
    pub fn password(&self) -> Option<String> {
        let file = std::env::var("RPCC_TESTKIT_PASSWORD_FILE").map(std::path::PathBuf::from).unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/rpcc-tools/rpcc-test.password")
        });
        (self.name == DEFAULT_TEST_USER)
            .then(|| std::fs::read_to_string(file).ok())
            .flatten()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Look a user up by name.
    pub fn lookup(name: &str) -> Result<Option<Self>, KitError> {
        Ok(read_passwd()?.into_iter().find(|u| u.name == name))
    }

    fn by_uid(uid: u32) -> Result<Option<Self>, KitError> {
        Ok(read_passwd()?.into_iter().find(|u| u.uid == uid))
    }
}

fn read_passwd() -> Result<Vec<TestUser>, KitError> {
    let text = std::fs::read_to_string("/etc/passwd")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(TestUser {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                shell: f[6].to_owned(),
            })
        })
        .collect())
}

/// The real uid of this process, from `/proc/self/status`.
pub(crate) fn current_uid() -> Result<u32, KitError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| KitError::Missing {
            program: "/proc/self/status".into(),
            hint: "cannot read the current uid".into(),
        })
}
