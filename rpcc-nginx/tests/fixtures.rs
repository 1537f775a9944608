//! The fixture matrix: 60 generated inventories that together cover every site option
//! and many combinations. For every fixture and every server the rendered tree must
//! pass the real `nginx -t`, `gixy` (medium severity and above) with no findings except
//! the one a site asks for (`hsts = false` → `hsts_header`), and parse with crossplane
//! into exactly the expected server blocks, `server_name`s and `proxy_pass` targets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rpcc_core::generation::Renderer;
use rpcc_core::model::{Inventory, NginxMode, Site, TlsMode, WwwRedirect};
use rpcc_nginx::{NginxRenderer, RenderOptions};

const FIXTURES: usize = 60;

/// Pick one of `n` values for dimension `k` of fixture `i`, site `s` (deterministic,
/// staggered so that dimensions do not move in lock-step).
fn pick(i: usize, s: usize, k: usize, n: usize) -> usize {
    (i * (2 * k + 3) + s * (k + 5) + k * 7) % n
}

fn fixture(i: usize, root: &Path, version: &str) -> String {
    let mut t = String::new();
    let servers = 1 + i % 2;
    for n in 0..servers {
        let include_mode = (i + n) % 5 == 4;
        let _ = write!(
            t,
            "[[servers]]\nname = \"f{i}-s{n}\"\nhost = \"127.0.0.{}\"\nuser = \"deploy\"\nauth = {{ agent = true }}\n\
             nginx = {{ mode = \"{}\", managed_root = \"{root}/s{n}\", log_dir = \"{root}/logs\", pid = \"{root}/s{n}/nginx.pid\", \
             user = \"\", version = \"{version}\", listen_http = \"127.0.0.1:{}\", listen_https = \"127.0.0.1:{}\" }}\n\n",
            n + 1,
            if include_mode { "include" } else { "owned" },
            18080 + n,
            18443 + n,
            root = root.display(),
        );
    }
    let all: Vec<String> = (0..servers).map(|n| format!("\"f{i}-s{n}\"")).collect();
    let _ = write!(t, "[[groups]]\nname = \"g0\"\nservers = [{}]\n\n", all.join(", "));
    let second_group = servers == 2 && i.is_multiple_of(3);
    if second_group {
        let _ = write!(t, "[[groups]]\nname = \"g1\"\nservers = [\"f{i}-s1\"]\n\n");
    }
    for s in 0..(1 + i % 4) {
        let domain = if s == 0 && i.is_multiple_of(7) {
            format!("bücher-{i}.example")
        } else {
            format!("s{s}.f{i}.example.com")
        };
        let _ = write!(t, "[[sites]]\ndomain = \"{domain}\"\n");
        let group = if second_group && s % 2 == 1 { "g1" } else { "g0" };
        let _ = writeln!(t, "group = \"{group}\"");
        let tls_mode = ["acme", "custom", "self_signed", "off"][pick(i, s, 2, 4)];
        match pick(i, s, 0, 4) {
            1 => {
                let _ = writeln!(t, "aliases = [\"alt-{s}.f{i}.example.com\"]");
            }
            // HTTP-01 cannot validate a wildcard: acme sites get the plain alias only.
            2 if tls_mode == "acme" => {
                let _ = writeln!(t, "aliases = [\"alt-{s}.f{i}.example.com\"]");
            }
            2 => {
                let _ = writeln!(t, "aliases = [\"alt-{s}.f{i}.example.com\", \"*.w{s}.f{i}.example.com\"]");
            }
            _ => {}
        }
        let www = ["none", "to_www", "to_apex", "none"][pick(i, s, 1, 4)];
        if www != "none" {
            let _ = writeln!(t, "www = \"{www}\"");
        }
        let hsts_off = tls_mode != "off" && pick(i, s, 3, 6) == 0;
        let mut tls = format!("mode = \"{tls_mode}\"");
        if tls_mode == "custom" {
            let _ = write!(
                tls,
                ", cert = \"{0}/custom/{1}.crt\", key = \"{0}/custom/{1}.key\"",
                root.display(),
                domain.replace('ü', "u")
            );
        }
        if tls_mode != "off" {
            if pick(i, s, 4, 3) == 0 {
                tls.push_str(", redirect_http = false");
            }
            if hsts_off {
                tls.push_str(", hsts = false");
            } else if pick(i, s, 5, 4) == 0 {
                tls.push_str(", hsts_preload = true");
            }
            if pick(i, s, 6, 5) == 0 {
                tls.push_str(", ocsp_stapling = true");
            }
        }
        let _ = writeln!(t, "tls = {{ {tls} }}");
        let kind = pick(i, s, 7, 10);
        if kind == 9 {
            let _ = writeln!(t, "redirect_to = \"https://moved-{s}.example.net/landing\"");
        } else {
            let balance = ["round_robin", "least_conn", "ip_hash", "hash"][pick(i, s, 8, 4)];
            let mut backends = vec![format!("\"10.{i}.{s}.5:8080\"")];
            match pick(i, s, 9, 4) {
                0 => backends.push(format!("\"10.{i}.{s}.6:8080\"")),
                1 => backends.push(format!(
                    "{{ address = \"10.{i}.{s}.6:8080\", weight = 3, max_fails = 5, fail_timeout = \"30s\" }}"
                )),
                2 if !matches!(balance, "ip_hash" | "hash") => {
                    backends.push(format!("{{ address = \"10.{i}.{s}.7:8080\", backup = true }}"))
                }
                _ => backends.push(format!("\"[2001:db8::{i:x}:{s}]:8080\"")),
            }
            let mut up = format!("backends = [{}], balance = \"{balance}\"", backends.join(", "));
            if balance == "hash" {
                up.push_str(&format!(
                    ", hash_key = \"{}\"",
                    ["request_uri", "remote_addr", "host", "uri"][pick(i, s, 10, 4)]
                ));
            }
            match pick(i, s, 11, 3) {
                0 => up.push_str(", keepalive = 0"),
                1 => up.push_str(", keepalive = 64, scheme = \"https\""),
                _ => {}
            }
            let _ = writeln!(t, "upstream = {{ {up} }}");
        }
        if pick(i, s, 12, 2) == 0 {
            let _ = writeln!(t, "websocket = true");
        }
        if pick(i, s, 13, 4) == 0 {
            let _ = writeln!(t, "http2 = false");
        }
        if pick(i, s, 14, 3) == 0 {
            let _ = writeln!(
                t,
                "limits = {{ body_size = \"25m\", rate_limit = {{ rate = \"10r/s\", burst = 20, nodelay = true }}, connections = 20 }}"
            );
        }
        if pick(i, s, 15, 3) == 0 {
            let _ = writeln!(t, "timeouts = {{ connect = \"2s\", read = \"5m\", send = \"90s\" }}");
        }
        match pick(i, s, 16, 4) {
            0 => {
                let _ = writeln!(
                    t,
                    "security = {{ frame_options = \"DENY\", csp = \"default-src 'self'; img-src 'self' data:\", permissions_policy = \"camera=(), geolocation=(self)\" }}"
                );
            }
            1 => {
                let _ = writeln!(t, "security = {{ frame_options = \"none\", referrer_policy = \"no-referrer\" }}");
            }
            _ => {}
        }
        if pick(i, s, 17, 3) == 0 {
            let _ = writeln!(t, "headers = {{ \"X-Robots-Tag\" = \"noindex, nofollow\", \"X-Served-By\" = \"rpcc\" }}");
        }
        if pick(i, s, 18, 4) == 0 {
            let _ = writeln!(t, "gzip = false");
        }
        if pick(i, s, 19, 3) == 0 {
            let _ = writeln!(t, "static_cache = \"7d\"");
        }
        if pick(i, s, 20, 4) == 0 {
            let _ = writeln!(t, "buffering = false");
        }
        if pick(i, s, 21, 2) == 0 {
            let _ = writeln!(t, "health_path = \"/healthz\"");
        }
        if kind == 8 {
            let _ = writeln!(t, "maintenance = true");
        }
        if kind != 9 && pick(i, s, 22, 2) == 0 {
            let _ = writeln!(
                t,
                "redirects = [{{ from = \"/old\", to = \"https://s{s}.f{i}.example.com/new\", code = 308 }}]"
            );
        }
        let _ = writeln!(t);
        if kind != 9 {
            match pick(i, s, 23, 3) {
                0 => {
                    let _ = writeln!(
                        t,
                        "[[sites.locations]]\npath = \"/login\"\nmatch = \"exact\"\nrate_limit = {{ rate = \"5r/m\", burst = 5 }}\n"
                    );
                }
                1 => {
                    let _ = writeln!(
                        t,
                        "[[sites.locations]]\npath = \"/api/\"\nupstream = {{ backends = [\"10.200.{i}.{s}:9000\", \"10.201.{i}.{s}:9000\"], balance = \"least_conn\" }}\nbody_size = \"1m\"\nwebsocket = true\n"
                    );
                }
                _ => {}
            }
        }
    }
    t
}

