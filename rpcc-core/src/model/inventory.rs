//! The whole desired state, cross-checked.

use std::path::PathBuf;

use crate::keyring::Secret;
use crate::model::{
    AcmeSettings, DomainGroup, MonitorSettings, NotifierKind, PluginSettings, Server, ServerAuth, Site,
};
use crate::validate::FieldPath;

/// The desired state of a fleet: servers, groups and sites, validated and cross-checked.
///
/// ```
/// use rpcc_core::model::Inventory;
///
/// let inv = Inventory::from_toml_str(r#"
///     [[servers]]
///     name = "edge-1"
///     host = "203.0.113.10"
///     user = "deploy"
///     auth = { agent = true }
///
///     [[groups]]
///     name = "eu"
///     servers = ["edge-1"]
///
///     [[sites]]
///     domain = "app.example.com"
///     group = "eu"
///     upstream = { backends = ["10.0.0.5:8080"] }
/// "#).unwrap();
/// assert_eq!(inv.sites_for_server("edge-1").count(), 1);
///
/// let err = Inventory::from_toml_str("[[sites]]\ndomain = \"bad;name\"\n").unwrap_err();
/// assert!(err.to_string().contains("sites[0].domain"));
/// ```
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Inventory {
    /// Servers, in input order.
    pub servers: Vec<Server>,
    /// Groups, in input order.
    pub groups: Vec<DomainGroup>,
    /// Sites, in input order.
    pub sites: Vec<Site>,
    /// `[monitor]`: schedule and notifiers (defaults when absent).
    pub monitor: MonitorSettings,
    /// `[[plugins]]`: WASM plugins and what each is granted.
    pub plugins: Vec<PluginSettings>,
    /// `[acme]`: the CA of `tls.mode = "acme"` sites (Let's Encrypt when absent).
    pub acme: AcmeSettings,
    /// `[deploy]`: the control plane's own deploy settings (its archive signing key).
    pub deploy: DeploySettings,
    /// Directory that relative paths (key files) are resolved against.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// Paths of secret fields accepted as plain text (only with
    /// [`LoadOptions::allow_plaintext_secrets`]); callers warn about each.
    #[serde(skip)]
    pub plaintext_secrets: Vec<FieldPath>,
    /// The `[env.<name>]` this inventory was loaded for, when it defines environments.
    #[serde(skip)]
    pub environment: Option<EnvironmentSettings>,
}

/// `[deploy]`: settings of the control plane itself.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct DeploySettings {
    /// `signing_key`: the Ed25519 seed (an `rpcc:v1` envelope, record
    /// `deploy/archive/signing_key`) that signs every staged archive; servers whose
    /// installed helper has the public key accept nothing else. `rpcc keys signing-key`
    /// makes one.
    #[serde(skip)]
    pub signing_key: Option<Secret>,
}

impl DeploySettings {
    /// The record of `signing_key`'s envelope.
    pub const SIGNING_KEY_RECORD: &'static str = "deploy/archive/signing_key";
}

/// One environment of an inventory (`[env.<name>]`): its name, and where its state and
/// keyring are (never shared with another environment). Its `Debug` shows `state`
/// without passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvironmentSettings {
    /// The name (`staging`, `production`).
    pub name: String,
    /// `state`: a SQLite path or a `postgres://` URL (relative paths: against the
    /// inventory's directory).
    pub state: Option<String>,
    /// `key_file`: the environment's keyring file (relative: against the inventory's
    /// directory).
    pub key_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for EnvironmentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentSettings")
            .field("name", &self.name)
            .field("state", &self.state.as_deref().map(crate::store::redacted_url))
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// How an inventory is loaded.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Accept plain-text values in secret fields (`--allow-plaintext`). By default they
    /// are refused: secrets must be `rpcc:v1` envelopes.
    pub allow_plaintext_secrets: bool,
    /// The environment to load (`--env`): required when the inventory defines
    /// `[env.*]`, refused when it does not.
    pub environment: Option<String>,
}

impl LoadOptions {
    /// Options that accept plain-text secrets (or not).
    pub fn allow_plaintext(allow: bool) -> Self {
        Self { allow_plaintext_secrets: allow, environment: None }
    }

    /// Load environment `name` (`None`: an inventory without environments).
    pub fn with_environment(mut self, name: Option<&str>) -> Self {
        self.environment = name.map(str::to_owned);
        self
    }
}

impl Inventory {
    /// Every secret field, in input order.
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut out = Vec::new();
        for server in &self.servers {
            match &server.auth {
                ServerAuth::Password(s) | ServerAuth::KeyFile { passphrase: Some(s), .. } => out.push(s),
                _ => {}
            }
            if let Some(s) = server.glances.as_ref().and_then(|g| g.password.as_ref()) {
                out.push(s);
            }
        }
        out.extend(self.deploy.signing_key.as_ref());
        for n in &self.monitor.notifiers {
            match &n.kind {
                NotifierKind::Telegram { token: s, .. } | NotifierKind::Webhook { secret: s, .. } => out.push(s),
            }
        }
        out
    }

    /// The plugin configured under this name.
    pub fn plugin(&self, name: &str) -> Option<&PluginSettings> {
        self.plugins.iter().find(|p| p.name.as_str() == name)
    }

    /// Plugins applied to `site`: its group's, then its own (each once), in order.
    pub fn plugins_for_site<'a>(&'a self, site: &'a Site) -> Vec<&'a PluginSettings> {
        let group = self.group(site.group.as_str()).map(|g| g.plugins.as_slice()).unwrap_or_default();
        let mut out: Vec<&PluginSettings> = Vec::new();
        for name in group.iter().chain(&site.plugins) {
            if let Some(p) = self.plugin(name.as_str())
                && !out.iter().any(|q| q.name == p.name)
            {
                out.push(p);
            }
        }
        out
    }

    /// Plugins applied anywhere on `server` (its groups' and its sites'), each once.
    pub fn plugins_for_server<'a>(&'a self, server: &'a str) -> Vec<&'a PluginSettings> {
        let mut out: Vec<&PluginSettings> = Vec::new();
        let names = self
            .groups_of_server(server)
            .flat_map(|g| g.plugins.iter())
            .chain(self.sites_for_server(server).flat_map(|s| s.plugins.iter()));
        for name in names {
            if let Some(p) = self.plugin(name.as_str())
                && !out.iter().any(|q| q.name == p.name)
            {
                out.push(p);
            }
        }
        out
    }

    /// The server with this name.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name.as_str() == name)
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&DomainGroup> {
        self.groups.iter().find(|g| g.name.as_str() == name)
    }

    /// Groups a server belongs to.
    pub fn groups_of_server<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a DomainGroup> + 'a {
        self.groups.iter().filter(move |g| g.servers.iter().any(|s| s.as_str() == server))
    }

    /// Every site a server serves (through any of its groups), in inventory order.
    pub fn sites_for_server<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a Site> + 'a {
        self.sites.iter().filter(move |site| {
            self.group(site.group.as_str()).is_some_and(|g| g.servers.iter().any(|s| s.as_str() == server))
        })
    }
}
