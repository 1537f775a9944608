//! A template plugin that misbehaves in the way its site config `mode` asks.
use rpcc_plugin_sdk::prelude::*;
use std::hint::black_box;

struct Hostile;

fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if black_box(n) == u64::MAX { pad[0] } else { recurse(n + 1).wrapping_add(pad[3]) }
}

/// Recursion that lives on the engine's native stack (no locals in linear memory).
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 { 0 } else { deep(n - 1).wrapping_mul(3).wrapping_add(n) }
}

impl TemplatePlugin for Hostile {
    fn manifest() -> Manifest {
        Manifest::new("hostile", "6.6.6", "misbehaves on purpose")
    }

    fn render(site: SiteView, _server: ServerView) -> Result<TemplateOutput, String> {
        let text = |t: &str| Ok(TemplateOutput::Fragments(vec![Fragment::text(InsertionPoint::Server, t)]));
        match site.config("mode").unwrap_or("fine") {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => {
                black_box(recurse(0));
                text("return 204;")
            }
            "deep" => {
                let n = deep(black_box(u64::MAX / 2));
                text(&format!("add_header X-Deep {n};"))
            }
            "panic" => panic!("hostile plugin panicked on purpose for {}", site.domain),
            "output" => {
                let mb: usize = site.config("mb").and_then(|s| s.parse().ok()).unwrap_or(100);
                let one = "add_header X-Pad aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;\n";
                text(&one.repeat(mb * (1 << 20) / one.len()))
            }
            "include" => text("include /etc/shadow;"),
            "lua" => text("content_by_lua_block { return 1; }"),
            "dollar" => text("return 302 https://evil.example/$request_uri;"),
            "quote" => text("add_header X \"a\"; include /etc/shadow; #\";"),
            "structured-include" => Ok(TemplateOutput::Fragments(vec![Fragment::directives(
                InsertionPoint::Server,
                vec![Directive::new("location", &["/x"]).block(), Directive::new("include", &["/etc/shadow"]).inside(0)],
            )])),
            "bad-parent" => Ok(TemplateOutput::Fragments(vec![Fragment::directives(
                InsertionPoint::Server,
                vec![Directive::new("return", &["204"]).inside(5)],
            )])),
            // Whatever nginx text the test puts in config `text`, at the server level, or
            // (`text-location`) in the site's main location.
            "text" => text(site.config("text").unwrap_or_default()),
            "text-location" => Ok(TemplateOutput::Fragments(vec![Fragment::text(
                InsertionPoint::MainLocation,
                site.config("text").unwrap_or_default(),
            )])),
            // The same text as the whole body of the site's main server block.
            "body" => {
                Ok(TemplateOutput::ServerBlock(FragmentBody::Text(site.config("text").unwrap_or_default().into())))
            }
            "error" => Err("the plugin refuses this site".to_string()),
            _ => text("add_header X-Hostile fine always;"),
        }
    }
}

rpcc_plugin_sdk::export_plugin!(template: Hostile);
