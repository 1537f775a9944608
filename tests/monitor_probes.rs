//! Site probes against a real nginx from rpcc-testkit, deployed by rpcc, serving TLS with
//! certificates made in the test: one valid, one expiring in 3 days, one for the wrong
//! name; the alert engine turns the readings into exactly the expected alerts.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rpcc::core::model::Inventory;
use rpcc::engine::{ApplyOptions, Engine, Selection};
use rpcc::monitor::{AlertEngine, AlertKind, AlertRulesConfig, Reading, SiteProber, SiteTarget, Subject};
use rpcc_testkit::Fleet;

fn cert(dir: &Path, name: &str, cn: &str, days: u32) -> anyhow::Result<()> {
    common::self_signed_files(dir, name, cn, "rsa:2048", days)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_certificates_are_read_judged_and_alerted() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let dir = tempfile::tempdir()?;
    Command::new("chmod").arg("0755").arg(dir.path()).status()?;
    cert(dir.path(), "valid", "valid.test.example", 90)?;
    cert(dir.path(), "expiring", "expiring.test.example", 3)?;
    cert(dir.path(), "wrong", "other.example", 90)?;
    let mut toml = fleet.deploy_inventory_toml();
    for (domain, file) in [("valid", "valid"), ("expiring", "expiring"), ("wrongname", "wrong")] {
        toml.push_str(&format!(
            "\n[[sites]]\ndomain = \"{domain}.test.example\"\ngroup = \"all\"\nupstream = {{ backends = [\"127.0.0.1:9\"] }}\n\
             tls = {{ mode = \"custom\", cert = \"{0}/{file}.pem\", key = \"{0}/{file}.key\", redirect_http = false }}\n\
             health_path = \"/healthz\"\n",
            dir.path().display()
        ));
    }
    let inv = Inventory::from_toml_str(&toml)?;
    let engine = Engine::open(inv.clone(), &dir.path().join("state.db"), None).await?;
    // The post-deploy probe would refuse the misnamed certificate (and restore): this
    // test is about what the monitor reads from a server serving one, so it is deployed
    // without the probe.
    let report =
        engine.apply(&Selection::default(), ApplyOptions { skip_probe: true, ..ApplyOptions::default() }).await?;
    assert!(!report.failed(), "{report:?}");

    let prober = SiteProber::new(Duration::from_secs(5));
    let server = &inv.servers[0];
    let mut alerts = AlertEngine::new(AlertRulesConfig::default().build()?);
    let mut fired = Vec::new();
    for site in &inv.sites {
        let target = SiteTarget::for_site(server, site).await.expect("loopback target");
        let r = prober.probe(&target).await;
        let http = r.http.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(http.status, 200, "{r:?}");
        let cert = r.cert.clone().expect("TLS site").map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(cert.untrusted.is_some(), "a self-signed certificate must not count as trusted: {cert:?}");
        match site.domain.as_str() {
            "valid.test.example" => assert!(cert.name_matches && cert.days_left > 85.0, "{cert:?}"),
            "expiring.test.example" => {
                assert!(cert.name_matches && cert.days_left < 3.1 && cert.days_left > 2.5, "{cert:?}")
            }
            "wrongname.test.example" => {
                assert!(!cert.name_matches && cert.names == ["other.example"], "{cert:?}");
            }
            other => panic!("unexpected site {other}"),
        }
        let subject = Subject::Certificate { site: r.site.clone(), server: r.server.clone() };
        let reading = if cert.name_matches {
            Reading::DaysLeft(cert.days_left)
        } else {
            Reading::Failed(format!("certificate names {:?} do not cover the site", cert.names))
        };
        if let Some(e) = alerts.observe(&subject, &reading, 0) {
            assert_eq!(e.kind, AlertKind::Fired);
            fired.push(r.site.clone());
        }
    }
    fired.sort();
    assert_eq!(fired, ["expiring.test.example", "wrongname.test.example"]);

    // A TLS handshake failure (nothing speaks TLS there) is a result naming the site.
    let mut broken = SiteTarget::for_site(server, &inv.sites[0]).await.expect("target");
    broken.https = Some(broken.http); // plain HTTP port
    let r = prober.probe(&broken).await;
    assert!(r.http.is_err() && matches!(r.cert, Some(Err(_))), "{r:?}");
    assert_eq!(r.site, "valid.test.example");
    Ok(())
}
