//! rpcc's reserved locations (`/.well-known/acme-challenge/` and the dotfile deny) stay
//! rpcc's whatever a template plugin adds at the server level or puts in place of the
//! server body (issue 26, item 5): rendered text, and a real nginx started on loopback
//! with the rendered tree answering ACME tokens from rpcc's webroot.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::fragment::{ExtensionError, Fragment, FragmentPolicy, FragmentScope, SiteExtension, SiteFragments};
use rpcc_core::generation::{Generation, Renderer as _};
use rpcc_core::model::{Inventory, Server, Site};
use rpcc_nginx::{NginxRenderer, RenderOptions};

/// A plugin stand-in: per domain, text for the server level or the whole body, checked
/// by the same rules as a WASM plugin's output (default allow-list).
#[derive(Debug)]
struct Hostile;

const BODY_SITE: &str = "body.example.com";
const FRAGMENT_SITE: &str = "frag.example.com";

/// Whole body: its own `location /` and an error page that would send ACME misses to
/// another host (a CA follows redirects).
const HOSTILE_BODY: &str = "error_page 404 https://evil.example/; location / { return 200 'plugin body'; }";
/// Server level: error pages into a named location that redirects, `deny all`, and a
/// regex location whose paths include dotfiles.
const HOSTILE_FRAGMENT: &str = "error_page 403 404 @evil; location @evil { return 302 https://evil.example/; } \
                                deny all; location ~ ^/app/ { return 200 app; }";

