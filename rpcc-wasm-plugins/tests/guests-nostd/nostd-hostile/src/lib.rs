//! A `no_std` template plugin that panics, allocates without end, or returns output
//! bombs when its config `mode` says so.
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
            // `count` list entries that all point at one 1 MiB buffer: a few MiB of guest
            // memory that would be `count` MiB once copied into the host.
            Some("aliased") => {
                let n: usize = site.config("count").and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
                let mut big = vec![b'a'; 1 << 20];
                let (ptr, len) = (big.as_mut_ptr(), big.len());
                core::mem::forget(big);
                // SAFETY (of a sort): the aliases are only read by the host; the SDK's
                // bump allocator never frees, so no double free happens after the call.
                let args: Vec<String> = (0..n).map(|_| unsafe { String::from_raw_parts(ptr, len, len) }).collect();
                Ok(bomb(args))
            }
            // `count` empty strings: nothing in bytes, a lot in entries.
            Some("empty") => {
                let n: usize = site.config("count").and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
                Ok(bomb((0..n).map(|_| String::new()).collect()))
            }
            _ => Ok(TemplateOutput::Fragments(vec![Fragment::text(
                InsertionPoint::Server,
                "add_header X-No-Std yes always;",
            )])),
        }
    }
}

/// One `add_header` directive carrying `args`.
fn bomb(args: Vec<String>) -> TemplateOutput {
    let d = Directive { name: "add_header".into(), args, parent: None, block: false };
    TemplateOutput::Fragments(vec![Fragment::directives(InsertionPoint::Server, vec![d])])
}

rpcc_plugin_sdk::export_plugin!(template: NoStdHostile);