/// What crossplane must find for one site: server blocks by their server_name set,
/// and the proxy_pass targets of the main block.
fn expected_blocks(site: &Site) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    let mut names: Vec<String> = site.names().map(ToString::to_string).collect();
    let www_from = match site.www {
        WwwRedirect::None => None,
        WwwRedirect::ToWww => {
            names[0] = format!("www.{}", site.domain);
            Some(site.domain.to_string())
        }
        WwwRedirect::ToApex => Some(format!("www.{}", site.domain)),
    };
    let main_names: BTreeSet<String> = names.iter().cloned().collect();
    let mut blocks = Vec::new();
    if site.tls.enabled() && site.tls.redirect_http {
        let mut n = main_names.clone();
        n.extend(www_from.clone());
        blocks.push((n, BTreeSet::new()));
    }
    if let Some(from) = www_from {
        blocks.push((BTreeSet::from([from]), BTreeSet::new()));
    }
    let mut passes = BTreeSet::new();
    if !site.maintenance {
        let id = site.domain.as_str().replace('*', "_wildcard_").replace(['.', '-'], "_");
        if let Some(up) = &site.upstream {
            let scheme = if up.scheme == rpcc_core::model::UpstreamScheme::Https { "https" } else { "http" };
            passes.insert(format!("{scheme}://rpcc_{id}"));
        }
        for (k, loc) in site.locations.iter().enumerate() {
            if let Some(up) = &loc.upstream {
                let scheme = if up.scheme == rpcc_core::model::UpstreamScheme::Https { "https" } else { "http" };
                passes.insert(format!("{scheme}://rpcc_{id}_loc{k}"));
            }
        }
    }
    blocks.push((main_names, passes));
    blocks
}

