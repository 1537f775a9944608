//! # rpcc-testkit
//!
//! Real servers for rpcc's tests, on loopback, started and stopped by the test itself:
//!
//! - [`Fleet::start`] starts `n` "servers", each a real OpenSSH `sshd` (own port, own
//!   ed25519 host key, the fleet's client key authorized, `MaxSessions` 64) and its own
//!   `nginx` master with a private prefix in a temp dir, so a test deploys to it as to a
//!   real server without touching the machine's `/etc/nginx`.
//! - [`PgServer`] starts a throwaway PostgreSQL cluster (the distribution's package)
//!   on loopback.
//! - [`FaultProxy`] sits between a client and a server and forwards, cuts after N
//!   bytes, stalls or resets connections, switchable at run time.
//!
//! Every process is started in its own process group and killed by PID when the
//! [`Fleet`] drops (also when a test panics). Processes left by a test binary that was
//! killed outright are swept by the next [`Fleet::start`].
//!
//! Sessions log in as the user `rpcc-test` (a plain `/bin/sh` login shell, created by
//! `scripts/setup-host`), so remote commands do not pay for an interactive shell's
//! start-up; set `RPCC_TESTKIT_USER` to choose another, and without either the kit falls
//! back to the current user.
//!
//! ```no_run
//! let fleet = rpcc_testkit::Fleet::start(2).unwrap();
//! for server in fleet.servers() {
//!     let out = fleet.ssh(server).args(server.nginx_test_argv()).output().unwrap();
//!     assert!(out.status.success());
//! }
//! ```

mod acme;
mod dns;
mod error;
mod fleet;
mod glances;
mod postgres;
mod process;
mod procfs;
mod proxy;
mod user;
mod wasm;

pub use acme::{AcmeOptions, AcmeServer};
pub use dns::Resolver;
pub use error::KitError;
pub use fleet::{Fleet, TestServer};
pub use glances::GlancesServer;
pub use postgres::{PG_USER, PgServer};
pub use procfs::{Paused, ProcStat, child_pids, children_of, cmdline, pause, proc_stat};
pub use proxy::{FaultMode, FaultProxy};
pub use user::{SHELL_TEST_USERS, TestUser};
pub use wasm::wasm_plugins;

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM` …) in KiB, 0 if unreadable:
/// what the benchmarks report as memory.
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
