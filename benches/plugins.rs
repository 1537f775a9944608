//! WASM plugin benchmark (`cargo bench --bench plugins`), side by side in one run:
//!
//! - load + compile a component (a new host, nothing cached) vs load from the host's
//!   compiled-component cache (instantiation + the manifest call);
//! - per call (a fresh instance each time, all limits on): a trivial check (the example
//!   `expected-status` against an in-memory HTTP answer) and a template plugin on one
//!   site (the example `maintenance-page`, output parsed and checked);
//! - 10,000 sites rendered with that template plugin vs without (cold site cache).
//!
//! Targets: instantiation from cache ≤ 1 ms, trivial call ≤ 50 µs, template plugin adds
//! ≤ 2× to render time. Needs the example plugins (built here when missing).
//! `RPCC_BENCH_QUICK=1` runs fewer repetitions.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc::core::Inventory;
use rpcc::core::generation::Renderer as _;
use rpcc::core::model::PluginCapability;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc::plugins::{HttpResponse, PluginHost, PluginSet, PluginSpec, SiteHttp};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Canned;

impl SiteHttp for Canned {
    fn get(&self, _path: &str, _timeout: Duration) -> Result<HttpResponse, rpcc_wasm_plugins::SiteHttpError> {
        Ok(HttpResponse { status: 200, headers: Vec::new(), body: b"ok\n".to_vec() })
    }
}

fn inventory(sites: usize, plugin: Option<&str>) -> Inventory {
    let mut t = String::from(
        "[[servers]]\nname = \"edge-1\"\nhost = \"203.0.113.10\"\nuser = \"deploy\"\nauth = { agent = true }\n\n\
         [[groups]]\nname = \"eu\"\nservers = [\"edge-1\"]\n",
    );
    if let Some(path) = plugin {
        t.push_str(&format!(
            "plugins = [\"maintenance\"]\n\n[[plugins]]\nname = \"maintenance\"\npath = \"{path}\"\n\
             config = {{ enabled = \"true\" }}\n"
        ));
    }
    for i in 0..sites {
        t.push_str(&format!(
            "\n[[sites]]\ndomain = \"site{i}.example.com\"\ngroup = \"eu\"\nupstream = {{ backends = [\"10.0.{}.{}:8080\"] }}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    Inventory::from_toml_str(&t).expect("inventory")
}

fn main() {
    let quick = std::env::var_os("RPCC_BENCH_QUICK").is_some();
    let dir = rpcc_testkit::wasm_plugins().expect("build the example plugins");
    let template = dir.join("maintenance_page.wasm");
    let check = dir.join("expected_status.wasm");
    let inv1 = inventory(1, None);
    let (server, site) = (&inv1.servers[0], &inv1.sites[0]);

    // 1. Load + compile vs load from cache.
    let runs = if quick { 3 } else { 7 };
    let spec = PluginSpec::from_file(&template).config("enabled", "true");
    let cold = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let host = PluginHost::new().unwrap();
                host.load(&spec).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&spec).unwrap();
    let n = if quick { 200 } else { 2_000 };
    let t = Instant::now();
    for _ in 0..n {
        host.load(&spec).unwrap();
    }
    let cached = t.elapsed().as_secs_f64() / f64::from(n);
    println!("load + compile (new host):         {:>9.2} ms", cold * 1e3);
    println!(
        "load from cache (instantiate+call): {:>8.1} µs   ({:.0}× faster; target ≤ 1 ms)",
        cached * 1e6,
        cold / cached
    );

    // 2. Per-call costs.
    let checker = host
        .load(&PluginSpec::from_file(&check).grant(PluginCapability::HttpGet).grant(PluginCapability::Clock))
        .unwrap();
    let http: Arc<dyn SiteHttp> = Arc::new(Canned);
    let n = if quick { 2_000 } else { 20_000 };
    let t = Instant::now();
    for _ in 0..n {
        checker.check(&inv1, server, site, Arc::clone(&http)).unwrap();
    }
    let per_check = t.elapsed().as_secs_f64() / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        plugin.render(&inv1, server, site).unwrap();
    }
    let per_render = t.elapsed().as_secs_f64() / f64::from(n);
    println!("trivial check call:                {:>8.1} µs   (target ≤ 50 µs)", per_check * 1e6);
    println!("template plugin, one site:         {:>8.1} µs", per_render * 1e6);

    // 3. 10,000 sites with and without the template plugin (cold renderer cache).
    let sites = 10_000;
    let plain_inv = inventory(sites, None);
    let with_inv = inventory(sites, Some(template.to_str().unwrap()));
    let plain = NginxRenderer::new(RenderOptions::default()).unwrap();
    let set = Arc::new(PluginSet::load(&host, &with_inv).unwrap());
    let with = NginxRenderer::new(RenderOptions::default()).unwrap().with_extension(set);
    // Interleaved (plain, with) pairs: drift on a shared machine hits both alike.
    let runs = if quick { 5 } else { 11 };
    let once = |r: &NginxRenderer, inv: &Inventory| {
        r.clear_cache();
        let t = Instant::now();
        let g = r.render(inv, &inv.servers[0]).unwrap();
        assert_eq!(g.files().len(), sites + 3);
        t.elapsed().as_secs_f64()
    };
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let x = once(&plain, &plain_inv);
        let y = once(&with, &with_inv);
        a.push(x);
        b.push(y);
        ratios.push(y / x);
    }
    let (a, b, ratio) = (median(a), median(b), median(ratios));
    println!("render {sites} sites, no plugin:     {:>8.1} ms", a * 1e3);
    println!(
        "render {sites} sites, template plugin:{:>7.1} ms   (median of paired ratios {ratio:.2}×; target ≤ 2×)",
        b * 1e3
    );
}
