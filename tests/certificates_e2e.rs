//! Certificates end to end, on a real loopback fleet (2 × sshd + nginx), a real ACME CA
//! (Pebble) and a real DNS server (dnsmasq): `Engine::apply` takes ACME, self-signed,
//! custom and plain sites from nothing to HTTPS on every server in two phases; a second
//! apply changes nothing; a forced renewal puts new certificates in service and a
//! rollback restores the old certificate with the old config; a CA that rejects the
//! challenge or is down fails the certificate (clearly, retried when down) while what
//! is served and stored stays as it was.

mod common;

use rpcc::acme::AcmeClient;
use rpcc::certs::{CertificateAction, CertificateOptions};
use rpcc::core::deploy::DeploymentState;
use rpcc::core::keyring::Keyring;
use rpcc::core::model::Inventory;
use rpcc::engine::{ApplyOptions, ApplyReport, Engine, Selection};
use rpcc::monitor::{SiteProber, SiteTarget};
use rpcc_testkit::{AcmeOptions, AcmeServer, Fleet, Resolver};

const SITES: &str = r#"
[[sites]]
domain = "app.acme.test"
aliases = ["api.acme.test"]
www = "to_apex"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "acme" }
health_path = "/healthz"

[[sites]]
domain = "staging.acme.test"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "self_signed", hsts = false }

[[sites]]
domain = "plain.acme.test"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
tls = { mode = "off" }
"#;

