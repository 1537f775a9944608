//! Per-server local locks: `flock` on `<db>.locks/<server>.lock`. The kernel drops the
//! lock when the holder exits, so a crashed `rpcc apply` never leaves one behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;
use std::time::Duration;

use rpcc_core::deploy::{LocalLock, StoreError};

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend { reason: format!("{what} {}: {e}", path.display()), retryable: false }
}

/// Take the lock for `server`, waiting up to `wait` while another process holds it.
pub(crate) async fn acquire(dir: &Path, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
    if server.is_empty() || !server.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(StoreError::Corrupt { reason: format!("{server:?} is not a server name") });
    }
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let path = dir.join(format!("{server}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("cannot open", &path, e))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut logged = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                let record = |f: &mut File| -> std::io::Result<()> {
                    f.set_len(0)?;
                    f.rewind()?;
                    writeln!(f, "{holder} pid {}", std::process::id())
                };
                record(&mut file).map_err(|e| io("cannot write", &path, e))?;
                return Ok(LocalLock::new(file));
            }
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut who));
                let who = who.trim().to_owned();
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::LockTimeout { server: server.to_owned(), holder: who, waited: wait });
                }
                if !logged {
                    tracing::info!(server, holder = %who, "waiting for another rpcc process on this machine");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", &path, e)),
        }
    }
}
