//! # rpcc-nginx
//!
//! Renders one deterministic nginx configuration tree (a
//! [`Generation`](rpcc_core::generation::Generation)) per server from a validated
//! [`Inventory`](rpcc_core::Inventory), with minijinja templates embedded in the binary
//! (strict undefined, no HTML escaping) that an operator may override file by file.
//!
//! Tree layout (paths absolute under `<managed root>/generations/<id>/` on the server,
//! so a staged tree validates exactly as it will load):
//!
//! - `nginx.conf`: the main file (owned mode only; in include mode the server keeps its
//!   own `nginx.conf`, whose `http` block includes our `http.conf`);
//! - `http.conf`: http-level settings, TLS defaults (Mozilla intermediate), log
//!   formats (optionally JSON), the websocket `map`, shared `limit_req`/`limit_conn`
//!   zones, a default server that closes unknown names, and `include sites/*.conf`;
//! - `sites/<domain>.conf`: one file per site (upstreams and server blocks). A site's
//!   file depends only on that site and the server's listen/TLS-syntax facts, so
//!   changing one site changes one file (plus the two files that name the generation)
//!   — except that ACME and self-signed sites name their certificate inside the
//!   generation, so their files change with every generation;
//! - `certs/<domain>/fullchain.pem` and `privkey.pem` (mode 0600): the certificate of
//!   each ACME or self-signed site, when the render was given them
//!   ([`NginxRenderer::render_with_certificates`]); a rollback restores config and
//!   certificate together. Without one yet, the site is served over plain HTTP for ACME
//!   challenges only. `custom` sites keep pointing at their files on the server;
//! - `mime.types`.
//!
//! The ACME webroot is `<managed root>/acme`, outside generations.
//!
//! Every value in a directive passes a filter (`arg`, `words`, `q`) that refuses
//! anything nginx cannot hold safely, behind core's validation. The generation id is a
//! hash of the templates and of all data the templates see, so the same inventory
//! always yields the same id and bytes. Sites render in parallel, and a site whose
//! inputs did not change since the last render of that server comes from a cache keyed
//! by the SHA-256 of those inputs.

mod error;
mod options;
mod render;
mod view;

pub use error::RenderError;
pub use options::{MOZILLA_INTERMEDIATE_CIPHERS, RenderConfig, RenderOptions};
pub use render::{NginxRenderer, TemplateInput};

/// The path of a site's file in a rendered generation, e.g. `sites/app.example.com.conf`.
pub fn site_conf_path(site: &rpcc_core::model::Site) -> String {
    format!("sites/{}.conf", view::site_id(site))
}
