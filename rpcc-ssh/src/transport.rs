//! `SshTransport`: one pooled, authenticated russh connection per server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpcc_core::transport::{Argv, ExecRequest, ExitStatus, Output, Transport, TransportError, TreeFile};
use rpcc_core::value::RemotePath;
use russh::ChannelMsg;
use russh::client::{AuthResult, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

use crate::config::{HostKeyPolicy, SshAuth, SshTarget};
use crate::handler::{Handler, KeyCheck, ObservedHostKey};

/// A transport to one server over SSH. Cheap to share (`Arc`); all commands use one
/// connection, opened on first use and re-opened if it died.
pub struct SshTransport {
    target: SshTarget,
    credential: Credential,
    config: Arc<russh::client::Config>,
    connection: Arc<tokio::sync::Mutex<Option<Arc<Handle<Handler>>>>>,
    /// Milliseconds since `epoch` of the last use, read by the idle reaper.
    last_used: Arc<AtomicU64>,
    /// Commands running now; the idle reaper never closes a busy connection.
    in_flight: Arc<AtomicU64>,
    epoch: std::time::Instant,
    channels: Semaphore,
    connections_opened: AtomicU64,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport").field("target", &self.target.describe()).finish_non_exhaustive()
    }
}

/// Loaded credentials.
enum Credential {
    Key(Arc<PrivateKey>),
    Password(secrecy::SecretString),
    Agent(Option<std::path::PathBuf>),
}

fn config_for(target: &SshTarget) -> Arc<russh::client::Config> {
    // russh's defaults end with `ssh-rsa` (RSA signed with SHA-1); it stays out unless
    // the target opts in.
    let sha1 = russh::keys::Algorithm::Rsa { hash: None };
    let key: Vec<russh::keys::Algorithm> =
        russh::Preferred::DEFAULT.key.iter().filter(|a| target.allow_rsa_sha1 || **a != sha1).cloned().collect();
    Arc::new(russh::client::Config {
        keepalive_interval: Some(target.timeouts.keepalive),
        keepalive_max: 3,
        nodelay: true,
        preferred: russh::Preferred { key: std::borrow::Cow::Owned(key), ..russh::Preferred::DEFAULT },
        ..Default::default()
    })
}

impl SshTransport {
    /// A transport for `target`. Loads the key now, so a missing or undecryptable key
    /// is reported before any connection (the passphrase never appears in errors).
    pub fn new(target: SshTarget) -> Result<Self, TransportError> {
        let credential = match &target.auth {
            SshAuth::KeyFile { path, passphrase } => {
                let key = russh::keys::load_secret_key(path, passphrase.as_ref().map(|p| p.expose_secret())).map_err(
                    |e| TransportError::Auth {
                        target: target.describe(),
                        method: format!("key file {} ({e})", path.display()),
                    },
                )?;
                Credential::Key(Arc::new(key))
            }
            SshAuth::Agent { socket } => Credential::Agent(socket.clone()),
            SshAuth::Password(p) => Credential::Password(p.clone()),
        };
        let channels = Semaphore::new(target.max_channels.max(1));
        Ok(Self {
            config: config_for(&target),
            credential,
            target,
            connection: Arc::new(tokio::sync::Mutex::new(None)),
            last_used: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
            epoch: std::time::Instant::now(),
            channels,
            connections_opened: AtomicU64::new(0),
        })
    }

    /// How many TCP connections this transport has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Connect with [`HostKeyPolicy::Enrol`] and return the key the server presents,
    /// without authenticating. For an explicit enrol step only.
    pub async fn observe_host_key(target: &SshTarget) -> Result<ObservedHostKey, TransportError> {
        let mut probe = target.clone();
        probe.host_key = HostKeyPolicy::Enrol;
        let check = Arc::new(Mutex::new(KeyCheck::default()));
        let handle = Self::handshake(&probe, config_for(&probe), Arc::clone(&check)).await?;
        let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        let observed = check.lock().ok().and_then(|c| c.observed.clone());
        observed.ok_or_else(|| TransportError::HostKey {
            target: target.describe(),
            reason: "no host key was presented".into(),
        })
    }

