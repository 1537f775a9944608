//! The `Transport` role: run a fixed program with arguments on a server, and upload
//! bytes to it. `LocalTransport` runs on this machine; `rpcc-ssh` provides
//! `SshTransport`. The `TransportPool` role hands out the transport of each server of
//! an inventory (`rpcc-ssh`'s `SshTransportPool`; `LocalTransport` for a control plane
//! on the nginx server itself).
//!
//! Commands are argument vectors, never shell strings: a transport that needs a shell
//! (SSH) quotes every argument itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Server;
use crate::value::RemotePath;

/// A program and its arguments. The program must be non-empty and hold no NUL or
/// newline; arguments may hold anything but NUL (transports quote them).
#[derive(Clone, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    /// Build an argument vector.
    ///
    /// ```
    /// # use rpcc_core::transport::Argv;
    /// let argv = Argv::new("nginx", ["-t", "-c", "/etc/nginx/nginx.conf"]).unwrap();
    /// assert_eq!(argv.program(), "nginx");
    /// assert!(Argv::new("rm\n-rf", Vec::<String>::new()).is_err());
    /// ```
    pub fn new<I, S>(program: &str, args: I) -> Result<Self, TransportError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if program.is_empty() || program.contains(['\0', '\n', '\r']) {
            return Err(TransportError::InvalidCommand {
                reason: "the program name is empty or holds NUL or a newline".into(),
            });
        }
        let mut v = vec![program.to_owned()];
        for a in args {
            let a = a.into();
            if a.contains('\0') {
                return Err(TransportError::InvalidCommand { reason: "an argument holds a NUL byte".into() });
            }
            v.push(a);
        }
        Ok(Self(v))
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.0[0]
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    /// Program and arguments.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The command line a POSIX shell (dash, bash, zsh, ksh) parses back into exactly
    /// this argument vector: every word single-quoted, so no expansion of any kind
    /// (variables, globs, braces, `~`, history `!`, `^`, `=cmd`) applies.
    ///
    /// ```
    /// # use rpcc_core::transport::Argv;
    /// let argv = Argv::new("find", ["{/,-delete}", "it's"]).unwrap();
    /// assert_eq!(argv.shell_line(), r#"'find' '{/,-delete}' 'it'\''s'"#);
    /// ```
    pub fn shell_line(&self) -> String {
        let mut line = String::with_capacity(self.0.iter().map(|a| a.len() + 3).sum());
        for (i, word) in self.0.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            push_single_quoted(&mut line, word);
        }
        line
    }
}

/// Append `word` to `out` in single quotes; a `'` inside becomes `'\''` (close the
/// quote, an escaped quote, open again), which every POSIX shell reads the same way,
/// zsh with `RC_QUOTES` included.
fn push_single_quoted(out: &mut String, word: &str) {
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

impl fmt::Debug for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// What to run and with which limits.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// The command.
    pub argv: Argv,
    /// Bytes for the command's standard input (closed after them).
    pub stdin: Option<Vec<u8>>,
    /// The command is stopped after this long.
    pub timeout: Duration,
    /// At most this many bytes of stdout and of stderr are kept.
    pub output_limit: usize,
}

impl ExecRequest {
    /// A request with a 60 s timeout and a 1 MiB output cap.
    pub fn new(argv: Argv) -> Self {
        Self { argv, stdin: None, timeout: Duration::from_secs(60), output_limit: 1 << 20 }
    }

    /// Set the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set stdin.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by a signal (name or number as text).
    Signal(String),
}

/// A finished command.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout (up to the cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (up to the cap).
    pub stderr: Vec<u8>,
    /// True if stdout or stderr was cut at the cap.
    pub truncated: bool,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Could not connect (refused, reset, unreachable).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `user@host:port` or `local`.
        target: String,
        /// Why.
        reason: String,
    },
    /// The server's host key was refused.
    #[error("host key of {target} refused: {reason}")]
    HostKey {
        /// Server.
        target: String,
        /// Why (unknown, changed, other algorithm).
        reason: String,
    },
    /// Authentication failed (no secret is included).
    #[error("authentication to {target} failed with {method}")]
    Auth {
        /// Server.
        target: String,
        /// Method tried (key file, password, agent).
        method: String,
    },
    /// A connect, auth or command timeout fired.
    #[error("{what} on {target} timed out after {after:?}")]
    Timeout {
        /// Server.
        target: String,
        /// What timed out.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// The command itself was refused before running.
    #[error("invalid command: {reason}")]
    InvalidCommand {
        /// Why.
        reason: String,
    },
    /// An I/O error while running or uploading.
    #[error("I/O error on {target}: {source}")]
    Io {
        /// Server.
        target: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection dropped mid-operation.
    #[error("connection to {target} lost: {reason}")]
    Disconnected {
        /// Server.
        target: String,
        /// Why.
        reason: String,
    },
    /// The server's credentials could not be opened (no keyring, wrong key, altered
    /// envelope); nothing was sent.
    #[error("credentials for {target} unusable: {source}")]
    Credentials {
        /// Server.
        target: String,
        /// Why.
        #[source]
        source: crate::keyring::KeyringError,
    },
}

impl TransportError {
    /// Transient failures (connect refused/reset, timeouts, dropped connections) may be
    /// retried; auth, host-key and invalid-command failures never.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. } | Self::Disconnected { .. })
    }
}

