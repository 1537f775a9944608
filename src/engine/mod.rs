//! [`Engine`]: one inventory, its state store, the transports to its servers (one pooled
//! SSH connection per server by default) and the keyring, with the fleet operations (`plan`, `apply`, `rollback`, `status`,
//! `drift`) that the CLI and the Python package share, and its notifiers. Async; the
//! caller owns the runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use rpcc_core::certs::CertificateSet;
use rpcc_core::deploy::{
    self, AuditSeal, DeploySource, Deployer, DeploymentState, DriftReport, FleetReport, FleetTarget, HealthProbe,
    ProgressFn, RolloutPolicy, ServerPlan, ServerReport, ServerStatus, StepHook,
};
use rpcc_core::generation::Generation;
use rpcc_core::keyring::Keyring;
use rpcc_core::model::{DomainGroup, Inventory, Server, Site};
use rpcc_core::store::EngineStore;
use rpcc_core::transport::{Transport, TransportPool};
use rpcc_monitor::{HttpHealthProbe, Notification, NotifierSet, NotifierSettings, NotifyError};
use rpcc_nginx::{NginxRenderer, RenderOptions};
use rpcc_ssh::SshTransportPool;
use rpcc_store::SqliteStore;
#[cfg(feature = "plugins")]
use rpcc_wasm_plugins::{PluginFinding, PluginHost, PluginSet};

use crate::certs::{CertificateAction, CertificateOutcome, managed_tls, pending_view};

mod error;
mod report;

pub use error::EngineError;
pub use report::{ApplyOptions, ApplyReport, Selection, ServerOutcome};

/// The fleet operations over one inventory.
pub struct Engine {
    inv: Inventory,
    store: Arc<dyn EngineStore>,
    transports: Arc<dyn TransportPool>,
    keyring: Option<Arc<Keyring>>,
    actor: String,
    renderer: NginxRenderer,
    #[cfg(feature = "plugins")]
    plugins: Option<Arc<PluginSet>>,
    notifier_settings: NotifierSettings,
    notifiers: std::sync::OnceLock<NotifierSet>,
    probe: Arc<dyn HealthProbe>,
    signer: Option<Arc<deploy::ArchiveSigner>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("servers", &self.inv.servers.len())
            .field("sites", &self.inv.sites.len())
            .field("state", &self.store)
            .field("transports", &self.transports)
            .field("keyring", &self.keyring)
            .field("actor", &self.actor)
            .finish()
    }
}

impl Engine {
    /// Open the SQLite state store at `state` (created when missing) for `inv`.
    pub async fn open(inv: Inventory, state: &Path, keyring: Option<Keyring>) -> Result<Self, EngineError> {
        let mut store = SqliteStore::open(state)
            .await
            .map_err(|source| EngineError::State { path: state.display().to_string(), source })?;
        // With a keyring, audit entries are keyed (HMAC) and checkpointed beside the key
        // file; a keyring whose keys are all retired cannot key anything.
        if let Some(seal) = keyring.as_ref().and_then(|k| AuditSeal::for_keyring(k).ok()) {
            store = store.with_audit_seal(seal);
        }
        // The state belongs to one environment (stamped on first use).
        store
            .claim_environment(inv.environment.as_ref().map(|e| e.name.as_str()))
            .await
            .map_err(|source| EngineError::State { path: state.display().to_string(), source })?;
        Self::with_store(inv, Arc::new(store), keyring)
    }

    /// Open the state store `state` names: `postgres://…` (several control planes share
    /// locks, history and secrets), `sqlite://…` or a file path (created when missing).
    /// With a keyring, new audit entries are keyed.
    pub async fn open_url(inv: Inventory, state: &str, keyring: Option<Keyring>) -> Result<Self, EngineError> {
        let seal = keyring.as_ref().and_then(|k| AuditSeal::for_keyring(k).ok());
        let environment = inv.environment.as_ref().map(|e| e.name.as_str());
        let store = rpcc_store::open_url(state, seal, rpcc_store::EnvironmentClaim::For(environment))
            .await
            .map_err(|source| EngineError::State { path: rpcc_store::redacted_url(state), source })?;
        Self::with_store(inv, store, keyring)
    }

