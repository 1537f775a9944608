//! A custom `Notifier` (here: lines appended to a file) routed beside the built-in ones,
//! the way an embedder adds its own channel (a chat system, a ticket queue).
//!
//! `cargo run --example custom_notifier`

#![allow(clippy::print_stdout, clippy::print_stderr)] // example programs report on the terminal

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use rpcc::monitor::{Notification, Notifier, NotifierSet, NotifyError};

/// Appends each notification to a file, one line each.
struct FileNotifier {
    path: PathBuf,
    lock: Mutex<()>,
}

#[async_trait::async_trait]
impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        "file"
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let _one_writer = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = format!("[{}] {}\n", n.group.as_deref().unwrap_or("-"), n.text.replace('\n', " | "));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| NotifyError::Transport { notifier: "file".into(), reason: e.kind().to_string() })
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notifications.log");
    let mut set = NotifierSet::new();
    // Only notifications about servers of the `eu` group reach this notifier.
    set.push(vec!["eu".into()], Box::new(FileNotifier { path: path.clone(), lock: Mutex::new(()) }));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let eu = Notification::deploy("rpcc apply by ops@cp-1: 2 succeeded".into(), Some("eu".into()));
    let us = Notification::deploy("rpcc apply by ops@cp-1: 1 succeeded".into(), Some("us".into()));
    let failed = rt.block_on(async {
        let mut failed = set.deliver(&eu, &["eu".into()]).await;
        failed.extend(set.deliver(&us, &["us".into()]).await);
        failed
    });
    anyhow::ensure!(failed.is_empty(), "{failed:?}");
    let log = std::fs::read_to_string(&path)?;
    print!("{log}");
    anyhow::ensure!(log.lines().count() == 1 && log.contains("[eu]"), "routing: {log}");
    Ok(())
}
