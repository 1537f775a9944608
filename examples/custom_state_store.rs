//! Deploy with your own `StateStore`: here one that keeps everything in memory and also
//! forwards every audit entry (e.g. to a SIEM), deploying to a throwaway loopback server
//! (real `sshd` + `nginx` from rpcc-testkit; `scripts/setup-host` installs them).
//!
//! `cargo run --example custom_state_store`

#![allow(clippy::print_stdout, clippy::print_stderr)] // example programs report on the terminal

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpcc::core::Inventory;
use rpcc::core::deploy::{
    AuditEvent, AuditRecord, Deployer, DeploymentRecord, DeploymentState, LocalLock, MemoryStore, NewDeployment,
    StateStore, StoreError,
};
use rpcc::core::generation::Manifest;
use rpcc::core::generation::Renderer as _;
use rpcc::monitor::HttpHealthProbe;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::ssh::{SshPool, SshTarget};

/// Everything in memory, and each audit entry forwarded as it is appended.
#[derive(Default)]
struct ForwardingStore {
    inner: MemoryStore,
    forwarded: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl StateStore for ForwardingStore {
    async fn record_generation(&self, server: &str, manifest: &Manifest) -> Result<(), StoreError> {
        self.inner.record_generation(server, manifest).await
    }
    async fn generation(&self, server: &str, id: &str) -> Result<Option<Manifest>, StoreError> {
        self.inner.generation(server, id).await
    }
    async fn start_deployment(&self, deployment: &NewDeployment) -> Result<i64, StoreError> {
        self.inner.start_deployment(deployment).await
    }
    async fn finish_deployment(&self, id: i64, state: DeploymentState, detail: &str) -> Result<(), StoreError> {
        self.inner.finish_deployment(id, state, detail).await
    }
    async fn abandon_running(&self, server: &str) -> Result<u64, StoreError> {
        self.inner.abandon_running(server).await
    }
    async fn deployments(&self, server: Option<&str>, limit: u32) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.inner.deployments(server, limit).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError> {
        let record = self.inner.append_audit(event).await?;
        let line =
            format!("#{} {:?} {} {}", record.seq, event.action, event.server.as_deref().unwrap_or("-"), event.outcome);
        self.forwarded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        Ok(record)
    }
    async fn audit_log(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.audit_log().await
    }
    async fn lock_server(&self, server: &str, holder: &str, wait: Duration) -> Result<LocalLock, StoreError> {
        self.inner.lock_server(server, holder, wait).await
    }
}

fn main() -> anyhow::Result<()> {
    let fleet = rpcc_testkit::Fleet::start(1)?; // stopped (by PID) when dropped
    let toml = fleet.deploy_inventory_toml()
        + "\n[[sites]]\ndomain = \"shop.example.test\"\ngroup = \"all\"\n\
           upstream = { backends = [\"127.0.0.1:9\"] }\ntls = { mode = \"off\" }\nhealth_path = \"/healthz\"\n";
    let inv = Inventory::from_toml_str(&toml)?;
    let server = &inv.servers[0];
    let generation = Arc::new(NginxRenderer::new(RenderOptions::default())?.render(&inv, server)?);

    let store = Arc::new(ForwardingStore::default());
    let deployer = Deployer::new(store.clone(), "example@localhost")
        .with_probe(Arc::new(HttpHealthProbe::new(Duration::from_secs(3))));
    let pool = SshPool::new(); // one pooled connection per server
    let transport = pool.transport(SshTarget::from_server(server, Path::new("/"), None)?)?;
    let sites: Vec<_> = inv.sites_for_server(server.name.as_str()).collect();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(deployer.deploy(&*transport, server, &sites, generation.clone()));
    println!("{}: {} ({} round trips): {}", report.server, report.state.as_str(), report.round_trips, report.detail);
    anyhow::ensure!(report.state == DeploymentState::Succeeded, "deploy failed");
    let again = rt.block_on(deployer.deploy(&*transport, server, &sites, generation));
    println!("again: {} ({} round trip)", again.state.as_str(), again.round_trips);

    let forwarded = store.forwarded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    println!("audit entries forwarded:");
    for line in &forwarded {
        println!("  {line}");
    }
    anyhow::ensure!(!forwarded.is_empty(), "nothing forwarded");
    Ok(())
}
