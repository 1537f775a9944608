//! `LocalTransport`: the `Transport` role on this machine, for tests, the demo and a
//! control plane that runs on the nginx server itself.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::model::Server;
use crate::transport::{ExecRequest, ExitStatus, Output, Transport, TransportError, TransportPool};
use crate::value::RemotePath;

/// Runs commands as child processes of this process.
#[derive(Clone, Debug, Default)]
pub struct LocalTransport {
    _private: (),
}

impl LocalTransport {
    /// A local transport.
    pub fn new() -> Self {
        Self::default()
    }

    fn io(source: std::io::Error) -> TransportError {
        TransportError::Io { target: "local".into(), source }
    }
}

/// Every server is this machine: for a control plane that runs on the nginx server
/// itself (and for tests without sshd).
impl TransportPool for LocalTransport {
    fn transport(&self, _server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        Ok(Arc::new(self.clone()))
    }
}

async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, truncated));
        }
        let room = cap.saturating_sub(out.len());
        if room < n {
            truncated = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Environment variables that hold secrets and never reach a child process.
pub const SECRET_ENV: &[&str] = &[crate::keyring::Keyring::ENV_KEYS];

#[async_trait::async_trait]
impl Transport for LocalTransport {
    fn target(&self) -> String {
        "local".into()
    }

    async fn exec(&self, req: ExecRequest) -> Result<Output, TransportError> {
        let mut cmd = tokio::process::Command::new(req.argv.program());
        // Key material from the environment stays in this process.
        for var in SECRET_ENV {
            cmd.env_remove(var);
        }
        cmd.args(req.argv.args())
            .stdin(if req.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(Self::io)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cap = req.output_limit;
        let input = req.stdin;
        let work = async move {
            let feed = async {
                if let (Some(mut w), Some(bytes)) = (stdin, input) {
                    // A command that exits without reading its input is not an error.
                    let _ = w.write_all(&bytes).await;
                }
                Ok::<_, std::io::Error>(())
            };
            let out = async {
                match stdout {
                    Some(s) => read_capped(s, cap).await,
                    None => Ok((Vec::new(), false)),
                }
            };
            let err = async {
                match stderr {
                    Some(s) => read_capped(s, cap).await,
                    None => Ok((Vec::new(), false)),
                }
            };
            let (_, out, err) = tokio::try_join!(feed, out, err)?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        match tokio::time::timeout(req.timeout, work).await {
            Ok(Ok((status, (stdout, t1), (stderr, t2)))) => {
                use std::os::unix::process::ExitStatusExt;
                let status = match (status.code(), status.signal()) {
                    (Some(c), _) => ExitStatus::Code(c),
                    (None, Some(s)) => ExitStatus::Signal(s.to_string()),
                    (None, None) => ExitStatus::Signal("unknown".into()),
                };
                Ok(Output { status, stdout, stderr, truncated: t1 || t2 })
            }
            Ok(Err(e)) => Err(Self::io(e)),
            // Dropping the future drops the child, which kills it (kill_on_drop).
            Err(_) => Err(TransportError::Timeout {
                target: "local".into(),
                what: format!("command {:?}", req.argv.program()),
                after: req.timeout,
            }),
        }
    }

    async fn upload(&self, path: &RemotePath, bytes: &[u8], mode: u32) -> Result<(), TransportError> {
        let target = std::path::Path::new(path.as_str());
        let dir = target
            .parent()
            .ok_or_else(|| TransportError::InvalidCommand { reason: "upload path has no parent".into() })?;
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        // Unique per process and per call, so concurrent uploads never share a temp file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.rpcc-tmp-{}-{n}", std::process::id()));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(bytes).await?;
            f.sync_all().await?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).await?;
            tokio::fs::rename(&tmp, target).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map_err(Self::io)
    }
}
