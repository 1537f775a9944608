//! Loading an inventory: TOML (or any serde source) → [`Node`] tree → validated
//! [`crate::model::Inventory`], reporting **every** error with its path and location.

mod acme;
mod check;
mod decoder;
mod env;
mod load;
mod monitor;
mod node;
mod plugin;
mod probe;
mod server;
// Shared by `site` and `site_parts` (declared before them: macro scope is textual).
macro_rules! opt {
    ($t:expr, $d:expr, $key:literal, $default:expr, |$n:ident, $p:ident| $body:expr) => {
        match $t.get($key) {
            Some(($n, $p)) => $body,
            None => Some($default),
        }
    };
}
mod site;
mod site_parts;

pub use node::{Node, NodeKind, TableEntry, TomlSyntaxError};

pub(crate) use acme::decode_acme;
pub(crate) use check::cross_check;
pub(crate) use decoder::Decoder;
pub(crate) use monitor::decode_monitor;
pub(crate) use plugin::decode_plugin;
pub(crate) use server::{decode_group, decode_server};
pub(crate) use site::decode_site;

/// Known top-level fields.
pub(crate) const TOP_LEVEL: &[&str] = &["servers", "groups", "sites", "monitor", "plugins", "acme", "deploy", "env"];