    /// An engine over `store`, any [`EngineStore`] (state, secrets, certificates; the
    /// caller decides whether its audit entries are keyed). The transports (pooled SSH),
    /// the health probe and the notifiers start as the defaults (`with_*` replace them).
    pub fn with_store(
        inv: Inventory,
        store: Arc<dyn EngineStore>,
        keyring: Option<Keyring>,
    ) -> Result<Self, EngineError> {
        #[cfg_attr(not(feature = "plugins"), expect(unused_mut))]
        let mut renderer = NginxRenderer::new(RenderOptions::default())
            .map_err(|e| EngineError::Render { server: "-".into(), message: e.to_string() })?;
        #[cfg(feature = "plugins")]
        let plugins = load_plugins(&inv)?;
        #[cfg(feature = "plugins")]
        if let Some(set) = &plugins {
            renderer = renderer.with_extension(Arc::clone(set) as Arc<dyn rpcc_core::fragment::SiteExtension>);
        }
        #[cfg(not(feature = "plugins"))]
        if !inv.plugins.is_empty() {
            return Err(EngineError::PluginsNotBuilt { count: inv.plugins.len() });
        }
        let signer = match &inv.deploy.signing_key {
            Some(secret) => {
                let seed =
                    secret.open(keyring.as_ref()).map_err(|e| EngineError::SigningKey { message: e.to_string() })?;
                let signer = deploy::ArchiveSigner::from_seed(&seed)
                    .map_err(|e| EngineError::SigningKey { message: e.to_string() })?;
                Some(Arc::new(signer))
            }
            None => None,
        };
        let base = inv.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let keyring = keyring.map(Arc::new);
        Ok(Self {
            transports: Arc::new(SshTransportPool::new(base, keyring.clone())),
            inv,
            store,
            keyring,
            actor: deploy::local_actor(),
            renderer,
            #[cfg(feature = "plugins")]
            plugins,
            notifier_settings: NotifierSettings::default(),
            notifiers: std::sync::OnceLock::new(),
            probe: Arc::new(HttpHealthProbe::default()),
            signer,
        })
    }

    /// Reach servers through `transports` instead of the pooled SSH connections (local
    /// execution, another protocol, a test double).
    pub fn with_transports(mut self, transports: Arc<dyn TransportPool>) -> Self {
        self.transports = transports;
        self
    }

    /// Judge sites after a reload with `probe` instead of the HTTP(S) probe.
    pub fn with_health_probe(mut self, probe: Arc<dyn HealthProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Build the inventory's notifiers with `settings` (Telegram API base, timeout).
    pub fn with_notifier_settings(mut self, settings: NotifierSettings) -> Self {
        self.notifier_settings = settings;
        self.notifiers = std::sync::OnceLock::new();
        self
    }

    /// Send notifications to `notifiers` instead of the inventory's.
    pub fn with_notifiers(self, notifiers: NotifierSet) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(notifiers);
        Self { notifiers: cell, ..self }
    }

    /// The notifiers (the inventory's, built on first use: their secrets are opened
    /// with the keyring then).
    pub fn notifiers(&self) -> Result<&NotifierSet, EngineError> {
        if let Some(set) = self.notifiers.get() {
            return Ok(set);
        }
        let set = NotifierSet::from_inventory(&self.inv, self.keyring(), &self.notifier_settings)?;
        Ok(self.notifiers.get_or_init(|| set))
    }

    /// Send `note`, about servers of `groups`, to the notifiers routed to it. `Err` when
    /// the notifiers cannot be set up; otherwise the failures of single notifiers.
    pub async fn notify(&self, note: &Notification, groups: &[String]) -> Result<Vec<NotifyError>, EngineError> {
        Ok(self.notifiers()?.deliver(note, groups).await)
    }

