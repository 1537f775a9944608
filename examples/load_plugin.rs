//! Load WASM plugins named by an inventory and render with them: a template plugin adds
//! a maintenance page to a site, a lint plugin reviews the rendered tree. Each call runs
//! in a fresh sandbox (fuel, deadline, memory and output limits; no file system or
//! network unless granted).
//!
//! `cargo run --example load_plugin` (builds the example plugins for wasm32-wasip2 on
//! first use; `rustup target add wasm32-wasip2`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // example programs report on the terminal

use std::sync::Arc;

use rpcc::core::Inventory;
use rpcc::core::fragment::SiteExtension;
use rpcc::core::generation::Renderer as _;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::plugins::{PluginHost, PluginSet};

fn main() -> anyhow::Result<()> {
    let built = rpcc_testkit::wasm_plugins()?;
    let toml = format!(
        r#"
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
auth = {{ agent = true }}

[[groups]]
name = "all"
servers = ["edge-1"]

[[plugins]]
name = "maintenance"
path = "{maintenance}"
config = {{ enabled = "true", message = "Back at 10:00", retry_after = "600" }}

[[plugins]]
name = "headers"
path = "{headers}"

[[sites]]
domain = "shop.example.com"
group = "all"
upstream = {{ backends = ["10.0.0.5:8080"] }}
tls = {{ mode = "off" }}
plugins = ["maintenance", "headers"]
"#,
        maintenance = built.join("maintenance_page.wasm").display(),
        headers = built.join("security_headers.wasm").display(),
    );
    let inv = Inventory::from_toml_str(&toml)?;
    // One host (engine + compiled-component cache) for every plugin of the inventory.
    let host = PluginHost::new()?;
    let plugins = Arc::new(PluginSet::load(&host, &inv)?);
    let renderer =
        NginxRenderer::new(RenderOptions::default())?.with_extension(Arc::clone(&plugins) as Arc<dyn SiteExtension>);
    let server = &inv.servers[0];
    let generation = renderer.render(&inv, server)?;
    let site = generation
        .files()
        .iter()
        .find(|(p, _)| p.as_str() == "sites/shop.example.com.conf")
        .map(|(_, f)| String::from_utf8_lossy(&f.bytes).into_owned())
        .unwrap_or_default();
    let maintenance: Vec<&str> = site.lines().filter(|l| l.contains("maintenance") || l.contains("503")).collect();
    println!("template plugin's lines in sites/shop.example.com.conf:");
    for line in &maintenance {
        println!("  {}", line.trim());
    }
    anyhow::ensure!(!maintenance.is_empty(), "the maintenance plugin added nothing:\n{site}");
    println!("lint findings:");
    for f in plugins.lint(&inv, server, &generation) {
        println!(
            "  [{}] {:?} {}:{}: {}",
            f.plugin, f.finding.severity, f.finding.file, f.finding.line, f.finding.message
        );
    }
    Ok(())
}
