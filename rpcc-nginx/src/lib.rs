//! # rpcc-nginx
//!
//! Renders one deterministic nginx configuration tree (a
//! [`Generation`](rpcc_core::generation::Generation)) per server from a validated
//! [`Inventory`](rpcc_core::Inventory), with minijinja templates embedded in the binary
//! (strict undefined, no HTML escaping) that an operator may override file by file.
//!
//! Tree layout (all paths absolute under `<managed root>/generations/<id>/` on the
//! server, so a staged tree validates exactly as it will load):
//!
//! - `nginx.conf`: the main file (owned mode only; include mode keeps the server's own
//!   and includes `http.conf`);
//! - `http.conf`: http-level settings, TLS defaults (Mozilla intermediate), log
//!   formats, the websocket `map`, shared `limit_req`/`limit_conn` zones, a default
//!   server that closes unknown names, and `include sites/*.conf`;
//! - `sites/<domain>.conf`: one file per site (upstreams and server blocks);
//! - `snippets/proxy.conf`, `html/*.html`, `mime.types`.
//!
//! Filters that put values into directives (`arg`, `words`, `q`) refuse anything nginx
//! cannot hold safely, behind core's validation. The generation id is the hash of the
//! tree with the generation directory left as a placeholder, so the same inventory
//! always yields the same id and bytes.

mod error;
mod options;
mod render;
mod view;

pub use error::RenderError;
pub use options::{MOZILLA_INTERMEDIATE_CIPHERS, RenderConfig, RenderOptions};
pub use render::{NginxRenderer, TemplateInput};
