//! # rpcc-wasm-plugins
//!
//! The host for rpcc's WebAssembly plugins: components built against the WIT package
//! `rpcc:plugin@0.1.0` (in `wit/rpcc-plugin@0.1.0/`; bindings in a module per version,
//! and any semver-compatible `0.1.x` build loads: [`WitVersion`]) that implement one of
//! three worlds:
//!
//! * `template-plugin`: nginx fragments for a site (or the body of its server block),
//!   checked against the operator's `allow_directives` and rpcc's value rules, then
//!   written out by rpcc itself;
//! * `check-plugin`: a check of a site on a server through the granted `http-get`
//!   capability (the site's own name, on that server only);
//! * `lint-plugin`: findings over a server's rendered generation.
//!
//! Every call runs in a fresh instance with **fuel, an epoch deadline (wall-clock
//! timeout), a memory limit and an output cap always on**. A plugin gets no
//! filesystem, network, clock or environment beyond what its manifest requests and the
//! operator grants; a plugin importing anything else fails to load.
//!
//! ```no_run
//! use rpcc_wasm_plugins::{PluginHost, PluginSpec};
//!
//! let host = PluginHost::new().unwrap();
//! let plugin = host.load(&PluginSpec::from_file("plugins/maintenance_page.wasm")).unwrap();
//! println!("{} {} ({:?})", plugin.manifest().name, plugin.manifest().version, plugin.kind());
//! ```

mod bindings;
mod error;
mod host;
mod plugin;
mod set;
mod spec;
mod state;
mod view;
mod wit_version;

pub use error::PluginError;
pub use host::PluginHost;
pub use plugin::Plugin;
pub use set::{PluginFinding, PluginSet};
pub use spec::{
    CheckOutcome, CheckStatus, Finding, HttpResponse, LogLine, PluginKind, PluginManifest, PluginSpec, Severity,
    SiteHttp, SiteHttpError,
};
pub use view::{server_view, site_view};

pub use wit_version::{WIT_VERSION, WIT_VERSIONS, WitVersion};
