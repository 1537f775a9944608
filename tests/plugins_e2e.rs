//! WASM plugins end to end, with the example plugins (`examples/plugins`): a template
//! plugin rendered into a real deploy (`nginx -t` and reload on a testkit server) and
//! serving its page, check plugins against that real nginx through `rpcc check`, a lint
//! plugin reporting findings and stopping `rpcc apply`, and `rpcc plugin check`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rpcc_testkit::Fleet;
use sha2::Digest as _;

fn rpcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpcc"))
        .args(args)
        .env_remove("RPCC_KEYS")
        .env_remove("RPCC_STATE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rpcc")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A raw HTTP/1.0 GET with a Host header; (status line, headers+body).
fn get(port: u16, host: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn copy_plugins(dir: &Path) -> anyhow::Result<String> {
    let built = rpcc_testkit::wasm_plugins()?;
    std::fs::create_dir_all(dir.join("plugins"))?;
    for name in ["maintenance_page", "expected_status", "security_headers"] {
        std::fs::copy(built.join(format!("{name}.wasm")), dir.join(format!("plugins/{name}.wasm")))?;
    }
    let bytes = std::fs::read(dir.join("plugins/maintenance_page.wasm"))?;
    Ok(sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

fn plugins_toml(sha: &str) -> String {
    format!(
        r#"
[[plugins]]
name = "maintenance"
path = "plugins/maintenance_page.wasm"
sha256 = "{sha}"
config = {{ enabled = "true", message = "Upgrading the database", retry_after = "120" }}

[[plugins]]
name = "healthy"
path = "plugins/expected_status.wasm"
grant = ["http-get", "clock"]

[[plugins]]
name = "down-for-maintenance"
path = "plugins/expected_status.wasm"
grant = ["http-get", "clock"]
config = {{ path = "/", status = "503" }}

[[plugins]]
name = "wrong-expectation"
path = "plugins/expected_status.wasm"
grant = ["http-get", "clock"]
config = {{ path = "/", status = "200" }}

[[plugins]]
name = "headers"
path = "plugins/security_headers.wasm"
"#
    )
}

const SITE: &str = r#"
[[sites]]
domain = "shop.plugins.example"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "off" }
health_path = "/healthz"
plugins = ["maintenance", "healthy", "down-for-maintenance", "headers"]
"#;

#[test]
fn template_check_and_lint_plugins_against_a_real_server() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    let sha = copy_plugins(dir.path())?;
    let inv = dir.path().join("inv.toml");
    let state = dir.path().join("state.db");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    std::fs::write(&inv, fleet.deploy_inventory_toml() + &plugins_toml(&sha) + SITE)?;

    // Render: the template plugin's fragments are in the site file (rpcc's canonical
    // text); the lint plugin warns about the missing CSP but does not fail.
    let out_dir = dir.path().join("out");
    let o = rpcc(&["render", &s(&inv), "--out", &s(&out_dir)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("warning:") && text(&o).contains("[headers] no Content-Security-Policy"), "{}", text(&o));
    let server = &fleet.servers()[0];
    let site_conf = std::fs::read_to_string(out_dir.join(server.name()).join("sites/shop.plugins.example.conf"))?;
    assert!(site_conf.contains("    error_page 503 @maintenance;\n"), "{site_conf}");
    assert!(site_conf.contains("        add_header Retry-After 120 always;\n"), "{site_conf}");

    // Deploy: nginx -t and the verified reload accept it; the page is served.
    let o = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let page = get(server.http_port(), "shop.plugins.example", "/")?;
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(page.contains("Retry-After: 120") && page.contains("Upgrading the database"), "{page}");
    let health = get(server.http_port(), "shop.plugins.example", "/healthz")?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Check plugins run against that nginx (Host pinned to the site, the server's port).
    let o = rpcc(&["check", &s(&inv), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let rows = v["plugins"].as_array().cloned().unwrap_or_default();
    let row = |name: &str| rows.iter().find(|r| r["plugin"] == name).cloned().unwrap_or_default();
    assert_eq!(row("healthy")["status"], "ok", "{v}");
    assert!(row("healthy")["message"].as_str().unwrap_or("").contains("/healthz"), "{v}");
    assert_eq!(row("down-for-maintenance")["status"], "ok", "{v}");
    assert!(o.status.success(), "{}", text(&o));

    // A check that fails makes `rpcc check` fail and says why.
    let failing = SITE.replace("\"down-for-maintenance\"", "\"wrong-expectation\"");
    std::fs::write(&inv, fleet.deploy_inventory_toml() + &plugins_toml(&sha) + &failing)?;
    let o = rpcc(&["check", &s(&inv)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("wrong-expectation") && text(&o).contains("status 503, expected 200"), "{}", text(&o));

    // A TLS site without HSTS is a lint error: render says so, apply refuses to deploy.
    let tls_site = "\n[[sites]]\ndomain = \"tls.plugins.example\"\ngroup = \"all\"\nupstream = { backends = [\"127.0.0.1:9\"] }\n\
                    tls = { mode = \"self_signed\", hsts = false }\nplugins = [\"headers\"]\n";
    std::fs::write(&inv, fleet.deploy_inventory_toml() + &plugins_toml(&sha) + SITE + tls_site)?;
    let o = rpcc(&["render", &s(&inv), "--out", &s(&out_dir)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("error:") && text(&o).contains("without Strict-Transport-Security"), "{}", text(&o));
    let o = rpcc(&["apply", &s(&inv), "--state", &s(&state), "--yes"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing was deployed"), "{}", text(&o));
    let still = get(server.http_port(), "tls.plugins.example", "/")?;
    assert!(!still.contains("tls.plugins.example"), "the refused site is not live: {still}");

    // A plugin whose file changed is refused (sha256 pin) and nothing renders.
    std::fs::write(&inv, fleet.deploy_inventory_toml() + &plugins_toml(&sha) + SITE)?;
    std::fs::copy(dir.path().join("plugins/security_headers.wasm"), dir.path().join("plugins/maintenance_page.wasm"))?;
    let o = rpcc(&["render", &s(&inv), "--out", &s(&dir.path().join("out2"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the inventory pins"), "{}", text(&o));
    assert!(!dir.path().join("out2").exists());
    Ok(())
}

#[test]
fn inventory_errors_name_the_plugin_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        r#"
[[plugins]]
name = "x"
path = "x.so"
grant = ["filesystem"]
allow_directives = ["include"]
limits = { memory = "10g", timeout = "5m" }

[[sites]]
domain = "a.example.com"
group = "g"
plugins = ["nope"]
"#,
    )
    .expect("write");
    let o = rpcc(&["validate", inv.to_str().unwrap_or_default()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "plugins[0].path",
        ".wasm",
        "plugins[0].grant[0]",
        "plugins[0].allow_directives",
        "can never be allowed",
        "plugins[0].limits.memory",
        "plugins[0].limits.timeout",
        "sites[0].plugins[0]",
        "\"nope\" is not a [[plugins]] name",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn plugin_check_prints_the_manifest_and_runs_each_kind() -> anyhow::Result<()> {
    let built = rpcc_testkit::wasm_plugins()?;
    let p = |n: &str| built.join(format!("{n}.wasm")).to_string_lossy().into_owned();
    let o = rpcc(&["plugin", "check", &p("maintenance_page"), "--config", "enabled=true"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("plugin:       maintenance-page 0.1.0")
            && t.contains("kind:         template (built against rpcc:plugin@0.1.0; this host implements 0.1.0)"),
        "{t}"
    );
    assert!(t.contains("return 503;") && t.contains("location @maintenance {"), "{t}");

    let o = rpcc(&["plugin", "check", &p("security_headers")]);
    assert!(o.status.success() && text(&o).contains("no Content-Security-Policy"), "{}", text(&o));

    let o = rpcc(&["plugin", "check", &p("expected_status")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("requests capability \"http-get\", which is not granted"), "{}", text(&o));
    let o = rpcc(&["plugin", "check", &p("expected_status"), "--grant", "http-get", "--grant", "clock"]);
    assert!(o.status.success() && text(&o).contains("Ok: /healthz on sample-edge: 200"), "{}", text(&o));

    let o = rpcc(&["plugin", "check", &p("fs_reader")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wasi:filesystem"), "{}", text(&o));
    let o = rpcc(&["plugin", "check", &p("hostile"), "--config", "mode=include"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("\"include\" is not allowed"), "{}", text(&o));
    Ok(())
}

/// Issue 26 item 5 through the CLI: a plugin answering ACME challenges for its sites
/// (an exact location beats rpcc's `^~` one) makes `rpcc render` refuse, naming the
/// plugin and the reserved path; nothing is written.
#[test]
fn a_plugin_taking_the_acme_location_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    std::fs::copy(rpcc_testkit::wasm_plugins()?.join("hostile.wasm"), dir.path().join("plugins/hostile.wasm"))?;
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let inventory = |frag: &str, mode: &str| {
        format!(
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
name = "hostile"
path = "plugins/hostile.wasm"
config = {{ mode = "{mode}", text = "{frag}" }}

[[sites]]
domain = "shop.plugins.example"
group = "all"
upstream = {{ backends = ["127.0.0.1:9"] }}
tls = {{ mode = "off" }}
plugins = ["hostile"]
"#
        )
    };
    let inv = dir.path().join("inv.toml");
    for (mode, frag, want) in [
        ("text", "location = /.well-known/acme-challenge/tok3n { return 200 tok3n.thumbprint; }", "reserved"),
        ("body", "location = /.well-known/acme-challenge/tok3n { return 200 tok3n.thumbprint; }", "reserved"),
        ("text", "return 302 https://evil.example/;", "server level"),
    ] {
        std::fs::write(&inv, inventory(frag, mode))?;
        let out = dir.path().join("out");
        let o = rpcc(&["render", &s(&inv), "--out", &s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{mode} {frag}: {}", text(&o));
        assert!(text(&o).contains("hostile") && text(&o).contains(want), "{mode} {frag}: {}", text(&o));
        assert!(!out.exists(), "{mode} {frag}: nothing is written");
    }
    // The same plugin with an ordinary body renders, with rpcc's ACME location kept.
    std::fs::write(&inv, inventory("location / { return 200 plugin; }", "body"))?;
    let out = dir.path().join("out");
    let o = rpcc(&["render", &s(&inv), "--out", &s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let conf = std::fs::read_to_string(out.join("edge-1/sites/shop.plugins.example.conf"))?;
    assert!(conf.contains("location ^~ /.well-known/acme-challenge/ {"), "{conf}");
    assert!(conf.contains("location ~ /\\.(?!well-known/) {"), "{conf}");
    assert!(conf.contains("return 200 plugin;"), "{conf}");
    Ok(())
}