    /// TCP connect and key exchange (host key checked by the handler), under the
    /// connect timeout.
    async fn handshake(
        target: &SshTarget,
        config: Arc<russh::client::Config>,
        check: Arc<Mutex<KeyCheck>>,
    ) -> Result<Handle<Handler>, TransportError> {
        let handler =
            Handler { policy: target.host_key.clone(), host_port: target.host_port(), check: Arc::clone(&check) };
        let connecting = russh::client::connect(config, target.address.clone(), handler);
        match tokio::time::timeout(target.timeouts.connect, connecting).await {
            Err(_) => Err(TransportError::Timeout {
                target: target.describe(),
                what: "connect".into(),
                after: target.timeouts.connect,
            }),
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(e)) => {
                if let Some(reason) = check.lock().ok().and_then(|c| c.refusal.clone()) {
                    return Err(TransportError::HostKey { target: target.describe(), reason });
                }
                Err(TransportError::Connect { target: target.describe(), reason: e.to_string() })
            }
        }
    }

    async fn open(&self) -> Result<Handle<Handler>, TransportError> {
        let check = Arc::new(Mutex::new(KeyCheck::default()));
        let mut handle = Self::handshake(&self.target, Arc::clone(&self.config), check).await?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let describe = self.target.describe();
        let auth = async {
            match &self.credential {
                Credential::Key(key) => {
                    // Only RSA keys need the server's signature-hash preference (SHA-2, never SHA-1).
                    let hash = if key.algorithm().is_rsa() {
                        handle.best_supported_rsa_hash().await.ok().flatten().flatten()
                    } else {
                        None
                    };
                    handle
                        .authenticate_publickey(&self.target.user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                        .await
                        .map_err(|e| e.to_string())
                }
                Credential::Agent(socket) => self.agent_auth(&mut handle, socket.as_deref()).await,
                Credential::Password(p) => {
                    handle.authenticate_password(&self.target.user, p.expose_secret()).await.map_err(|e| e.to_string())
                }
            }
        };
        match tokio::time::timeout(self.target.timeouts.auth, auth).await {
            Err(_) => Err(TransportError::Timeout {
                target: describe,
                what: "authentication".into(),
                after: self.target.timeouts.auth,
            }),
            Ok(Err(e)) => {
                Err(TransportError::Disconnected { target: describe, reason: format!("during authentication: {e}") })
            }
            Ok(Ok(AuthResult::Success)) => {
                tracing::debug!(target = %describe, "ssh connection authenticated");
                Ok(handle)
            }
            Ok(Ok(AuthResult::Failure { .. })) => Err(TransportError::Auth {
                target: describe,
                method: match self.credential {
                    Credential::Key(_) => "public key".into(),
                    Credential::Password(_) => "password".into(),
                    Credential::Agent(_) => "ssh-agent (no key the agent holds was accepted)".into(),
                },
            }),
        }
    }

    /// A helper command that must succeed: its stderr becomes the error.
    fn expect_success(&self, out: &Output, what: &str) -> Result<(), TransportError> {
        if out.success() {
            return Ok(());
        }
        Err(TransportError::Io {
            target: self.target.describe(),
            source: std::io::Error::other(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        })
    }

    /// Offer each key the agent holds until one is accepted.
    async fn agent_auth(
        &self,
        handle: &mut Handle<Handler>,
        socket: Option<&std::path::Path>,
    ) -> Result<AuthResult, String> {
        use russh::keys::agent::client::AgentClient;
        let mut agent = match socket {
            Some(path) => AgentClient::connect_uds(path).await,
            None => AgentClient::connect_env().await,
        }
        .map_err(|e| format!("cannot reach ssh-agent: {e}"))?;
        let identities = agent.request_identities().await.map_err(|e| format!("ssh-agent: {e}"))?;
        let mut last = AuthResult::Failure { remaining_methods: russh::MethodSet::empty(), partial_success: false };
        for identity in identities {
            let key = identity.public_key().into_owned();
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await.ok().flatten().flatten()
            } else {
                None
            };
            last = handle
                .authenticate_publickey_with(&self.target.user, key, hash, &mut agent)
                .await
                .map_err(|e| format!("ssh-agent signing: {e:?}"))?;
            if matches!(last, AuthResult::Success) {
                break;
            }
        }
        Ok(last)
    }

    /// The live connection, opened (or re-opened) as needed; transient failures are
    /// retried with jittered exponential backoff.
    async fn connection(&self) -> Result<Arc<Handle<Handler>>, TransportError> {
        let mut slot = self.connection.lock().await;
        if let Some(handle) = slot.as_ref().filter(|h| !h.is_closed()) {
            return Ok(Arc::clone(handle));
        }
        let policy = self.target.retry;
        let mut attempt = 1;
        let handle = loop {
            match self.open().await {
                Ok(h) => break Arc::new(h),
                Err(e) if e.is_retryable() && attempt < policy.attempts => {
                    let delay = policy.delay(attempt, jitter());
                    tracing::info!(target = %self.target.describe(), attempt, error = %e, ?delay, "ssh connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        *slot = Some(Arc::clone(&handle));
        self.touch();
        self.spawn_idle_reaper(&handle);
        Ok(handle)
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used.store(now, Ordering::Relaxed);
    }

    /// Close `handle` once it has been idle for the configured time. The task holds
    /// only the slot and the clock, never the transport, and ends when the connection
    /// is replaced or closed.
    fn spawn_idle_reaper(&self, handle: &Arc<Handle<Handler>>) {
        let (slot, last_used, epoch, idle) =
            (Arc::clone(&self.connection), Arc::clone(&self.last_used), self.epoch, self.target.timeouts.idle);
        let in_flight = Arc::clone(&self.in_flight);
        let watched = Arc::downgrade(handle);
        let describe = self.target.describe();
        tokio::spawn(async move {
            loop {
                let since = Duration::from_millis(last_used.load(Ordering::Relaxed));
                let deadline = epoch + since + idle;
                tokio::time::sleep_until(deadline.into()).await;
                let Some(handle) = watched.upgrade() else { return };
                if handle.is_closed() {
                    return;
                }
                let idle_for = epoch.elapsed().saturating_sub(Duration::from_millis(last_used.load(Ordering::Relaxed)));
                if idle_for < idle || in_flight.load(Ordering::Relaxed) > 0 {
                    if in_flight.load(Ordering::Relaxed) > 0 {
                        tokio::time::sleep(idle.min(Duration::from_secs(1))).await;
                    }
                    continue;
                }
                let mut guard = slot.lock().await;
                if guard.as_ref().is_some_and(|h| Arc::ptr_eq(h, &handle)) {
                    *guard = None;
                    drop(guard);
                    tracing::debug!(target = %describe, ?idle_for, "closing idle ssh connection");
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "idle", "en").await;
                }
                return;
            }
        });
    }

    async fn forget(&self, dead: &Arc<Handle<Handler>>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|h| Arc::ptr_eq(h, dead)) {
            *slot = None;
        }
    }

    async fn run(&self, req: &ExecRequest) -> Result<Output, TransportError> {
        let describe = self.target.describe();
        let handle = self.connection().await?;
        self.touch();
        let _busy = InFlight::enter(&self.in_flight);
        let mut channel = match tokio::time::timeout(req.timeout, handle.channel_open_session()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                // A dead connection: drop it so the next call reconnects.
                self.forget(&handle).await;
                return Err(TransportError::Disconnected {
                    target: describe,
                    reason: format!("opening a channel: {e}"),
                });
            }
            Err(_) => {
                // No answer to a channel open for a whole command timeout: the network
                // is hung. Drop the connection so the next call starts a fresh one.
                self.forget(&handle).await;
                return Err(TransportError::Timeout {
                    target: describe,
                    what: "opening a channel (connection hung)".into(),
                    after: req.timeout,
                });
            }
        };
        // Every word single-quoted (Argv::shell_line): the login shell may be dash,
        // bash or zsh, and none of them may expand anything in it.
        let command =
            if self.target.sudo { format!("sudo -n -- {}", req.argv.shell_line()) } else { req.argv.shell_line() };
        let work = async {
            channel.exec(true, command.as_bytes()).await.map_err(|e| e.to_string())?;
            if let Some(bytes) = &req.stdin {
                channel.data(&bytes[..]).await.map_err(|e| e.to_string())?;
                channel.eof().await.map_err(|e| e.to_string())?;
            }
            let (mut stdout, mut stderr, mut truncated, mut status) = (Vec::new(), Vec::new(), false, None);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => truncated |= push_capped(&mut stdout, &data, req.output_limit),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        truncated |= push_capped(&mut stderr, &data, req.output_limit)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)))
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(ExitStatus::Signal(format!("{signal_name:?}")))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok::<_, String>((status, stdout, stderr, truncated))
        };
        match tokio::time::timeout(req.timeout, work).await {
            Err(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), channel.close()).await;
                Err(TransportError::Timeout {
                    target: describe,
                    what: format!("command {:?}", req.argv.program()),
                    after: req.timeout,
                })
            }
            Ok(Err(reason)) => {
                self.forget(&handle).await;
                Err(TransportError::Disconnected { target: describe, reason })
            }
            Ok(Ok((None, ..))) => {
                self.forget(&handle).await;
                Err(TransportError::Disconnected {
                    target: describe,
                    reason: "the channel closed without an exit status".into(),
                })
            }
            Ok(Ok((Some(status), stdout, stderr, truncated))) => {
                self.touch();
                Ok(Output { status, stdout, stderr, truncated })
            }
        }
    }
}