/// Run commands on and upload files to one server.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// A short description of the target for messages (`deploy@203.0.113.10:22`).
    fn target(&self) -> String;

    /// Run a command and collect its output. A non-zero exit is an `Ok(Output)`.
    async fn exec(&self, request: ExecRequest) -> Result<Output, TransportError>;

    /// Write `bytes` to `path` with `mode`: a temporary name in the same directory,
    /// then a rename, so a reader never sees a partial file.
    async fn upload(&self, path: &RemotePath, bytes: &[u8], mode: u32) -> Result<(), TransportError>;

    /// Create directory `dir` holding `files` (relative paths), all or nothing: the
    /// tree is written under a temporary sibling name and renamed into place, so `dir`
    /// either does not exist or is complete. Fails if `dir` already exists.
    ///
    /// The default uploads file by file; transports with a round-trip cost (SSH)
    /// override it with one stream.
    async fn upload_tree(&self, dir: &RemotePath, files: &[TreeFile<'_>]) -> Result<(), TransportError> {
        let staging = RemotePath::parse(&format!("{dir}.rpcc-staging"))
            .map_err(|e| TransportError::InvalidCommand { reason: format!("staging path: {e}") })?;
        let run = |argv: Argv| self.exec(ExecRequest::new(argv));
        let out = run(Argv::new("rm", ["-rf", staging.as_str()])?).await?;
        if !out.success() {
            return Err(TransportError::InvalidCommand { reason: format!("cannot clear {staging}") });
        }
        for f in files {
            let path = staging
                .join(f.path)
                .map_err(|e| TransportError::InvalidCommand { reason: format!("{}: {e}", f.path) })?;
            if let Some((parent, _)) = path.as_str().rsplit_once('/') {
                run(Argv::new("mkdir", ["-p", parent])?).await?;
            }
            self.upload(&path, f.bytes, f.mode).await?;
        }
        let out = run(Argv::new("mv", ["-T", staging.as_str(), dir.as_str()])?).await?;
        if out.success() {
            Ok(())
        } else {
            Err(TransportError::InvalidCommand {
                reason: format!("cannot move the tree into {dir}: {}", String::from_utf8_lossy(&out.stderr).trim()),
            })
        }
    }
}

/// Role: the transport that reaches each server of an inventory, created on first use
/// and shared after (one connection per server for a pooled transport).
pub trait TransportPool: Send + Sync + fmt::Debug {
    /// The transport of `server`. `Err` when it cannot be set up (no pinned host key,
    /// a credential that does not open); reaching the server is the transport's job.
    fn transport(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError>;
}

/// One file of a tree upload.
#[derive(Clone, Copy, Debug)]
pub struct TreeFile<'a> {
    /// Relative path (validated: no `..`, not absolute).
    pub path: &'a str,
    /// Contents.
    pub bytes: &'a [u8],
    /// Permission bits.
    pub mode: u32,
}

/// A tar archive (ustar, deterministic headers) of `files`, in memory: how trees travel
/// to a server as bytes on stdin.
///
/// ```
/// # use rpcc_core::transport::{tar_archive, TreeFile};
/// let tar = tar_archive(&[TreeFile { path: "a/b.conf", bytes: b"x", mode: 0o644 }]).unwrap();
/// assert_eq!(tar.len() % 512, 0);
/// ```
pub fn tar_archive(files: &[TreeFile<'_>]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::with_capacity(files.iter().map(|f| f.bytes.len() + 1024).sum()));
    builder.mode(tar::HeaderMode::Deterministic);
    for f in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(f.bytes.len() as u64);
        header.set_mode(f.mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, f.path, f.bytes)?;
    }
    builder.into_inner()
}
