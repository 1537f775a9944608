//! A `no_std` template plugin that panics or allocates without end when its config
//! `mode` says so.
#![no_std]

use rpcc_plugin_sdk::prelude::*;

struct NoStdHostile;

impl TemplatePlugin for NoStdHostile {
    fn manifest() -> Manifest {
        Manifest::new("nostd-hostile", "0.1.0", "misbehaves without std")
    }

    fn render(site: SiteView, _server: ServerView) -> Result<TemplateOutput, String> {
        match site.config("mode") {
            Some("panic") => panic!("no_std plugin panicked for {}", site.domain),
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            _ => Ok(TemplateOutput::Fragments(vec![Fragment::text(
                InsertionPoint::Server,
                "add_header X-No-Std yes always;",
            )])),
        }
    }
}

rpcc_plugin_sdk::export_plugin!(template: NoStdHostile);