/// Counts a running command for as long as it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A number in 0..1 from the process's randomly keyed hasher (no RNG dependency).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Append up to the cap; true if something was cut.
fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) -> bool {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
    data.len() > room
}

/// Writes stdin to a temporary name beside the target, sets the mode, then renames:
/// readers see the old file or the new one, never a part.
const UPLOAD_SCRIPT: &str =
    r#"umask 077 && cat > "$1" && chmod "$2" "$1" && mv -f "$1" "$3" || { rm -f "$1"; exit 1; }"#;

/// Extracts a tar stream from stdin into a staging directory beside the target, then
/// renames it into place: the target is absent or complete, never partial.
const TREE_SCRIPT: &str = r#"s="$1.rpcc-staging"; rm -rf "$s" && mkdir -p "$s" && tar -x --no-same-owner -C "$s" -f - && mv -T "$s" "$1" || { rm -rf "$s"; exit 1; }"#;

#[async_trait::async_trait]
impl Transport for SshTransport {
    fn target(&self) -> String {
        self.target.describe()
    }

    async fn exec(&self, request: ExecRequest) -> Result<Output, TransportError> {
        let _permit = tokio::time::timeout(request.timeout, self.channels.acquire())
            .await
            .map_err(|_| TransportError::Timeout {
                target: self.target.describe(),
                what: "waiting for a free channel".into(),
                after: request.timeout,
            })?
            .map_err(|_| TransportError::Disconnected {
                target: self.target.describe(),
                reason: "transport closed".into(),
            })?;
        self.run(&request).await
    }