struct Checked {
    main_conf: PathBuf,
    server: String,
    fixture: usize,
    expect_hsts_finding: bool,
    expected: Vec<(BTreeSet<String>, BTreeSet<String>)>,
}

#[test]
fn fixture_matrix_passes_nginx_gixy_and_crossplane() {
    let version = common::nginx_version();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cert, key) = common::test_cert(tmp.path());
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    let mut coverage: BTreeMap<&'static str, usize> = BTreeMap::new();

    for i in 0..FIXTURES {
        let root = tmp.path().join(format!("f{i}"));
        std::fs::create_dir_all(root.join("logs")).expect("mkdir");
        let source = fixture(i, &root, &version);
        let inv = Inventory::from_toml_str(&source).unwrap_or_else(|e| panic!("fixture {i} is invalid: {e}\n{source}"));
        for site in &inv.sites {
            let mut mark = |k: &'static str, on: bool| {
                if on {
                    *coverage.entry(k).or_default() += 1;
                }
            };
            mark("tls acme", site.tls.mode == TlsMode::Acme);
            mark("tls custom", matches!(site.tls.mode, TlsMode::Custom { .. }));
            mark("tls self_signed", site.tls.mode == TlsMode::SelfSigned);
            mark("tls off", site.tls.mode == TlsMode::Off);
            mark("no http redirect", site.tls.enabled() && !site.tls.redirect_http);
            mark("www to_www", site.www == WwwRedirect::ToWww);
            mark("www to_apex", site.www == WwwRedirect::ToApex);
            mark("redirect_to", site.redirect_to.is_some());
            mark("maintenance", site.maintenance);
            mark("location upstream", site.locations.iter().any(|l| l.upstream.is_some()));
            mark("location rate limit", site.locations.iter().any(|l| l.rate_limit.is_some()));
            mark("wildcard alias", site.aliases.iter().any(|a| a.is_wildcard()));
            mark(
                "https backend",
                site.upstream.as_ref().is_some_and(|u| u.scheme == rpcc_core::model::UpstreamScheme::Https),
            );
            mark("backup backend", site.upstream.as_ref().is_some_and(|u| u.backends.iter().any(|b| b.backup)));
            mark(
                "hash balance",
                site.upstream.as_ref().is_some_and(|u| matches!(u.balance, rpcc_core::model::Balance::Hash(_))),
            );
            mark(
                "ip_hash",
                site.upstream.as_ref().is_some_and(|u| matches!(u.balance, rpcc_core::model::Balance::IpHash)),
            );
            mark("csp", site.security.csp.is_some());
            mark("static cache", site.static_cache.is_some());
            mark("idn", site.domain.as_str().starts_with("xn--"));
            mark("hsts off", site.tls.enabled() && !site.tls.hsts);
            mark("preload", site.tls.hsts_preload);
        }
        for server in &inv.servers {
            let generation = match renderer.render(&inv, server) {
                Ok(g) => g,
                Err(e) => {
                    failures.push(format!("fixture {i} {}: render failed: {e}", server.name));
                    continue;
                }
            };
            let dir = common::install(server.nginx.managed_root.as_str().as_ref(), &generation);
            for (path, file) in generation.files() {
                if path.as_str().starts_with("sites/") {
                    common::provide_certs(&String::from_utf8_lossy(&file.bytes), &cert, &key);
                }
            }
            let main_conf = if server.nginx.mode == NginxMode::Owned {
                dir.join("nginx.conf")
            } else {
                // Include mode: the server's own nginx.conf includes our http.conf.
                let wrapper = Path::new(server.nginx.managed_root.as_str()).join("hand-made-nginx.conf");
                std::fs::write(
                    &wrapper,
                    format!(
                        "pid {0}/s-wrapper.pid;\nerror_log {0}/logs/error.log;\nevents {{}}\nhttp {{\n    include {1}/http.conf;\n}}\n",
                        root.display(),
                        dir.display()
                    ),
                )
                .expect("write wrapper");
                wrapper
            };
            if let Err(msg) = common::nginx_t(&main_conf) {
                failures.push(format!("fixture {i} {}: nginx -t failed: {msg}", server.name));
                continue;
            }
            let sites: Vec<&Site> = inv.sites_for_server(server.name.as_str()).collect();
            checked.push(Checked {
                main_conf,
                server: server.name.to_string(),
                fixture: i,
                expect_hsts_finding: sites.iter().any(|s| s.tls.enabled() && !s.tls.hsts),
                expected: sites.iter().flat_map(|s| expected_blocks(s)).collect(),
            });
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(checked.len() >= 80, "only {} server trees checked", checked.len());
    for (k, n) in &coverage {
        assert!(*n > 0, "option {k} is never covered");
    }
    assert_eq!(coverage.len(), 21, "coverage keys: {coverage:?}");

    // gixy once over every tree: medium severity and above.
    let confs: Vec<&Path> = checked.iter().map(|c| c.main_conf.as_path()).collect();
    let out = Command::new(common::tools_python())
        .args(["-c", "import sys; from gixy.cli.main import main; sys.exit(main())", "-ll", "-f", "json"])
        .args(&confs)
        .output()
        .expect("gixy runs");
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gixy output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let mut by_conf: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings.as_array().expect("findings list") {
        let path = f["path"].as_str().unwrap_or_default().to_owned();
        by_conf.entry(path).or_default().push(format!("{} ({}:{})", f["plugin"], f["file"], f["line"]));
    }
    for c in &checked {
        let found = by_conf.remove(c.main_conf.to_str().unwrap_or_default()).unwrap_or_default();
        let only_hsts = found.iter().all(|f| f.starts_with("\"hsts_header\""));
        if c.expect_hsts_finding {
            assert!(
                !found.is_empty() && only_hsts,
                "fixture {} {}: expected only hsts_header, got {found:?}",
                c.fixture,
                c.server
            );
        } else {
            assert!(found.is_empty(), "fixture {} {}: gixy findings: {found:?}", c.fixture, c.server);
        }
    }
    assert!(by_conf.is_empty(), "findings for unknown configs: {by_conf:?}");
    assert!(checked.iter().any(|c| c.expect_hsts_finding), "no fixture proves gixy sees a missing HSTS header");

    // crossplane: the exact server blocks per site.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/inspect.py");
    let out = Command::new(common::tools_python()).arg(&script).args(&confs).output().expect("crossplane runs");
    assert!(out.status.success(), "inspect.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect output");
    for c in &checked {
        let entry = &parsed[c.main_conf.to_str().unwrap_or_default()];
        assert_eq!(entry["errors"].as_array().map(Vec::len), Some(0), "crossplane errors: {entry}");
        let mut got: Vec<(BTreeSet<String>, BTreeSet<String>)> = entry["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|s| {
                let names = s["names"]
                    .as_array()
                    .expect("names")
                    .iter()
                    .map(|n| n.as_str().unwrap_or_default().to_owned())
                    .collect();
                let passes = s["proxy_pass"]
                    .as_array()
                    .expect("pp")
                    .iter()
                    .map(|n| n.as_str().unwrap_or_default().to_owned())
                    .collect();
                (names, passes)
            })
            .filter(|(names, _): &(BTreeSet<String>, BTreeSet<String>)| !names.contains("_"))
            .collect();
        let mut want = c.expected.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "fixture {} {}: server blocks differ", c.fixture, c.server);
    }
}

#[test]
fn rendering_is_deterministic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    for i in [0, 13, 27, 42] {
        let source = fixture(i, tmp.path(), "1.22.1");
        let a = Inventory::from_toml_str(&source).expect("valid");
        let b = Inventory::from_toml_str(&source).expect("valid");
        for server in &a.servers {
            let ga = renderer.render(&a, server).expect("render");
            let gb =
                NginxRenderer::new(RenderOptions::default()).expect("renderer").render(&b, server).expect("render");
            assert_eq!(ga, gb, "fixture {i}: same inventory, different trees");
            assert_eq!(ga.tree_hash(), gb.tree_hash());
            assert_eq!(ga.manifest(), gb.manifest());
        }
    }
}
