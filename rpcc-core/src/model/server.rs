//! A managed nginx server and how to reach it.

use crate::keyring::Secret;
use crate::value::{FilePath, Host, HostKeyPin, Identifier, ListenAddr, Port, RemotePath, UnitName, UnixUser};

/// A server rpcc deploys to.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Server {
    /// Unique name, e.g. `edge-1`.
    pub name: Identifier,
    /// Address to connect to.
    pub host: Host,
    /// SSH port (default 22).
    pub port: Port,
    /// SSH user.
    pub user: UnixUser,
    /// The pinned host key. `None` means the server has not been enrolled yet; a
    /// deploy refuses such a server until `rpcc enroll` records the key.
    pub host_key: Option<HostKeyPin>,
    /// How to authenticate.
    pub auth: ServerAuth,
    /// Run remote commands through `sudo -n`.
    pub sudo: bool,
    /// Where and how nginx runs on the server.
    pub nginx: NginxSettings,
    /// The server's Glances REST API (monitoring), when it runs one.
    pub glances: Option<GlancesSettings>,
}

/// How to reach Glances (REST API v4) on a server: `http(s)://<host>:<port>/api/4/`.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct GlancesSettings {
    /// Port (default 61208).
    pub port: Port,
    /// Use HTTPS.
    pub tls: bool,
    /// Plain HTTP accepted on purpose (`insecure_http = true`): no warning, and a
    /// password may then travel in clear. Without it, plain HTTP is warned about and a
    /// password over plain HTTP is refused.
    pub insecure_http: bool,
    /// HTTP Basic user (Glances `--username`), when a password is set.
    pub user: Option<UnixUser>,
    /// HTTP Basic password: a keyring envelope (record `server/<name>/glances_password`).
    #[serde(skip)]
    pub password: Option<Secret>,
}

/// SSH authentication for a server. Secrets are [`Secret`]s (keyring envelopes, or plain
/// text only when explicitly allowed): never shown in `Debug`, errors, or serialized
/// output. Their records are `server/<name>/password` and `server/<name>/passphrase`.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerAuth {
    /// A private key file (relative paths are relative to the inventory file).
    KeyFile {
        /// Path on the control-plane machine.
        path: FilePath,
        /// Passphrase of an encrypted key.
        #[serde(skip)]
        passphrase: Option<Secret>,
    },
    /// A password (in an inventory file: a keyring envelope `rpcc:v1:…`).
    Password(#[serde(skip)] Secret),
    /// Keys from the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
}

/// How rpcc lays out nginx configuration on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NginxMode {
    /// rpcc writes the main `nginx.conf` and everything it includes.
    Owned,
    /// The server keeps its hand-made `nginx.conf`; rpcc owns only its included directory.
    Include,
}

/// How nginx is told to load a new configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReloadMethod {
    /// Signal the master process (`nginx -s reload` with the managed config).
    Signal,
    /// `systemctl reload <unit>`.
    Systemctl(UnitName),
    /// `service <unit> reload`.
    Service(UnitName),
}

/// How a new configuration is validated before it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NginxValidation {
    /// `nginx -t` of the staged tree first, then switch and reload: two full parses,
    /// and `current` never points at a tree nginx refused (the default).
    #[default]
    Test,
    /// Single parse: switch, signal the master and take its own parse as the
    /// validation (new workers = accepted, `[emerg]` = refused: `current` is switched
    /// back at once; the master kept the old configuration, so nothing is reloaded).
    /// Trade-off: between the switch and the switch-back (milliseconds, or until the
    /// next rpcc run if the helper is killed there) `current` names a tree nginx
    /// refused, so an nginx *restart* in that window would not start.
    Master,
}

/// The distribution's nginx file layout (where an included directory is referenced from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NginxLayout {
    /// Debian/Ubuntu: `sites-enabled/`.
    Debian,
    /// RHEL/Fedora/Alpine: `conf.d/`.
    Rhel,
}

/// nginx on one server.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct NginxSettings {
    /// Distribution layout.
    pub layout: NginxLayout,
    /// Owned or include layout.
    pub mode: NginxMode,
    /// nginx's configuration root (default `/etc/nginx`).
    pub root: RemotePath,
    /// The directory rpcc manages (generations, `current` symlink); default `<root>/rpcc`.
    pub managed_root: RemotePath,
    /// The nginx binary (default `/usr/sbin/nginx`).
    pub binary: RemotePath,
    /// How to reload.
    pub reload: ReloadMethod,
    /// How a new configuration is validated (`nginx -t` first, or the master's parse).
    pub validate: NginxValidation,
    /// nginx version as `(major, minor, patch)` when known (chooses e.g. the HTTP/2 syntax).
    pub version: Option<(u16, u16, u16)>,
    /// Plain-HTTP listen address (default `80`).
    pub listen_http: ListenAddr,
    /// TLS listen address (default `443`).
    pub listen_https: ListenAddr,
    /// The `user` directive of an owned `nginx.conf` (`None`: omitted, e.g. nginx not
    /// started as root). Default `www-data` on Debian, `nginx` on RHEL.
    pub user: Option<UnixUser>,
    /// The master's pid file (default `/run/nginx.pid`).
    pub pid: RemotePath,
    /// Directory for `access.log` and `error.log` (default `/var/log/nginx`).
    pub log_dir: RemotePath,
    /// The deploy helper installed on the server as a root-owned file (`rpcc helper
    /// print`), run through `sudo -n` with a sudoers entry for that file only; `None`:
    /// the helper text is sent with each command (`sh -c`), as the login user or under
    /// the server's `sudo`.
    pub helper: Option<RemotePath>,
    /// The installed helper's root-owned configuration file (default
    /// `/etc/rpcc/helper.conf`): every path the helper uses, written by `rpcc bootstrap`;
    /// the public key it verifies staged archives with sits beside it (`.pub`).
    pub helper_conf: RemotePath,
}

impl Server {
    /// `user@host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}@{}", self.user, self.host.to_authority(self.port))
    }
}