    /// Record actions under this name instead of `user@host`.
    pub fn with_actor(mut self, actor: &str) -> Self {
        actor.clone_into(&mut self.actor);
        self
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inv
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn EngineStore> {
        &self.store
    }

    /// The keyring (for notifier secrets and SSH credentials), when configured.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// Check that every named server and group exists.
    pub fn check(&self, sel: &Selection) -> Result<(), EngineError> {
        if let Some(n) = sel.servers.iter().find(|n| self.inv.server(n).is_none()) {
            return Err(EngineError::Unknown { what: "server", name: n.clone() });
        }
        if let Some(n) = sel.groups.iter().find(|n| self.inv.group(n).is_none()) {
            return Err(EngineError::Unknown { what: "group", name: n.clone() });
        }
        Ok(())
    }

    /// The selected servers, in inventory order; a server in several groups appears once.
    pub fn selected(&self, sel: &Selection) -> Vec<&Server> {
        self.inv
            .servers
            .iter()
            .filter(|s| {
                let name = s.name.as_str();
                let by_name = sel.servers.iter().any(|n| n == name);
                let by_group = sel
                    .groups
                    .iter()
                    .any(|g| self.inv.group(g).is_some_and(|g| g.servers.iter().any(|m| m.as_str() == name)));
                (sel.servers.is_empty() && sel.groups.is_empty()) || by_name || by_group
            })
            .collect()
    }

    /// The groups containing any of `servers`.
    pub fn groups_of<'a>(&'a self, servers: &[&Server]) -> Vec<&'a DomainGroup> {
        self.inv.groups.iter().filter(|g| g.servers.iter().any(|m| servers.iter().any(|s| s.name == *m))).collect()
    }

    /// Render each server for review (all or nothing): certificate paths only, no keys.
    pub fn render(&self, servers: &[&Server]) -> Result<Vec<Arc<Generation>>, EngineError> {
        self.render_with(servers, None)
    }

    /// Render each server as it would be deployed with `certificates` (all or nothing).
    pub fn render_deployable(
        &self,
        servers: &[&Server],
        certificates: &CertificateSet,
    ) -> Result<Vec<Arc<Generation>>, EngineError> {
        self.render_with(servers, Some(certificates))
    }

    fn render_with(
        &self,
        servers: &[&Server],
        certificates: Option<&CertificateSet>,
    ) -> Result<Vec<Arc<Generation>>, EngineError> {
        servers
            .iter()
            .map(|s| {
                self.renderer
                    .render_with_certificates(&self.inv, s, certificates)
                    .map(Arc::new)
                    .map_err(|e| EngineError::Render { server: s.name.to_string(), message: e.to_string() })
            })
            .collect()
    }

    /// The inventory's plugins, when it configures any.
    #[cfg(feature = "plugins")]
    pub fn plugins(&self) -> Option<&Arc<PluginSet>> {
        self.plugins.as_ref()
    }

    /// Lint plugin findings over rendered generations, as (server, finding).
    #[cfg(feature = "plugins")]
    pub fn lint(&self, servers: &[&Server], gens: &[Arc<Generation>]) -> Vec<(String, PluginFinding)> {
        let Some(set) = &self.plugins else { return Vec::new() };
        servers
            .iter()
            .zip(gens)
            .flat_map(|(s, g)| set.lint(&self.inv, s, g).into_iter().map(|f| (s.name.to_string(), f)))
            .collect()
    }

    /// Render (deployable with `certificates`, for review without) and lint; lint
    /// errors stop here.
    fn render_checked(
        &self,
        servers: &[&Server],
        certificates: Option<&CertificateSet>,
    ) -> Result<Vec<Arc<Generation>>, EngineError> {
        let gens = self.render_with(servers, certificates)?;
        #[cfg(feature = "plugins")]
        self.check_lint(servers, &gens)?;
        Ok(gens)
    }

    /// Lint errors stop a deploy (warnings are logged).
    #[cfg(feature = "plugins")]
    fn check_lint(&self, servers: &[&Server], gens: &[Arc<Generation>]) -> Result<(), EngineError> {
        let findings = self.lint(servers, gens);
        for (server, f) in &findings {
            tracing::warn!(server, plugin = %f.plugin, file = %f.finding.file, line = f.finding.line, severity = ?f.finding.severity, "{}", f.finding.message);
        }
        if findings.iter().any(|(_, f)| f.finding.severity == rpcc_wasm_plugins::Severity::Error) {
            return Err(EngineError::Lint { findings });
        }
        Ok(())
    }

    /// The transport of a server, from the engine's [`TransportPool`].
    pub fn transport(&self, server: &Server) -> Result<Arc<dyn Transport>, EngineError> {
        self.transports
            .transport(server)
            .map_err(|e| EngineError::Server { server: server.name.to_string(), message: e.to_string() })
    }

    /// Run one job per server, at most 32 at once; results in input order.
    pub async fn on_each<F: std::future::Future>(jobs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        let indexed: Vec<_> = jobs.into_iter().enumerate().map(|(i, f)| async move { (i, f.await) }).collect();
        let mut done: Vec<(usize, F::Output)> =
            futures_util::stream::iter(indexed).buffer_unordered(32).collect().await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, v)| v).collect()
    }

    fn deployer(&self, probe: bool, progress: Option<Arc<ProgressFn>>, hook: Option<Arc<dyn StepHook>>) -> Deployer {
        let mut d = Deployer::new(Arc::clone(&self.store) as Arc<dyn deploy::StateStore>, &self.actor);
        if probe {
            d = d.with_probe(Arc::clone(&self.probe));
        }
        if let Some(p) = progress {
            d = d.with_progress(p);
        }
        if let Some(h) = hook {
            d = d.with_hook(h);
        }
        if let Some(s) = &self.signer {
            d = d.with_signer(Arc::clone(s));
        }
        d
    }

    /// Per selected server: what `apply` would change (or why it cannot tell).
    pub async fn plan(&self, sel: &Selection) -> Result<Vec<ServerOutcome<ServerPlan>>, EngineError> {
        self.check(sel)?;
        let servers = self.selected(sel);
        let certificates = self.certificate_set().await?;
        let gens = self.render_checked(&servers, Some(&certificates))?;
        Ok(Self::on_each(servers.iter().zip(&gens).map(|(s, g)| async move {
            let result = match self.transport(s) {
                Ok(t) => deploy::plan(&*t, s, g).await.map_err(EngineError::from),
                Err(e) => Err(e),
            };
            ServerOutcome { server: s.name.to_string(), result }
        }))
        .await)
    }

    /// A keyed audit log cannot be extended without its key: changes are refused before
    /// anything is deployed, rather than made with no audit entry.
    async fn check_audit_writable(&self) -> Result<(), EngineError> {
        if self.store.audit_keyed() {
            return Ok(());
        }
        let state = || self.store.location();
        let head = self.store.audit_head().await.map_err(|source| EngineError::State { path: state(), source })?;
        match head.as_ref().and_then(|(_, hash)| deploy::hash_key_id(hash)) {
            Some(key_id) => Err(EngineError::State {
                path: state(),
                source: deploy::StoreError::AuditKeyRequired { key_id: key_id.to_owned() },
            }),
            None => Ok(()),
        }
    }

    /// Render and deploy the selected servers under their groups' rollout policy, in
    /// two phases when certificates are due: deploy (a site without a certificate
    /// serves ACME challenges only), obtain the due certificates (self-signed ones are
    /// generated before the first phase), then deploy again to the servers whose sites
    /// got one.
    pub async fn apply(&self, sel: &Selection, options: ApplyOptions) -> Result<ApplyReport, EngineError> {
        self.check(sel)?;
        self.check_audit_writable().await?;
        let servers = self.selected(sel);
        // Lint the inventory's intent (every site as it will be once its certificate
        // exists) before any certificate work: a refused inventory changes nothing.
        self.render_checked(&servers, None)?;
        let mut outcomes = Vec::new();
        if !options.skip_certificates {
            outcomes = self.generate_self_signed(&servers, &options.certificates).await?;
        }
        let certificates = self.certificate_set().await?;
        let (fleet, mut unreachable) = self.rollout(&servers, &certificates, &options).await?;
        let mut tls_phase = None;
        if !options.skip_certificates {
            let due = self.certificates_due(&servers, &options.certificates).await?;
            let deployed = |site: &Site| {
                // Every selected server that serves the site runs this run's generation.
                servers.iter().filter(|s| self.inv.sites_for_server(s.name.as_str()).any(|x| x == site)).all(|s| {
                    fleet.servers.iter().any(|r| {
                        r.server == s.name.as_str()
                            && matches!(r.state, DeploymentState::Succeeded | DeploymentState::NoOp)
                    })
                })
            };
            let (ready, waiting): (Vec<_>, Vec<_>) = due
                .into_iter()
                .filter(|(s, _)| s.tls.mode == rpcc_core::model::TlsMode::Acme)
                .partition(|(s, _)| deployed(s));
            for (site, _) in waiting {
                outcomes.push(CertificateOutcome::deferred(
                    site,
                    "not ordered: a server that serves it was not deployed in this run",
                ));
            }
            let obtained = self.issue_acme(&ready, &options.certificates).await;
            let renewed: Vec<&str> = obtained
                .iter()
                .filter(|o| matches!(o.action, CertificateAction::Issued | CertificateAction::Renewed))
                .map(|o| o.site.as_str())
                .collect();
            let again: Vec<&Server> = servers
                .iter()
                .copied()
                .filter(|s| self.inv.sites_for_server(s.name.as_str()).any(|x| renewed.contains(&x.id().as_str())))
                .collect();
            if !again.is_empty() {
                let certificates = self.certificate_set().await?;
                let (second, unreachable_again) = self.rollout(&again, &certificates, &options).await?;
                unreachable.extend(unreachable_again);
                tls_phase = Some(second);
            }
            outcomes.extend(obtained);
        }
        let mut report =
            ApplyReport { fleet, unreachable, certificates: outcomes, tls_phase, notification_failures: Vec::new() };
        if self.inv.monitor.notify_deploys {
            let (note, groups) = report.notification(&self.inv, &self.actor);
            report.notification_failures = match self.notify(&note, &groups).await {
                Ok(failed) => failed.iter().map(ToString::to_string).collect(),
                Err(e) => vec![e.to_string()],
            };
            for why in &report.notification_failures {
                tracing::warn!(error = %why, "deploy notification not sent");
            }
        }
        Ok(report)
    }

    /// Render `servers` with `certificates` and roll them out; servers without a
    /// transport are reported unreachable.
    pub(crate) async fn rollout(
        &self,
        servers: &[&Server],
        certificates: &CertificateSet,
        options: &ApplyOptions,
    ) -> Result<(FleetReport, Vec<ServerReport>), EngineError> {
        let gens = self.render_checked(servers, Some(certificates))?;
        let mut unreachable = Vec::new();
        let mut targets = Vec::new();
        // The probe judges a site whose certificate is pending as the plain-HTTP site it
        // is for now.
        let pending: Vec<Site> = self
            .inv
            .sites
            .iter()
            .filter(|s| managed_tls(s) && certificates.get(&s.id()).is_none())
            .map(pending_view)
            .collect();
        for (s, g) in servers.iter().zip(&gens) {
            match self.transport(s) {
                Ok(t) => targets.push(FleetTarget {
                    server: s,
                    sites: self
                        .inv
                        .sites_for_server(s.name.as_str())
                        .map(|site| pending.iter().find(|p| p.domain == site.domain).unwrap_or(site))
                        .collect(),
                    source: DeploySource::Generation(g.clone()),
                    transport: t,
                }),
                Err(why) => unreachable.push(ServerReport::new(
                    s.name.as_str(),
                    deploy::AuditAction::Deploy,
                    "",
                    DeploymentState::Failed,
                    format!("not deployed: {why}"),
                )),
            }
        }
        let policy = options.rollout.apply_to(RolloutPolicy::strictest(self.groups_of(servers)));
        let d = self
            .deployer(!options.skip_probe, options.progress.clone(), options.hook.clone())
            .with_options(options.deploy.clone());
        Ok((d.rollout(&targets, &policy).await, unreachable))
    }

    /// The generation `rollback` goes to when none is named: the one before the live one.
    pub async fn rollback_target(&self, server: &Server) -> Result<Option<String>, EngineError> {
        let transport = self.transport(server)?;
        let live = deploy::status(&*transport, server, &*self.store).await.current;
        Ok(deploy::previous_generation(&*self.store, server.name.as_str(), live.as_deref()).await?)
    }

    /// Activate generation `to` (or the previous one) on `server` through the verified path.
    pub async fn rollback(&self, server: &str, to: Option<&str>) -> Result<ServerReport, EngineError> {
        let s = self.inv.server(server).ok_or_else(|| EngineError::Unknown { what: "server", name: server.into() })?;
        if let Some(to) = to
            && (to.is_empty() || !to.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(EngineError::Server {
                server: server.into(),
                message: format!("{to:?} is not a generation id (hex digits, or 0 for the original config)"),
            });
        }
        let target = match to {
            Some(t) => t.to_owned(),
            None => self.rollback_target(s).await?.ok_or_else(|| EngineError::Server {
                server: server.into(),
                message: "no earlier generation recorded; name one".into(),
            })?,
        };
        self.check_audit_writable().await?;
        let transport = self.transport(s)?;
        Ok(self.deployer(false, None, None).rollback(&*transport, s, &[], &target).await)
    }

    /// Per selected server: live generation, last deployment, lock.
    pub async fn status(&self, sel: &Selection) -> Result<Vec<ServerStatus>, EngineError> {
        self.check(sel)?;
        let servers = self.selected(sel);
        // Every server's last deployment in one query, then one round trip per server.
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        let mut last: std::collections::HashMap<String, deploy::DeploymentRecord> = self
            .store
            .last_deployments(&names)
            .await
            .map_err(|source| EngineError::State { path: self.store.location(), source })?
            .into_iter()
            .map(|d| (d.server.clone(), d))
            .collect();
        let jobs: Vec<_> = servers
            .iter()
            .map(|s| {
                let last = last.remove(s.name.as_str());
                async move {
                    match self.transport(s) {
                        Ok(t) => deploy::status_with_last(&*t, s, last).await,
                        Err(e) => ServerStatus::unreachable(s.name.to_string(), last, e.to_string()),
                    }
                }
            })
            .collect();
        Ok(Self::on_each(jobs).await)
    }

    /// Per selected server: hand edits of the live tree against the recorded generation.
    pub async fn drift(&self, sel: &Selection) -> Result<Vec<ServerOutcome<DriftReport>>, EngineError> {
        self.check(sel)?;
        let servers = self.selected(sel);
        Ok(Self::on_each(servers.iter().map(|s| async move {
            let result = match self.transport(s) {
                Ok(t) => deploy::drift(&*t, s, &*self.store).await.map_err(EngineError::from),
                Err(e) => Err(e),
            };
            ServerOutcome { server: s.name.to_string(), result }
        }))
        .await)
    }
}