    async fn upload_tree(&self, dir: &RemotePath, files: &[TreeFile<'_>]) -> Result<(), TransportError> {
        for f in files {
            rpcc_core::generation::GenerationPath::parse(f.path)
                .map_err(|e| TransportError::InvalidCommand { reason: format!("tree path {:?} {e}", f.path) })?;
        }
        let archive = rpcc_core::transport::tar_archive(files)
            .map_err(|source| TransportError::Io { target: self.target.describe(), source })?;
        let argv = Argv::new("sh", ["-c".to_owned(), TREE_SCRIPT.to_owned(), "sh".to_owned(), dir.to_string()])?;
        let timeout =
            Duration::from_secs(60) + Duration::from_millis(u64::try_from(archive.len() / 1024).unwrap_or(u64::MAX));
        let out = self.exec(ExecRequest::new(argv).stdin(archive).timeout(timeout)).await?;
        self.expect_success(&out, &format!("tree upload to {dir}"))
    }

    async fn upload(&self, path: &RemotePath, bytes: &[u8], mode: u32) -> Result<(), TransportError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = format!("{}.rpcc-tmp-{}-{}", path, std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let argv = Argv::new(
            "sh",
            ["-c".to_owned(), UPLOAD_SCRIPT.to_owned(), "sh".to_owned(), tmp, format!("{mode:o}"), path.to_string()],
        )?;
        let timeout =
            Duration::from_secs(60) + Duration::from_millis(u64::try_from(bytes.len() / 1024).unwrap_or(u64::MAX));
        let out = self.exec(ExecRequest::new(argv).stdin(bytes.to_vec()).timeout(timeout)).await?;
        self.expect_success(&out, &format!("upload to {path}"))
    }
}
