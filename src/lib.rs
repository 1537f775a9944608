//! # rpcc
//!
//! rpcc keeps a fleet of nginx reverse-proxy servers configured, deployed, certified and
//! watched, safely. This facade re-exports the crates:
//!
//! - [`engine`]: [`engine::Engine`], the fleet operations (plan, apply, rollback, status,
//!   drift) over one inventory, its SQLite state and pooled SSH connections, and its
//!   notifiers ([`engine::Engine::notify`]; `apply` reports its outcome to them when the
//!   inventory asks), shared by the CLI and the Python package;
//! - [`watch`], [`watch::Monitor`] (one round of metrics, site, DNS and plugin checks)
//!   and [`watch::Watch`] (rounds on an interval with alerts, samples and certificate
//!   renewal, until stopped);
//! - [`certs`]: the certificates of an engine's sites (due, self-signed, ACME
//!   issuance across every serving server, the set a deployable render carries);
//! - [`core`] (`rpcc-core`): validated model, inventory loading, transports, the deploy
//!   engine (`core::deploy`) and the keyring (`core::keyring`);
//! - [`ssh`] (russh transport), [`nginx`] (renderer), [`store`] (SQLite state),
//!   [`monitor`] (health probes, Glances metrics, DNS checks, alert rules, notifiers),
//!   [`acme`], `plugins` (the wasmtime plugin host): adapters, each documenting its
//!   state.
//!
//! Features (both default): `cli`, the `rpcc` command-line tool (clap, indicatif,
//! tracing-subscriber); `plugins`, WASM plugins through wasmtime (without it an
//! inventory with `[[plugins]]` is refused: `EngineError::PluginsNotBuilt`). With
//! `default-features = false` the library is the engine without either.
//!
//! ```
//! let inv = rpcc::core::Inventory::from_toml_str(r#"
//!     [[servers]]
//!     name = "edge-1"
//!     host = "203.0.113.10"
//!     user = "deploy"
//!     auth = { agent = true }
//! "#).unwrap();
//! assert_eq!(inv.servers.len(), 1);
//! ```

pub mod certs;
pub mod engine;
pub mod watch;

pub use rpcc_acme as acme;
pub use rpcc_core as core;
pub use rpcc_monitor as monitor;
pub use rpcc_nginx as nginx;
pub use rpcc_ssh as ssh;
pub use rpcc_store as store;
#[cfg(feature = "plugins")]
pub use rpcc_wasm_plugins as plugins;
