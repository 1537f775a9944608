//! # rpcc-core
//!
//! The heart of rpcc, with no dependency on any other rpcc crate:
//!
//! - [`value`]: validated newtypes (`DomainName`, `Port`, `Backend`, `HeaderValue`,
//!   `UrlPath`, sizes, durations, rates …): every string that reaches an nginx config
//!   or a remote command passes an allow-list here.
//! - [`model`]: `Server`, `DomainGroup`, `Site`, `Upstream`, TLS policy, locations,
//!   redirects, limits, headers, and the cross-checked [`model::Inventory`].
//! - [`inventory`]: loading TOML (or any serde source) with **all** errors reported at
//!   once, each with its path (`sites[3].upstream.backends[1]`) and line/column.
//! - [`transport`]: the `Transport` role (run an argv, upload bytes) and
//!   [`local::LocalTransport`].
//!
//! - [`generation`]: the content-addressed rendered tree and the `Renderer` role.
//! - [`deploy`]: the deploy engine (staged generations, atomic switch, verified reload,
//!   restore, fleet rollout, plan, drift) and the `HealthProbe` role.
//! - [`store`]: the `StateStore` and `SecretStore` roles, `StoreError`, `MemoryStore`.
//!
//! - [`keyring`]: the versioned keyring, `rpcc:v1` envelopes, secret fields, rotation
//!   and legacy Fernet import.
//!
//! - [`certs`]: stored certificates, the `CertificateStore` role and the set a render
//!   puts into generations.
//!
//! - [`fragment`]: nginx fragments from template plugins, parsed and checked against an
//!   allow-list before rpcc writes them out itself.
//!
//! ```
//! use rpcc_core::model::Inventory;
//!
//! let err = Inventory::from_toml_str(r#"
//!     [[sites]]
//!     domain = "app.example.com"
//!     group = "eu"
//!     upstream = { backends = ["10.0.0.5:99999"] }
//! "#).unwrap_err();
//! let text = err.to_string();
//! assert!(text.contains("sites[0].upstream.backends[0]"));
//! assert!(text.contains("sites[0].group"));
//! ```

pub mod certs;
pub mod deploy;
pub mod error;
pub mod fragment;
pub mod generation;
pub mod inventory;
pub mod keyring;
pub mod local;
pub mod model;
pub mod store;
pub mod time;
pub mod transport;
pub mod validate;
pub mod value;

pub use error::Error;
pub use model::{Inventory, LoadOptions};
pub use validate::{FieldError, FieldPath, ValidationErrors};
