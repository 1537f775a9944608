//! Inventory parse + validate throughput: 1,000 and 10,000 sites over 4 servers.
//! `cargo bench --bench validate` prints the median of several runs per size and the
//! cost per site. No peer is compared here (validation has no peer in the legacy panel,
//! which validated nothing).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn inventory(sites: usize) -> String {
    let mut s = String::new();
    for i in 0..4 {
        let _ = write!(
            s,
            "[[servers]]\nname = \"edge-{i}\"\nhost = \"203.0.113.{}\"\nuser = \"deploy\"\n\
             host_key = \"ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"\nauth = {{ agent = true }}\n\n",
            10 + i
        );
    }
    s.push_str("[[groups]]\nname = \"all\"\nservers = [\"edge-0\", \"edge-1\", \"edge-2\", \"edge-3\"]\n\n");
    for i in 0..sites {
        let _ = write!(
            s,
            "[[sites]]\ndomain = \"site-{i}.example.com\"\naliases = [\"www.site-{i}.example.com\"]\ngroup = \"all\"\n\
             upstream = {{ backends = [\"10.0.{}.{}:8080\", \"10.1.{}.{}:8080\"], balance = \"least_conn\" }}\n\
             tls = {{ mode = \"acme\" }}\nwebsocket = true\nheaders = {{ \"X-Site\" = \"site {i}\" }}\n\
             limits = {{ body_size = \"10m\", rate_limit = {{ rate = \"10r/s\", burst = 20 }} }}\n\n",
            i / 250,
            i % 250 + 1,
            i / 250,
            i % 250 + 1
        );
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[allow(clippy::print_stdout)]
fn main() {
    println!("{:>8} {:>10} {:>12} {:>12}", "sites", "bytes", "median", "per site");
    for sites in [1_000usize, 10_000] {
        let text = inventory(sites);
        let runs = if sites > 5_000 { 5 } else { 15 };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let inv = rpcc::core::Inventory::from_toml_str(&text).expect("benchmark inventory is valid");
            times.push(t.elapsed());
            assert_eq!(inv.sites.len(), sites);
        }
        let m = median(times);
        let mut parse_only = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let node = rpcc::core::inventory::Node::from_toml(&text).expect("parses");
            parse_only.push(t.elapsed());
            drop(node);
        }
        let p = median(parse_only);
        println!(
            "{:>8} {:>10} {:>10.1}ms {:>10.2}µs   (TOML parse alone: {:.1}ms, {:.0}%)",
            sites,
            text.len(),
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() * 1e6 / sites as f64,
            p.as_secs_f64() * 1e3,
            100.0 * p.as_secs_f64() / m.as_secs_f64()
        );
    }
}
