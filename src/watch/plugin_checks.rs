//! Check plugins in a monitoring round (feature `plugins`): each (site, server) on a
//! blocking thread, the plugin's `http-get` pinned to that site on that server.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rpcc_monitor::{SiteProber, SiteTarget};
use rpcc_wasm_plugins::{SiteHttp, SiteHttpError};

use super::{Monitor, PluginCheckRow};

/// A check plugin's `http-get`: one site on one server, through the monitor's prober.
struct ProberHttp {
    prober: Arc<SiteProber>,
    target: SiteTarget,
    runtime: tokio::runtime::Handle,
}

impl SiteHttp for ProberHttp {
    fn get(&self, path: &str, timeout: Duration) -> Result<rpcc_wasm_plugins::HttpResponse, SiteHttpError> {
        let fetch = self.prober.fetch(&self.target, path, 64 * 1024);
        match self.runtime.block_on(tokio::time::timeout(timeout, fetch)) {
            Ok(Ok(r)) => Ok(rpcc_wasm_plugins::HttpResponse { status: r.status, headers: r.headers, body: r.body }),
            Ok(Err(e)) => Err(SiteHttpError::Failed(e)),
            Err(_) => Err(SiteHttpError::Timeout(timeout)),
        }
    }
}

/// Check plugins of every (site, server), each on a blocking thread (plugins are
/// synchronous; their `http-get` goes through the prober on this runtime).
pub(super) async fn run(monitor: &Monitor, owns: &(dyn Fn(&str) -> bool + Sync)) -> Vec<PluginCheckRow> {
    let Some(set) = &monitor.plugins else { return Vec::new() };
    let runtime = tokio::runtime::Handle::current();
    let jobs = monitor.targets.iter().filter(|t| owns(&t.server)).filter_map(|t| {
        let site = monitor.inv.sites.iter().find(|s| s.domain.as_str() == t.domain)?;
        if !set.has_checks(&monitor.inv, site) {
            return None;
        }
        let (inv, set, target) = (Arc::clone(&monitor.inv), Arc::clone(set), t.clone());
        let http: Arc<dyn SiteHttp> =
            Arc::new(ProberHttp { prober: Arc::clone(&monitor.prober), target: t.clone(), runtime: runtime.clone() });
        Some(tokio::task::spawn_blocking(move || {
            let (Some(server), Some(site)) =
                (inv.server(&target.server), inv.sites.iter().find(|s| s.domain.as_str() == target.domain))
            else {
                return Vec::new();
            };
            set.checks(&inv, server, site, &http)
                .into_iter()
                .map(|(plugin, r)| {
                    let (status, message) = match r {
                        Ok(o) => (format!("{:?}", o.status).to_lowercase(), o.message),
                        Err(e) => ("error".to_owned(), e.to_string()),
                    };
                    PluginCheckRow {
                        site: target.domain.clone(),
                        server: target.server.clone(),
                        plugin,
                        status,
                        message,
                    }
                })
                .collect::<Vec<_>>()
        }))
    });
    let done = futures_util::stream::iter(jobs).buffered(monitor.concurrency.min(8)).collect::<Vec<_>>().await;
    done.into_iter().filter_map(Result::ok).flatten().collect()
}
