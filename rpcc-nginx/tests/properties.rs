//! Property: every valid inventory renders, and whatever the (valid) input, the output
//! only contains nginx variables the templates write themselves, balanced quotes and
//! braces, and no control characters: input can add arguments, never syntax.

use proptest::prelude::*;
use rpcc_core::generation::Renderer;
use rpcc_core::inventory::Node;
use rpcc_core::model::Inventory;
use rpcc_nginx::{NginxRenderer, RenderOptions};
use serde_json::json;

/// Variables the built-in templates emit.
const TEMPLATE_VARIABLES: &[&str] = &[
    "host",
    "request_uri",
    "remote_addr",
    "binary_remote_addr",
    "http_upgrade",
    "connection_upgrade",
    "proxy_add_x_forwarded_for",
    "scheme",
    "uri",
    "remote_user",
    "time_local",
    "request",
    "status",
    "body_bytes_sent",
    "http_referer",
    "http_user_agent",
    "request_time",
    "upstream_response_time",
    "time_iso8601",
];

fn scan(path: &str, text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(format!("{path}: control character {c:?}"));
    }
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        if code.matches('"').count() % 2 != 0 {
            return Err(format!("{path}:{}: unbalanced quotes: {line}", n + 1));
        }
        let mut rest = code;
        while let Some(i) = rest.find('$') {
            let name: String = rest[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$` inside a regex location (`\.(?:css|js)$`) is an anchor, not a variable.
            if !name.is_empty() && !TEMPLATE_VARIABLES.contains(&name.as_str()) {
                return Err(format!("{path}:{}: unexpected variable ${name}: {line}", n + 1));
            }
            rest = &rest[i + 1..];
        }
    }
    let stripped: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let (open, close) = (stripped.matches('{').count(), stripped.matches('}').count());
    if open != close {
        return Err(format!("{path}: {open} '{{' but {close} '}}'"));
    }
    Ok(())
}

fn site_strategy() -> impl Strategy<Value = serde_json::Value> {
    (
        "[a-z]([a-z0-9-]{0,11}[a-z0-9])?",
        prop::collection::vec("[a-z]{1,8}\\.[a-z]{2,6}", 0..3),
        prop::collection::vec((any::<[u8; 3]>(), 1u16..65535), 1..4),
        prop_oneof![Just("round_robin"), Just("least_conn"), Just("ip_hash")],
        prop_oneof![Just("acme"), Just("self_signed"), Just("off")],
        "[A-Za-z0-9,.:=/()!&+*%@~_-]([A-Za-z0-9 ,.:=/()!&+*%@~_-]{0,38}[A-Za-z0-9])?",
        "(/[a-zA-Z0-9_~!&+,=:@*()-][a-zA-Z0-9._~!&+,=:@*()-]{0,8}){1,2}",
        "(default-src|img-src|script-src) ('self'|'none'|https://[a-z]{1,8}\\.example|data:)",
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(label, aliases, backends, balance, tls, header, path, csp, websocket, maintenance)| {
            let mut backends: Vec<String> =
                backends.iter().map(|([a, b, c], port)| format!("10.{a}.{b}.{c}:{port}")).collect();
            backends.sort();
            backends.dedup();
            json!({
                "domain": format!("{label}.example.com"),
                "aliases": aliases.iter().enumerate().map(|(k, a)| format!("{label}-{k}.{a}")).collect::<Vec<_>>(),
                "group": "all",
                "upstream": {"backends": backends, "balance": balance},
                "tls": {"mode": tls},
                "headers": {"X-Custom": header},
                "health_path": path,
                "security": {"csp": csp},
                "websocket": websocket,
                "maintenance": maintenance,
                "locations": [{"path": format!("{path}/api/"), "rate_limit": {"rate": "7r/s", "burst": 3}}],
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_inventories_render_safe_configs(sites in prop::collection::vec(site_strategy(), 1..6)) {
        // Make every name unique by prefixing the site's position.
        let sites: Vec<serde_json::Value> = sites
            .into_iter()
            .enumerate()
            .map(|(i, mut site)| {
                let domain = format!("s{i}-{}", site["domain"].as_str().unwrap_or_default());
                site["domain"] = json!(domain);
                let aliases: Vec<String> =
                    site["aliases"].as_array().into_iter().flatten().map(|a| format!("s{i}-{}", a.as_str().unwrap_or_default())).collect();
                site["aliases"] = json!(aliases);
                site
            })
            .collect();
        let doc = json!({
            "servers": [{"name": "edge-1", "host": "203.0.113.10", "user": "deploy", "auth": {"agent": true}}],
            "groups": [{"name": "all", "servers": ["edge-1"]}],
            "sites": sites,
        });
        let node: Node = serde_json::from_value(doc).expect("node");
        // The generators only produce valid values, so validation must accept them all.
        let inv = match Inventory::from_node(&node) {
            Ok(inv) => inv,
            Err(e) => return Err(TestCaseError::fail(format!("a valid inventory was refused: {e}"))),
        };
        let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
        let generation = renderer.render(&inv, &inv.servers[0]).expect("a valid inventory always renders");
        prop_assert_eq!(generation.files().keys().filter(|p| p.as_str().starts_with("sites/")).count(), inv.sites.len());
        for (path, file) in generation.files() {
            let text = std::str::from_utf8(&file.bytes).expect("utf-8");
            if let Err(e) = scan(path.as_str(), text) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn the_scan_catches_what_it_must() {
    assert!(scan("x", "server_name a;\n").is_ok());
    assert!(scan("x", "return 301 https://$host$request_uri;\n").is_ok());
    assert!(scan("x", "add_header X \"$cookie_a\";\n").is_err());
    assert!(scan("x", "add_header X \"a;\n").is_err());
    assert!(scan("x", "server {\n").is_err());
    assert!(scan("x", "a \u{7};\n").is_err());
}
