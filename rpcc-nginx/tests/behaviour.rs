//! Renderer behaviour: snapshots of representative sites, the per-site cache, template
//! overrides and their errors, version-dependent syntax, OCSP gating, include mode.

use std::path::Path;

use rpcc_core::generation::Renderer;
use rpcc_core::model::{Inventory, TlsMode};
use rpcc_nginx::{NginxRenderer, RenderError, RenderOptions};

fn example() -> Inventory {
    Inventory::from_toml_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/inventory.toml"))
        .expect("example is valid")
}

fn text(g: &rpcc_core::generation::Generation, path: &str) -> String {
    String::from_utf8_lossy(&g.file(path).unwrap_or_else(|| panic!("{path} missing")).bytes).into_owned()
}

#[test]
fn snapshots_of_representative_sites() {
    let inv = example();
    let r = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let edge = inv.server("edge-1").expect("edge-1");
    for domain in [
        "app.example.com",
        "api.example.com",
        "shop.example.com",
        "example.org",
        "old-brand.example.com",
        "staging.example.com",
        "status.internal.example.com",
    ] {
        let out = r.render_site(&inv, edge, domain).expect("render site");
        insta::assert_snapshot!(domain, out);
    }
    let us = inv.server("us-edge-1").expect("us-edge-1");
    insta::assert_snapshot!(
        "app.example.net on nginx 1.26",
        r.render_site(&inv, us, "app.example.net").expect("render")
    );
    let g = r.render(&inv, edge).expect("render");
    insta::assert_snapshot!("edge-1 http.conf", text(&g, "http.conf"));
    insta::assert_snapshot!("edge-1 nginx.conf", text(&g, "nginx.conf"));
}

#[test]
fn http2_syntax_follows_the_nginx_version() {
    let inv = example();
    let r = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let old = r.render_site(&inv, inv.server("edge-1").expect("s"), "app.example.com").expect("render");
    assert!(old.contains("listen 443 ssl http2;") && !old.contains("http2 on;"), "{old}");
    let new = r.render_site(&inv, inv.server("us-edge-1").expect("s"), "app.example.net").expect("render");
    assert!(new.contains("http2 on;") && !new.contains("ssl http2"), "{new}");
}

#[test]
fn ocsp_stapling_only_for_certificates_with_an_ocsp_url() {
    let inv = example();
    let edge = inv.server("edge-1").expect("s");
    // shop.example.com enables stapling, but its certificate is not known to have an OCSP URL.
    let plain = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    assert!(!plain.render_site(&inv, edge, "shop.example.com").expect("render").contains("ssl_stapling"));
    let with = NginxRenderer::new(RenderOptions::default())
        .expect("renderer")
        .with_ocsp_domains(["shop.example.com".to_owned()]);
    assert!(with.render_site(&inv, edge, "shop.example.com").expect("render").contains("ssl_stapling on;"));
    // A site that does not enable it never gets it.
    let with_app = NginxRenderer::new(RenderOptions::default())
        .expect("renderer")
        .with_ocsp_domains(["app.example.com".to_owned()]);
    assert!(!with_app.render_site(&inv, edge, "app.example.com").expect("render").contains("ssl_stapling"));
}

#[test]
fn include_mode_has_no_main_config() {
    let inv = example();
    let r = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let us = r.render(&inv, inv.server("us-edge-1").expect("s")).expect("render");
    assert!(us.file("nginx.conf").is_none());
    assert!(us.file("http.conf").is_some());
    let edge = r.render(&inv, inv.server("edge-1").expect("s")).expect("render");
    assert!(text(&edge, "nginx.conf").contains(&format!("/etc/nginx/rpcc/generations/{}/http.conf", edge.id())));
}

