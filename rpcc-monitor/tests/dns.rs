//! DNS checks against a real resolver on loopback (dnsmasq from rpcc-testkit): a name
//! that resolves to the serving server, one that resolves elsewhere, one that does not
//! exist, and a resolver that never answers.

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use rpcc_monitor::DnsProber;
use rpcc_testkit::Resolver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_checked_against_the_serving_servers() -> anyhow::Result<()> {
    let dns = Resolver::start(&[
        ("good.rpcc.test", Some([127, 0, 0, 1].into())),
        ("moved.rpcc.test", Some([203, 0, 113, 77].into())),
        ("missing.rpcc.test", None),
    ])?;
    let prober = DnsProber::with_nameserver(dns.addr(), Duration::from_secs(2)).map_err(anyhow::Error::msg)?;
    let serving: Vec<IpAddr> = vec![[127, 0, 0, 1].into()];
    let good = prober.check("good.rpcc.test", &["good.rpcc.test".into()], &serving).await;
    assert_eq!(good.problem, None, "{good:?}");

    let moved = prober.check("app", &["good.rpcc.test".into(), "moved.rpcc.test".into()], &serving).await;
    let why = moved.problem.expect("mismatch");
    assert!(why.contains("moved.rpcc.test resolves to 203.0.113.77"), "{why}");
    assert!(!why.contains("good.rpcc.test"), "{why}");

    let missing = prober.check("missing", &["missing.rpcc.test".into()], &serving).await;
    assert!(
        missing.problem.as_deref().is_some_and(|p| p.contains("missing.rpcc.test does not resolve")),
        "{missing:?}"
    );

    // A resolver that never answers: a timeout, reported, within the bound.
    let silent = UdpSocket::bind("127.0.0.1:0")?;
    let quiet =
        DnsProber::with_nameserver(silent.local_addr()?, Duration::from_millis(500)).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let r = quiet.check("good.rpcc.test", &["good.rpcc.test".into()], &serving).await;
    assert!(r.problem.is_some(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    Ok(())
}