/// Load the inventory's `[[plugins]]` (none configured: `None`).
#[cfg(feature = "plugins")]
pub fn load_plugins(inv: &Inventory) -> Result<Option<Arc<PluginSet>>, rpcc_wasm_plugins::PluginError> {
    if inv.plugins.is_empty() {
        return Ok(None);
    }
    let host = PluginHost::new()?;
    Ok(Some(Arc::new(PluginSet::load(&host, inv)?)))
}

#[cfg(all(test, not(feature = "plugins")))]
mod without_plugins {
    use super::*;

    /// Built without the plugin host, an inventory that configures plugins is refused
    /// (never rendered or deployed without them), saying how many and which feature.
    #[test]
    fn an_inventory_with_plugins_is_refused_naming_the_feature() {
        let inv = Inventory::from_toml_str(
            "[[servers]]\nname = \"edge-1\"\nhost = \"203.0.113.10\"\nuser = \"deploy\"\nauth = { agent = true }\n\
             [[plugins]]\nname = \"maintenance\"\npath = \"plugins/maintenance_page.wasm\"\n",
        )
        .expect("inventory");
        let store = Arc::new(rpcc_core::store::MemoryStore::new());
        let err = Engine::with_store(inv.clone(), store, None).expect_err("refused");
        assert!(matches!(err, EngineError::PluginsNotBuilt { count: 1 }), "{err}");
        assert!(err.to_string().contains("`plugins` feature"), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let err = rt.block_on(crate::watch::Monitor::new(inv, None)).expect_err("refused");
        assert!(matches!(err, crate::watch::WatchError::PluginsNotBuilt { count: 1 }), "{err}");
    }
}