#[test]
fn changing_one_site_changes_only_its_file() {
    let inv = example();
    let edge = inv.server("edge-1").expect("s").clone();
    let r = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let before = r.render(&inv, &edge).expect("render");
    let mut changed = inv.clone();
    let chat = changed.sites.iter_mut().find(|s| s.domain.as_str() == "chat.example.com").expect("chat");
    chat.websocket = !chat.websocket;
    let after = r.render(&changed, &edge).expect("render");
    assert_ne!(before.id(), after.id(), "a changed site must give a new generation id");
    let differing: Vec<&str> = before
        .files()
        .iter()
        .filter(|(p, f)| after.files().get(*p).is_none_or(|g| g.bytes != f.bytes))
        .map(|(p, _)| p.as_str())
        .collect();
    // The site, the two files that name the generation directory, and the sites whose
    // certificate lives in the generation (ACME and self-signed): nothing else.
    let managed: Vec<String> = inv
        .sites_for_server("edge-1")
        .filter(|s| matches!(s.tls.mode, TlsMode::Acme | TlsMode::SelfSigned))
        .map(|s| format!("sites/{}.conf", s.id()))
        .collect();
    let mut expected: Vec<String> =
        ["http.conf", "nginx.conf", "sites/chat.example.com.conf"].iter().map(|s| (*s).to_owned()).collect();
    expected.extend(managed.iter().cloned());
    expected.sort();
    expected.dedup();
    assert!(managed.len() >= 3, "the example has ACME and self-signed sites on edge-1");
    assert_eq!(differing, expected);
    for (path, file) in after.files() {
        if path.as_str().starts_with("sites/") {
            let text = String::from_utf8_lossy(&file.bytes);
            let generation_lines: Vec<&str> = text.lines().filter(|l| l.contains("generations/")).collect();
            if managed.iter().any(|m| m == path.as_str()) {
                let dir = format!("/generations/{}/certs/", after.id());
                assert!(
                    generation_lines.iter().all(|l| l.trim_start().starts_with("ssl_certificate") && l.contains(&dir)),
                    "{path}: {generation_lines:?}"
                );
                assert!(!generation_lines.is_empty(), "{path} names its certificate");
            } else {
                assert!(generation_lines.is_empty(), "{path} depends on the generation dir");
            }
        }
    }
    // The cache never serves stale output: a fresh renderer agrees byte for byte.
    let fresh =
        NginxRenderer::new(RenderOptions::default()).expect("renderer").render(&changed, &edge).expect("render");
    assert_eq!(fresh, after);
    // And going back gives back the first tree exactly.
    assert_eq!(r.render(&inv, &edge).expect("render"), before);
}

fn with_override(name: &str, body: &str) -> Result<NginxRenderer, RenderError> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(name), body).expect("write override");
    let r = NginxRenderer::new(RenderOptions::default().with_override_dir(dir.path()));
    drop(dir);
    r
}

#[test]
fn override_with_unknown_variable_names_template_and_line() {
    let inv = example();
    let r = with_override(
        "site.conf.j2",
        "# custom\nserver {\n    server_name {{ site.domain | arg }};\n    root {{ site.web_root }};\n}\n",
    )
    .expect("compiles");
    let err = r.render(&inv, inv.server("edge-1").expect("s")).unwrap_err();
    match &err {
        RenderError::Template { template, line, message } => {
            assert_eq!(template, "site.conf.j2");
            assert_eq!(*line, Some(4), "{err}");
            assert!(message.contains("undefined"), "{message}");
        }
        other => panic!("expected a template error, got {other}"),
    }
}

#[test]
fn override_with_a_syntax_error_fails_at_construction() {
    let err = with_override("http.conf.j2", "server_tokens off;\n{% if server.any_tls %}\nssl on;\n").unwrap_err();
    let RenderError::Template { template, .. } = &err else { panic!("{err}") };
    assert_eq!(template, "http.conf.j2");
}

#[test]
fn filters_refuse_unsafe_values_even_from_templates() {
    let inv = example();
    for body in [
        "server_name {{ site.domain ~ ';include /etc/shadow' | arg }};\n",
        "add_header X-A \"{{ 'a\"b' | q }}\";\n",
        "return 200 \"{{ '$request_uri' | q }}\";\n",
        "server {{ 'a  b' | words }};\n",
        "x {{ site.upstreams | arg }};\n",
    ] {
        let r = with_override("site.conf.j2", body).expect("compiles");
        let err = r.render(&inv, inv.server("edge-1").expect("s")).unwrap_err();
        assert!(err.to_string().contains("refusing to emit"), "{body}: {err}");
    }
}

#[test]
fn a_valid_override_is_used() {
    let inv = example();
    let r = with_override("mime.types", "types { text/plain txt; }\n").expect("compiles");
    let g = r.render(&inv, inv.server("edge-1").expect("s")).expect("render");
    assert_eq!(text(&g, "mime.types"), "types { text/plain txt; }\n");
    let default = NginxRenderer::new(RenderOptions::default())
        .expect("renderer")
        .render(&inv, inv.server("edge-1").expect("s"))
        .expect("render");
    assert_ne!(g.id(), default.id(), "template changes must change the generation id");
}
