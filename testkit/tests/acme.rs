//! The kit's ACME test CA (Pebble) starts on loopback, serves its directory over HTTPS
//! signed by the kit's own API CA, and hands out its issuing root.

use std::process::Command;

use rpcc_testkit::{AcmeOptions, AcmeServer};

fn curl(ca: &std::path::Path, url: &str) -> anyhow::Result<String> {
    let out = Command::new("curl").args(["-sS", "--fail", "--max-time", "10", "--cacert"]).arg(ca).arg(url).output()?;
    anyhow::ensure!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn pebble_serves_an_acme_directory_over_tls() -> anyhow::Result<()> {
    let acme = AcmeServer::start(&AcmeOptions { http_port: 80, ..AcmeOptions::default() })?;
    let dir = curl(acme.api_ca(), &acme.directory_url())?;
    for field in ["newNonce", "newAccount", "newOrder", "revokeCert"] {
        assert!(dir.contains(field), "{dir}");
    }
    // Only the kit's API CA is trusted for it: the system roots do not know it.
    let plain = Command::new("curl").args(["-sS", "--max-time", "10"]).arg(acme.directory_url()).output()?;
    assert!(!plain.status.success());
    let root = curl(acme.api_ca(), &format!("{}/roots/0", acme.management_url()))?;
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let pid = acme.pid();
    drop(acme);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pebble stopped with the server");
    Ok(())
}
