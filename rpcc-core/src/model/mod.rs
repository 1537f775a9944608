//! The desired state of a fleet: servers, domain groups and sites, already validated.
//!
//! Values of these types can only be built from validated parts (see [`crate::value`]),
//! and an [`Inventory`] only through [`Inventory::from_toml_str`] or
//! [`Inventory::from_node`], which cross-check references between them.

mod acme;
mod group;
mod inventory;
mod monitor;
mod plugin;
mod server;
mod site;

pub use acme::{AcmeSettings, LETS_ENCRYPT};
pub use group::{DomainGroup, Rollout, RolloutStrategy};
pub use inventory::{DeploySettings, EnvironmentSettings, Inventory, LoadOptions};
pub use monitor::{AlertRuleSettings, DnsResolver, GroupRules, MonitorSettings, NotifierKind, NotifierSettings};
pub use plugin::{PluginCapability, PluginLimits, PluginSettings};
pub use server::{
    GlancesSettings, NginxLayout, NginxMode, NginxSettings, NginxValidation, ReloadMethod, Server, ServerAuth,
};
pub use site::{
    BackendSpec, Balance, CertificateClient, HashKey, Limits, Location, LocationMatch, ProbeExpectation, ProxyTimeouts,
    RateLimit, Redirect, RedirectCode, SecurityHeaders, Site, TlsMode, TlsPolicy, Upstream, UpstreamScheme,
    WwwRedirect,
};
