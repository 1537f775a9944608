//! What a plugin sees of the inventory: never credentials, never other servers.

use rpcc_core::model::{Inventory, Server, Site};

use crate::bindings::v0_1::shared::rpcc::plugin::types::{ServerView, SiteView};

/// The view of `server` handed to plugins (name, address, groups).
pub fn server_view(inventory: &Inventory, server: &Server) -> ServerView {
    ServerView {
        name: server.name.to_string(),
        address: server.host.to_string(),
        groups: inventory.groups_of_server(server.name.as_str()).map(|g| g.name.to_string()).collect(),
    }
}

/// The view of `site` handed to a plugin configured with `config`.
pub fn site_view(site: &Site, config: &[(String, String)]) -> SiteView {
    let mut headers: Vec<(String, String)> =
        site.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())).collect();
    if let Some(csp) = &site.security.csp {
        headers.push(("Content-Security-Policy".into(), csp.as_str().to_owned()));
    }
    SiteView {
        domain: site.domain.to_string(),
        aliases: site.aliases.iter().map(ToString::to_string).collect(),
        group: site.group.to_string(),
        tls: site.tls.mode != rpcc_core::model::TlsMode::Off,
        maintenance: site.maintenance,
        health_path: site.health_path.as_ref().map(|p| p.as_str().to_owned()),
        backends: site
            .upstream
            .as_ref()
            .map(|u| u.backends.iter().map(|b| b.address.to_string()).collect())
            .unwrap_or_default(),
        headers,
        config: config.to_vec(),
    }
}
