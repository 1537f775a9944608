//! Validate an inventory and render each server's nginx tree, touching no server.
//!
//! `cargo run --example validate_render [inventory.toml]` (default: the repository's
//! `examples/inventory.toml`, documentation addresses only).

#![allow(clippy::print_stdout, clippy::print_stderr)] // example programs report on the terminal

use std::path::PathBuf;

use rpcc::core::Inventory;
use rpcc::core::generation::Renderer as _;
use rpcc::nginx::{NginxRenderer, RenderOptions};

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml"), PathBuf::from);
    // Every problem at once, each naming its field, line and column; nothing renders
    // from an inventory that failed validation.
    let inv = match Inventory::from_toml_file(&path) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    println!(
        "{}: {} servers, {} groups, {} sites",
        path.display(),
        inv.servers.len(),
        inv.groups.len(),
        inv.sites.len()
    );
    let renderer = NginxRenderer::new(RenderOptions::default())?;
    for server in &inv.servers {
        let generation = renderer.render(&inv, server)?;
        let bytes: usize = generation.files().values().map(|f| f.bytes.len()).sum();
        println!("{}: generation {}, {} files, {bytes} bytes", server.name, generation.id(), generation.files().len());
        for path in generation.files().keys().filter(|p| p.as_str().starts_with("sites/")).take(3) {
            println!("  {path}");
        }
    }
    Ok(())
}
