//! Certificates in generations: a render given a certificate set carries each ACME and
//! self-signed site's chain and key (0600) and points nginx at them; a site without one
//! yet is plain HTTP answering ACME challenges only; the tree passes a real `nginx -t`.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use rpcc_core::certs::{CertificateSet, SiteCertificate};
use rpcc_core::generation::{Renderer as _, Sha256Digest};
use rpcc_core::model::Inventory;
use rpcc_nginx::{NginxRenderer, RenderOptions};

fn inventory(root: &Path, version: &str) -> Inventory {
    let mut t = format!(
        "[[servers]]\nname = \"s\"\nhost = \"127.0.0.1\"\nuser = \"deploy\"\nauth = {{ agent = true }}\n\
         nginx = {{ mode = \"owned\", managed_root = \"{r}/rpcc\", log_dir = \"{r}/logs\", pid = \"{r}/nginx.pid\", \
         user = \"\", version = \"{version}\", listen_http = \"127.0.0.1:18080\", listen_https = \"127.0.0.1:18443\" }}\n\
         [[groups]]\nname = \"g\"\nservers = [\"s\"]\n",
        r = root.display()
    );
    for (domain, tls, extra) in [
        ("issued.example.com", "acme", "aliases = [\"www2.issued.example.com\"]\n"),
        ("pending.example.com", "acme", "www = \"to_www\"\n"),
        ("self.example.com", "self_signed", ""),
        ("plain.example.com", "off", ""),
    ] {
        let _ = write!(
            t,
            "[[sites]]\ndomain = \"{domain}\"\ngroup = \"g\"\n{extra}upstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
             tls = {{ mode = \"{tls}\" }}\n"
        );
    }
    Inventory::from_toml_str(&t).expect("valid inventory")
}

fn certificate(dir: &Path, name: &str) -> SiteCertificate {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let chain = std::fs::read_to_string(&cert).expect("cert");
    SiteCertificate::new(&chain, &std::fs::read_to_string(&key).expect("key"), Sha256Digest::of(chain.as_bytes()))
}

#[test]
fn certificates_travel_in_the_generation_and_missing_ones_serve_challenges_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    std::fs::create_dir_all(root.join("logs")).expect("logs");
    let inv = inventory(root, &common::nginx_version());
    let server = inv.server("s").expect("server");
    let mut set = CertificateSet::new();
    set.insert("issued.example.com", certificate(root, "issued"));
    set.insert("self.example.com", certificate(root, "self"));
    let renderer = NginxRenderer::new(RenderOptions::default()).expect("renderer");
    let generation = renderer.render_with_certificates(&inv, server, Some(&set)).expect("render");

    // Files and modes: chain 0644, key 0600, nothing for the pending or plain sites.
    let mode = |p: &str| generation.file(p).map(|f| f.mode);
    assert_eq!(mode("certs/issued.example.com/fullchain.pem"), Some(0o644));
    assert_eq!(mode("certs/issued.example.com/privkey.pem"), Some(0o600));
    assert_eq!(mode("certs/self.example.com/privkey.pem"), Some(0o600));
    assert!(generation.files().keys().all(|p| !p.as_str().contains("pending") || p.as_str().starts_with("sites/")));
    assert!(!format!("{generation:?}").contains("PRIVATE KEY"), "Debug of a generation shows no key");

    let text = |p: &str| String::from_utf8_lossy(&generation.file(p).expect(p).bytes).into_owned();
    let issued = text("sites/issued.example.com.conf");
    let dir = format!("{}/rpcc/generations/{}/certs/issued.example.com", root.display(), generation.id());
    assert!(issued.contains(&format!("ssl_certificate {dir}/fullchain.pem;")), "{issued}");
    assert!(issued.contains(&format!("ssl_certificate_key {dir}/privkey.pem;")), "{issued}");
    let pending = text("sites/pending.example.com.conf");
    assert!(!pending.contains("ssl_certificate") && !pending.contains("443"), "{pending}");
    assert!(pending.contains("location ^~ /.well-known/acme-challenge/"), "{pending}");
    assert!(pending.contains("server_name www.pending.example.com pending.example.com;"), "{pending}");
    assert!(pending.contains("return 503;") && !pending.contains("proxy_pass"), "{pending}");

    // The tree, installed where its paths point, passes nginx -t as it stands.
    let gen_dir = common::install(&root.join("rpcc"), &generation);
    let key = gen_dir.join("certs/issued.example.com/privkey.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    common::nginx_t(&gen_dir.join("nginx.conf")).expect("nginx -t accepts the tree");

    // A new certificate is a new generation; the same set is the same generation.
    let again = renderer.render_with_certificates(&inv, server, Some(&set)).expect("render");
    assert_eq!(again.id(), generation.id());
    set.insert("issued.example.com", certificate(root, "renewed"));
    let renewed = renderer.render_with_certificates(&inv, server, Some(&set)).expect("render");
    assert_ne!(renewed.id(), generation.id(), "a renewed certificate must be deployed");
    assert_ne!(
        renewed.file("certs/issued.example.com/fullchain.pem").map(|f| &f.bytes),
        generation.file("certs/issued.example.com/fullchain.pem").map(|f| &f.bytes)
    );
    // A review render (no set) carries no keys but the same paths.
    let review = renderer.render(&inv, server).expect("render");
    assert!(review.files().keys().all(|p| !p.as_str().starts_with("certs/")));
    assert!(
        String::from_utf8_lossy(&review.file("sites/pending.example.com.conf").expect("site").bytes)
            .contains("ssl_certificate ")
    );
}