impl SiteExtension for Hostile {
    fn site_fragments(&self, _: &Inventory, server: &Server, site: &Site) -> Result<SiteFragments, ExtensionError> {
        let parse = |text: &str| {
            Fragment::parse(text, &FragmentPolicy::default_set(), &FragmentScope::for_server(server))
                .map_err(|e| Arc::new(e) as ExtensionError)
        };
        let mut f = SiteFragments::default();
        match site.domain.as_str() {
            BODY_SITE => f.server_body = Some(parse(HOSTILE_BODY)?),
            FRAGMENT_SITE => f.server = parse(HOSTILE_FRAGMENT)?,
            _ => {}
        }
        Ok(f)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn inventory(root: &Path, port: u16) -> Inventory {
    let mut t = format!(
        "[[servers]]\nname = \"s\"\nhost = \"127.0.0.1\"\nuser = \"deploy\"\nauth = {{ agent = true }}\n\
         nginx = {{ mode = \"owned\", managed_root = \"{r}/rpcc\", log_dir = \"{r}/logs\", pid = \"{r}/nginx.pid\", \
         user = \"\", version = \"{v}\", listen_http = \"127.0.0.1:{port}\", listen_https = \"127.0.0.1:{https}\" }}\n\
         [[groups]]\nname = \"g\"\nservers = [\"s\"]\n",
        r = root.display(),
        v = common::nginx_version(),
        https = free_port(),
    );
    for domain in [BODY_SITE, FRAGMENT_SITE, "plain.example.com"] {
        t.push_str(&format!(
            "[[sites]]\ndomain = \"{domain}\"\ngroup = \"g\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
             tls = {{ mode = \"off\" }}\n"
        ));
    }
    Inventory::from_toml_str(&t).expect("valid inventory")
}

fn render(inv: &Inventory) -> Generation {
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer").with_extension(Arc::new(Hostile));
    renderer.render(inv, inv.server("s").expect("server")).expect("render")
}

fn text(g: &Generation, path: &str) -> String {
    String::from_utf8_lossy(&g.file(path).unwrap_or_else(|| panic!("{path} missing")).bytes).into_owned()
}

/// (status, whole response) of `GET path` with `Host: host`.
fn get(port: u16, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// Stops the nginx it started (by its pid file) when dropped.
struct Nginx {
    conf: std::path::PathBuf,
}

impl Nginx {
    fn start(conf: &Path, root: &Path, port: u16) -> Self {
        let out = Command::new("nginx")
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(root.join("logs/startup.log"))
            .output()
            .expect("nginx runs");
        assert!(out.status.success(), "nginx did not start: {}", String::from_utf8_lossy(&out.stderr));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nginx does not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { conf: conf.to_path_buf() }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx").arg("-c").arg(&self.conf).args(["-s", "stop"]).output();
    }
}

#[test]
fn reserved_locations_come_first_and_survive_a_replaced_body() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inv = inventory(tmp.path(), 18099);
    let g = render(&inv);

    // A replaced body still has rpcc's ACME and dotfile locations, ahead of the body.
    let body = text(&g, &format!("sites/{BODY_SITE}.conf"));
    let acme = body.find("location ^~ /.well-known/acme-challenge/ {").expect("ACME location in a replaced body");
    let dot = body.find("location ~ /\\.(?!well-known/) {").expect("dotfile deny in a replaced body");
    let plugin = body.find("error_page 404 https://evil.example/;").expect("the plugin body");
    assert!(acme < plugin && dot < plugin, "{body}");
    // Their own error pages and access rules: the plugin's server-level ones do not apply.
    let acme_block = &body[acme..body[acme..].find("}\n").map_or(body.len(), |e| acme + e)];
    assert!(acme_block.contains("allow all;") && acme_block.contains("error_page 404 @rpcc_not_found;"), "{body}");
    assert!(body.contains("location @rpcc_not_found {\n        return 404;\n    }"), "{body}");

    // Server-level fragments: the reserved locations precede them (rpcc's dotfile regex
    // is tried before the plugin's), each exactly once.
    let frag = text(&g, &format!("sites/{FRAGMENT_SITE}.conf"));
    let dot = frag.find("location ~ /\\.(?!well-known/) {").expect("dotfile deny");
    let plugin_regex = frag.find("location ~ ^/app/ {").expect("the plugin's regex");
    assert!(dot < plugin_regex, "{frag}");
    assert_eq!(frag.matches("location ^~ /.well-known/acme-challenge/").count(), 1, "{frag}");
    assert_eq!(frag.matches("location ~ /\\.(?!well-known/)").count(), 1, "{frag}");

    // A site without plugin content renders as it always did.
    let plain = text(&g, "sites/plain.example.com.conf");
    assert!(!plain.contains("rpcc_not_found") && plain.contains("location ^~ /.well-known/acme-challenge/"), "{plain}");
}

#[test]
fn a_real_nginx_serves_rpccs_acme_tokens_whatever_the_plugin_says() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // nginx's workers run as nobody here: let them read the webroot.
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    std::fs::create_dir_all(root.join("logs")).expect("logs");
    let port = free_port();
    let inv = inventory(root, port);
    let g = render(&inv);
    let gen_dir = common::install(&root.join("rpcc"), &g);
    common::nginx_t(&gen_dir.join("nginx.conf")).expect("nginx -t accepts the tree");
    let gixy = Command::new(common::tools_python())
        .args(["-c", "import sys; from gixy.cli.main import main; sys.exit(main())", "-ll", "-f", "json"])
        .arg(gen_dir.join("nginx.conf"))
        .output()
        .expect("gixy runs");
    let findings: serde_json::Value = serde_json::from_slice(&gixy.stdout)
        .unwrap_or_else(|e| panic!("gixy output is not JSON ({e}): {}", String::from_utf8_lossy(&gixy.stderr)));
    // Allowed: no HSTS (this tree has no TLS) and the hostile fragment's own `deny all`
    // next to returns; nothing else, in particular nothing about rpcc's locations.
    for f in findings.as_array().expect("findings list") {
        let plugin = f["plugin"].as_str().unwrap_or_default();
        let hostile =
            plugin == "return_bypasses_allow_deny" && f["file"].as_str().is_some_and(|p| p.contains(FRAGMENT_SITE));
        assert!(plugin == "hsts_header" || hostile, "gixy finding: {f}");
    }
    let webroot = root.join("rpcc/acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&webroot).expect("webroot");
    std::fs::write(webroot.join("tok3n"), "tok3n.rpcc-thumbprint").expect("token");
    let _nginx = Nginx::start(&gen_dir.join("nginx.conf"), root, port);

    for site in [BODY_SITE, FRAGMENT_SITE, "plain.example.com"] {
        // The token rpcc put there is what the CA gets.
        let (status, resp) = get(port, site, "/.well-known/acme-challenge/tok3n");
        assert_eq!(status, 200, "{site}: {resp}");
        assert!(resp.ends_with("tok3n.rpcc-thumbprint"), "{site}: {resp}");
        // A token rpcc does not have is a plain 404, never the plugin's redirect.
        let (status, resp) = get(port, site, "/.well-known/acme-challenge/not-rpccs");
        assert_eq!(status, 404, "{site}: {resp}");
        assert!(!resp.contains("evil.example"), "{site}: {resp}");
        // Dotfiles stay denied, with no redirect either.
        for path in ["/.env", "/app/.git/config"] {
            let (status, resp) = get(port, site, path);
            assert_eq!(status, 404, "{site} {path}: {resp}");
            assert!(!resp.contains("evil.example"), "{site} {path}: {resp}");
        }
    }
    // The plugin's own content still works where it does not touch reserved paths…
    let (status, resp) = get(port, BODY_SITE, "/");
    assert_eq!(status, 200, "{resp}");
    assert!(resp.ends_with("plugin body"), "{resp}");
    let (status, resp) = get(port, FRAGMENT_SITE, "/app/x");
    assert_eq!(status, 200, "{resp}");
    assert!(resp.ends_with("app"), "{resp}");
    // Its `deny all` and error pages are in force on the rest of its site (so the
    // answers above are not a plugin that failed to load)…
    let (status, resp) = get(port, FRAGMENT_SITE, "/");
    assert_eq!(status, 302, "{resp}");
    assert!(resp.contains("Location: https://evil.example/"), "{resp}");
    // (above: not in rpcc's reserved locations).
}

#[test]
fn a_hostile_exact_acme_location_is_refused_before_rendering() {
    let scope = FragmentScope::none();
    let err = Fragment::parse(
        "location = /.well-known/acme-challenge/tok3n { return 200 tok3n.attacker-thumbprint; }",
        &FragmentPolicy::default_set(),
        &scope,
    )
    .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    // An extension that skips the checks still cannot put a server-level return in
    // front of rpcc's locations: the renderer refuses it.
    #[derive(Debug)]
    struct Unchecked;
    impl SiteExtension for Unchecked {
        fn site_fragments(&self, _: &Inventory, _: &Server, _: &Site) -> Result<SiteFragments, ExtensionError> {
            let mut f = SiteFragments::default();
            f.server = Fragment::parse(
                "return 302 https://evil.example/;",
                &FragmentPolicy::default_set(),
                &FragmentScope::none(),
            )
            .map_err(|e| Arc::new(e) as ExtensionError)?;
            Ok(f)
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let inv = inventory(tmp.path(), 18098);
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer").with_extension(Arc::new(Unchecked));
    let err = renderer.render(&inv, inv.server("s").expect("server")).unwrap_err();
    assert!(err.to_string().contains("server level"), "{err}");
}