struct World {
    fleet: Fleet,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl World {
    fn start() -> anyhow::Result<Self> {
        let fleet = Fleet::start(2)?;
        let dir = tempfile::tempdir()?;
        Keyring::add_to_file(&dir.path().join("keys"), None)?;
        Ok(Self { fleet, dir, rt: common::runtime() })
    }

    /// A custom site whose certificate files the operator placed on each server.
    fn custom_site(&self) -> anyhow::Result<String> {
        for s in self.fleet.servers() {
            let dir = s.nginx_prefix().join("custom");
            std::fs::create_dir_all(&dir)?;
            let c = rpcc::acme::self_signed(&["shop.acme.test"], 30)?;
            std::fs::write(dir.join("fullchain.pem"), &c.chain_pem)?;
            std::fs::write(dir.join("privkey.pem"), secrecy::ExposeSecret::expose_secret(&c.key_pem))?;
            for f in ["fullchain.pem", "privkey.pem"] {
                std::fs::set_permissions(dir.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            }
        }
        // Every server has its own prefix: the path differs per server, so the custom
        // site is served by s0 only, with s0's files.
        let prefix = self.fleet.servers()[0].nginx_prefix().display().to_string();
        Ok(format!(
            "[[groups]]\nname = \"first\"\nservers = [\"s0\"]\n\n[[sites]]\ndomain = \"shop.acme.test\"\ngroup = \"first\"\n\
             upstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
             tls = {{ mode = \"custom\", cert = \"{prefix}/custom/fullchain.pem\", key = \"{prefix}/custom/privkey.pem\" }}\n"
        ))
    }

    fn inventory(&self, acme: &str, extra: &str) -> Inventory {
        let toml = format!("{}\n{acme}\n{SITES}\n{extra}", self.fleet.deploy_inventory_toml());
        Inventory::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
    }

    fn engine(&self, inv: Inventory) -> anyhow::Result<Engine> {
        let keyring = Keyring::from_file(&self.dir.path().join("keys"))?;
        Ok(self.rt.block_on(Engine::open(inv, &self.dir.path().join("state.db"), Some(keyring)))?)
    }

    fn apply(&self, engine: &Engine, certificates: CertificateOptions) -> anyhow::Result<ApplyReport> {
        let options = ApplyOptions { certificates, ..ApplyOptions::default() };
        Ok(self.rt.block_on(engine.apply(&Selection::default(), options))?)
    }

    /// The SHA-256 fingerprint each server presents for `domain` (SNI) on its HTTPS port.
    fn served(&self, domain: &str) -> Vec<Option<String>> {
        let prober = SiteProber::new(std::time::Duration::from_secs(5));
        self.fleet
            .servers()
            .iter()
            .map(|s| {
                let t = SiteTarget {
                    domain: domain.to_owned(),
                    server: s.name().to_owned(),
                    http: ([127, 0, 0, 1], s.http_port()).into(),
                    https: Some(([127, 0, 0, 1], s.https_port()).into()),
                    path: "/".into(),
                };
                match self.rt.block_on(prober.probe(&t)).cert {
                    Some(Ok(info)) => Some(info.fingerprint),
                    _ => None,
                }
            })
            .collect()
    }
}

/// `[acme]` for the test CA, trusting a copy of its API root (kept after the CA stops).
fn acme_section(acme: &AcmeServer, dir: &std::path::Path) -> String {
    let root = dir.join("acme-api-root.pem");
    std::fs::copy(acme.api_ca(), &root).expect("copy the CA's API root");
    format!("[acme]\ndirectory = \"{}\"\nca_root = \"{}\"\n", acme.directory_url(), root.display())
}

fn actions(report: &ApplyReport) -> Vec<(String, CertificateAction)> {
    let mut v: Vec<_> = report.certificates.iter().map(|c| (c.site.clone(), c.action)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn all_succeeded(report: &rpcc::core::deploy::FleetReport) -> bool {
    report.servers.iter().all(|r| r.state == DeploymentState::Succeeded)
}

fn stored_fingerprint(w: &World, engine: &Engine, site: &str) -> anyhow::Result<String> {
    let records = w.rt.block_on(engine.store().certificates())?;
    Ok(records.iter().find(|r| r.site == site).map(|r| r.fingerprint.to_hex()).unwrap_or_default())
}

#[test]
fn sites_go_from_nothing_to_https_on_every_server_and_renewals_roll_back_with_their_config() -> anyhow::Result<()> {
    let w = World::start()?;
    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    let acme = AcmeServer::start(&AcmeOptions {
        dns: Some(dns.addr()),
        http_port: w.fleet.servers()[0].http_port(),
        always_valid: false,
    })?;
    let custom = w.custom_site()?;
    let engine = w.engine(w.inventory(&acme_section(&acme, w.dir.path()), &custom))?;

    // 1. From nothing: self-signed generated, ACME issued across both servers (DNS sends
    //    the CA to s0; the answer is on both), both phases deployed.
    let first = w.apply(&engine, CertificateOptions::default())?;
    assert!(!first.failed(), "{first:#?}");
    assert_eq!(
        actions(&first),
        [
            ("app.acme.test".into(), CertificateAction::Issued),
            ("staging.acme.test".into(), CertificateAction::Generated)
        ]
    );
    assert!(all_succeeded(&first.fleet), "{first:#?}");
    let tls = first.tls_phase.as_ref().expect("a second phase put the ACME certificate in service");
    assert!(all_succeeded(tls), "{tls:#?}");

    let app = stored_fingerprint(&w, &engine, "app.acme.test")?;
    let staging = stored_fingerprint(&w, &engine, "staging.acme.test")?;
    assert_eq!(w.served("app.acme.test"), [Some(app.clone()), Some(app.clone())]);
    assert_eq!(w.served("api.acme.test"), [Some(app.clone()), Some(app.clone())], "an alias is covered");
    assert_eq!(w.served("www.app.acme.test"), [Some(app.clone()), Some(app.clone())], "the www name is covered");
    assert_eq!(w.served("staging.acme.test"), [Some(staging.clone()), Some(staging.clone())]);
    let shop = w.served("shop.acme.test");
    assert!(shop[0].is_some() && shop[0] != Some(app.clone()), "the custom site serves its own files: {shop:?}");
    let records = w.rt.block_on(engine.store().certificates())?;
    let app_rec = records.iter().find(|r| r.site == "app.acme.test").expect("stored");
    assert!(app_rec.issuer.contains("Pebble"), "{}", app_rec.issuer);
    assert_eq!(app_rec.names, ["app.acme.test", "api.acme.test", "www.app.acme.test"]);
    // Plain HTTP redirects, the challenge path stays reachable, and the key on the
    // server is owner-only.
    let s0 = &w.fleet.servers()[0];
    assert_eq!(common::get(s0.http_port(), "app.acme.test", "/").map(|r| r.0), Some(301));
    assert_eq!(common::get(s0.http_port(), "app.acme.test", "/.well-known/acme-challenge/x").map(|r| r.0), Some(404));
    let key = s0.managed_root().join("current/certs/app.acme.test/privkey.pem");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    let status = w.rt.block_on(engine.certificate_status(&Selection::default(), None))?;
    assert!(status.iter().all(|s| s.in_service() && s.due.is_none()), "{status:#?}");

    // 2. Nothing due: nothing obtained, nothing deployed.
    let again = w.apply(&engine, CertificateOptions::default())?;
    assert!(again.certificates.is_empty() && again.tls_phase.is_none(), "{again:#?}");
    assert!(again.fleet.servers.iter().all(|r| r.state == DeploymentState::NoOp), "{again:#?}");

    // 3. Forced renewal: new certificates in service on both servers.
    let before = common::current_generation(&s0.managed_root()).expect("current");
    let renewed = w.apply(&engine, CertificateOptions { force: true, ..Default::default() })?;
    assert!(!renewed.failed(), "{renewed:#?}");
    assert_eq!(
        actions(&renewed),
        [
            ("app.acme.test".into(), CertificateAction::Renewed),
            ("staging.acme.test".into(), CertificateAction::Generated)
        ]
    );
    let app2 = stored_fingerprint(&w, &engine, "app.acme.test")?;
    assert_ne!(app2, app);
    assert_eq!(w.served("app.acme.test"), [Some(app2.clone()), Some(app2.clone())]);

    // 4. A rollback restores the certificate that generation was validated with.
    let back = w.rt.block_on(engine.rollback("s0", Some(&before)))?;
    assert_eq!(back.state, DeploymentState::Succeeded, "{back:#?}");
    assert_eq!(w.served("app.acme.test"), [Some(app.clone()), Some(app2.clone())]);
    assert_eq!(w.served("staging.acme.test")[0], Some(staging));

    // 5. Revocation: the stored certificate is revoked at the CA and a new one is in
    //    service on both servers at once (s0 too, which had been rolled back).
    let records = w.rt.block_on(engine.store().certificates())?;
    let revoked_chain =
        records.iter().find(|r| r.site == "app.acme.test").map(|r| r.chain_pem.clone()).unwrap_or_default();
    let revoked = w.rt.block_on(engine.revoke_certificate("app.acme.test", true, ApplyOptions::default()))?;
    assert!(!revoked.failed(), "{revoked:#?}");
    assert_eq!(
        revoked.certificates.iter().map(|c| (c.site.as_str(), c.action)).collect::<Vec<_>>(),
        [("app.acme.test", CertificateAction::Renewed)],
        "only the revoked site is reissued"
    );
    let app3 = stored_fingerprint(&w, &engine, "app.acme.test")?;
    assert!(app3 != app2 && app3 != app);
    assert_eq!(w.served("app.acme.test"), [Some(app3.clone()), Some(app3.clone())]);
    // The CA knows: revoking the same certificate again is refused as already revoked.
    let keyring = Keyring::from_file(&w.dir.path().join("keys"))?;
    let root = w.dir.path().join("acme-api-root.pem");
    let again = w.rt.block_on(async {
        let client =
            AcmeClient::open_account(&acme.directory_url(), Some(&root), &[], &**engine.store(), &keyring).await?;
        anyhow::Ok(client.revoke(&revoked_chain, false).await)
    })?;
    let err = again.expect_err("a revoked certificate cannot be revoked twice");
    assert!(err.to_string().contains("alreadyRevoked"), "{err}");
    let app2 = app3;

    // 6. The CA goes away: the forced renewal fails after retries, naming the CA; the
    //    stored and served certificates stay.
    drop(acme);
    let down = w.apply(&engine, CertificateOptions { force: true, ..Default::default() })?;
    assert!(down.failed(), "{down:#?}");
    let app_outcome = down.certificates.iter().find(|c| c.site == "app.acme.test").expect("outcome");
    assert_eq!(app_outcome.action, CertificateAction::Failed);
    assert!(app_outcome.detail.contains("ACME CA"), "{}", app_outcome.detail);
    assert_eq!(stored_fingerprint(&w, &engine, "app.acme.test")?, app2);
    assert_eq!(w.served("app.acme.test")[1], Some(app2));
    Ok(())
}

#[test]
fn a_challenge_the_ca_cannot_validate_leaves_the_site_on_http_and_says_why() -> anyhow::Result<()> {
    let w = World::start()?;
    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    // The CA validates on a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let acme = AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port: closed, always_valid: false })?;
    let engine = w.engine(w.inventory(&acme_section(&acme, w.dir.path()), ""))?;
    let report = w.apply(&engine, CertificateOptions::default())?;
    assert!(report.failed(), "{report:#?}");
    let app = report.certificates.iter().find(|c| c.site == "app.acme.test").expect("outcome");
    assert_eq!(app.action, CertificateAction::Failed);
    assert!(app.detail.contains("could not validate the HTTP-01 challenge"), "{}", app.detail);
    assert!(app.detail.contains("acme.test"), "names the domain: {}", app.detail);
    // The first phase is in service: the site answers challenges over HTTP (503
    // elsewhere), nothing is served over HTTPS for it, and no certificate is stored.
    assert!(all_succeeded(&report.fleet), "{report:#?}");
    assert!(report.tls_phase.is_none());
    for s in w.fleet.servers() {
        assert_eq!(common::get(s.http_port(), "app.acme.test", "/").map(|r| r.0), Some(503));
        assert_eq!(
            common::get(s.http_port(), "app.acme.test", "/.well-known/acme-challenge/x").map(|r| r.0),
            Some(404)
        );
    }
    assert_eq!(w.served("app.acme.test"), [None, None]);
    let stored = w.rt.block_on(engine.store().certificates())?;
    assert_eq!(stored.iter().map(|r| r.site.as_str()).collect::<Vec<_>>(), ["staging.acme.test"]);
    Ok(())
}

#[test]
fn without_a_keyring_nothing_is_deployed_and_the_error_names_the_sites() -> anyhow::Result<()> {
    let w = World::start()?;
    let inv = w.inventory("", "");
    let engine = w.rt.block_on(Engine::open(inv, &w.dir.path().join("state.db"), None))?;
    let err = w.apply(&engine, CertificateOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("staging.acme.test") && text.contains("keyring"), "{text}");
    assert!(common::current_generation(&w.fleet.servers()[0].managed_root()).is_none());
    Ok(())
}

#[test]
fn certbot_client_sites_are_issued_on_the_first_server_and_deployed_to_all() -> anyhow::Result<()> {
    if std::process::Command::new("certbot").arg("--version").output().is_err() {
        anyhow::bail!("certbot is not installed (scripts/setup-host installs it)");
    }
    let w = World::start()?;
    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    let s0 = &w.fleet.servers()[0];
    let acme =
        AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port: s0.http_port(), always_valid: false })?;
    // certbot runs on s0 as its SSH user: the CA bundle must be readable there.
    let bundle = s0.nginx_prefix().join("acme-api-root.pem");
    std::fs::copy(acme.api_ca(), &bundle)?;
    std::fs::set_permissions(&bundle, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let section = format!("[acme]\ndirectory = \"{}\"\nca_root = \"{}\"\n", acme.directory_url(), bundle.display());
    let site = "[[sites]]\ndomain = \"bot.acme.test\"\naliases = [\"www2.acme.test\"]\ngroup = \"all\"\n\
                upstream = { backends = [\"127.0.0.1:9\"] }\ntls = { mode = \"acme\", client = \"certbot\" }\n";
    let toml = format!("{}\n{section}\n{site}", w.fleet.deploy_inventory_toml());
    let engine = w.engine(Inventory::from_toml_str(&toml)?)?;
    let report = w.apply(&engine, CertificateOptions::default())?;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(actions(&report), [("bot.acme.test".into(), CertificateAction::Issued)]);
    let stored = stored_fingerprint(&w, &engine, "bot.acme.test")?;
    assert_eq!(w.served("bot.acme.test"), [Some(stored.clone()), Some(stored.clone())], "deployed to both servers");
    assert_eq!(w.served("www2.acme.test"), [Some(stored.clone()), Some(stored)]);
    // certbot kept its state under rpcc's managed root on s0, never in /etc/letsencrypt.
    assert!(s0.managed_root().join("certbot/config/live/bot.acme.test/fullchain.pem").exists());

    // A certbot failure names the server and carries certbot's words; nothing changes.
    drop(acme);
    let down = w.apply(&engine, CertificateOptions { force: true, ..Default::default() })?;
    let outcome = down.certificates.iter().find(|c| c.site == "bot.acme.test").expect("outcome");
    assert_eq!(outcome.action, CertificateAction::Failed);
    assert!(outcome.detail.starts_with("certbot on s0:"), "{}", outcome.detail);
    Ok(())
}

#[test]
fn a_custom_certificate_missing_on_the_server_is_refused_naming_the_site() -> anyhow::Result<()> {
    let w = World::start()?;
    let site = "[[sites]]\ndomain = \"gone.acme.test\"\ngroup = \"all\"\nupstream = { backends = [\"127.0.0.1:9\"] }\n\
                tls = { mode = \"custom\", cert = \"/nonexistent/rpcc/gone.pem\", key = \"/nonexistent/rpcc/gone.key\" }\n";
    let toml = format!("{}\n{site}", w.fleet.deploy_inventory_toml());
    let engine = w.engine(Inventory::from_toml_str(&toml)?)?;
    let report = w.apply(&engine, CertificateOptions::default())?;
    assert!(report.failed());
    for r in &report.fleet.servers {
        if r.state == DeploymentState::Skipped {
            continue;
        }
        assert_eq!(r.state, DeploymentState::Rejected, "{r:#?}");
        assert!(
            r.detail.contains("site gone.acme.test: tls.cert /nonexistent/rpcc/gone.pem cannot be loaded"),
            "{}",
            r.detail
        );
    }
    assert!(common::current_generation(&w.fleet.servers()[0].managed_root()).is_none(), "nothing was activated");
    Ok(())
}

#[test]
fn scheduled_renewal_reports_a_failing_site_once_and_its_recovery() -> anyhow::Result<()> {
    use rpcc::certs::RenewalWatch;
    use rpcc::core::certs::{CertificateOrigin, key_record};

    let w = World::start()?;
    let dns = Resolver::start(&[("acme.test", Some("127.0.0.1".parse()?))])?;
    let s0 = &w.fleet.servers()[0];
    let acme =
        AcmeServer::start(&AcmeOptions { dns: Some(dns.addr()), http_port: s0.http_port(), always_valid: false })?;
    let up = acme_section(&acme, w.dir.path());
    let engine = w.engine(w.inventory(&up, ""))?;
    let first = w.apply(&engine, CertificateOptions::default())?;
    assert!(!first.failed(), "{first:#?}");

    // The ACME certificate is replaced in the store by one that expires in 5 days (the
    // served one stays), so the next scheduled run finds it due.
    let keyring = Keyring::from_file(&w.dir.path().join("keys"))?;
    let names = vec!["app.acme.test".to_owned(), "api.acme.test".to_owned(), "www.app.acme.test".to_owned()];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let short = rpcc::acme::self_signed(&refs, 5)?;
    let rec = rpcc::acme::certificate_record("app.acme.test", &names, CertificateOrigin::Acme, &short.chain_pem)?;
    let sealed = keyring.seal(&key_record("app.acme.test")?, &short.key_pem)?;
    w.rt.block_on(engine.store().put_certificate(&rec, &sealed))?;
    // A plan shows the key file changing but never its contents (old or new).
    let plans = w.rt.block_on(engine.plan(&Selection::default()))?;
    for outcome in &plans {
        let server = &outcome.server;
        let plan = outcome.result.as_ref().map_err(|e| anyhow::anyhow!("{server}: {e}"))?;
        let key = plan.changes.iter().find(|c| c.path == "certs/app.acme.test/privkey.pem").expect("key changes");
        assert_eq!(key.diff, "(private key: contents never shown; changed)\n");
        assert!(
            plan.changes
                .iter()
                .any(|c| c.path == "certs/app.acme.test/fullchain.pem" && c.diff.contains("CERTIFICATE"))
        );
        assert!(plan.changes.iter().all(|c| !c.diff.contains("PRIVATE KEY")), "{server}: a key leaked into the plan");
    }

    // The CA is unreachable: the first run reports the failure, the second stays quiet.
    let down_engine = w.engine(w.inventory("[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n", ""))?;
    let mut watch = RenewalWatch::default();
    let news = w.rt.block_on(watch.run(&down_engine))?;
    let message = news.message.expect("a failure is reported");
    assert!(message.contains("certificate of app.acme.test could not be renewed"), "{message}");
    assert_eq!(news.groups, ["all"]);
    assert!(news.report.failed() && news.report.deploy.is_none(), "{:#?}", news.report);
    let again = w.rt.block_on(watch.run(&down_engine))?;
    assert!(again.message.is_none(), "one message per incident: {:?}", again.message);
    assert!(again.report.failed());

    // The CA is back: renewed, deployed to both servers, reported as a recovery.
    let back = w.rt.block_on(watch.run(&engine))?;
    let message = back.message.expect("the recovery is reported");
    assert!(message.contains("certificate of app.acme.test renewed (recovered)"), "{message}");
    assert!(!back.report.failed(), "{:#?}", back.report);
    let deployed = back.report.deploy.as_ref().expect("deployed");
    assert!(all_succeeded(deployed), "{deployed:#?}");
    let stored = stored_fingerprint(&w, &engine, "app.acme.test")?;
    assert_eq!(w.served("app.acme.test"), [Some(stored.clone()), Some(stored)]);
    // Nothing due: nothing to say, nothing deployed.
    let quiet = w.rt.block_on(watch.run(&engine))?;
    assert!(quiet.message.is_none() && quiet.report.deploy.is_none() && quiet.report.certificates.is_empty());
    Ok(())
}
