//! Render throughput, side by side with Python Jinja2 rendering the same templates from
//! the same data in the same run.
//!
//! `cargo bench -p rpcc-nginx --bench render` (needs the tools venv with Jinja2, made by
//! scripts/setup-host). Prints per-site costs and the ratio to Jinja2.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpcc_core::generation::Renderer;
use rpcc_core::model::Inventory;
use rpcc_nginx::{NginxRenderer, RenderOptions};

fn inventory(servers: usize, sites: usize) -> Inventory {
    let mut s = String::new();
    for i in 0..servers {
        let _ = write!(
            s,
            "[[servers]]\nname = \"edge-{i}\"\nhost = \"203.0.113.{}\"\nuser = \"deploy\"\nauth = {{ agent = true }}\n\n",
            10 + i
        );
    }
    let names: Vec<String> = (0..servers).map(|i| format!("\"edge-{i}\"")).collect();
    let _ = write!(s, "[[groups]]\nname = \"all\"\nservers = [{}]\n\n", names.join(", "));
    for i in 0..sites {
        let _ = write!(
            s,
            "[[sites]]\ndomain = \"site-{i}.example.com\"\naliases = [\"www.site-{i}.example.com\"]\ngroup = \"all\"\n\
             upstream = {{ backends = [\"10.0.{a}.{b}:8080\", \"10.1.{a}.{b}:8080\"], balance = \"least_conn\" }}\n\
             tls = {{ mode = \"acme\" }}\nwebsocket = true\nhealth_path = \"/healthz\"\n\
             limits = {{ body_size = \"10m\", rate_limit = {{ rate = \"10r/s\", burst = 20 }} }}\n\n",
            a = i / 250,
            b = i % 250 + 1
        );
    }
    Inventory::from_toml_str(&s).expect("benchmark inventory is valid")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tools_python() -> String {
    std::env::var("RPCC_TOOLS_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/rpcc-tools/bin/python", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
    })
}

const JINJA_PEER: &str = r#"
import json, sys, time
import jinja2
data = json.load(sys.stdin)
def check(v):
    return v
env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True,
                         lstrip_blocks=True, keep_trailing_newline=True)
env.filters["arg"] = check
env.filters["words"] = check
env.filters["q"] = check
tmpl = env.from_string(data["template"])
contexts = data["contexts"]
runs = []
for _ in range(data["runs"]):
    t = time.perf_counter()
    total = 0
    for ctx in contexts:
        total += len(tmpl.render(**ctx))
    runs.append(time.perf_counter() - t)
runs.sort()
print(json.dumps({"median_s": runs[len(runs) // 2], "bytes": total}))
"#;

/// Jinja2 rendering `site.conf.j2` for each site context; returns (median seconds, bytes).
fn jinja2(renderer: &NginxRenderer, inv: &Inventory, runs: usize) -> Option<(f64, u64)> {
    let server = &inv.servers[0];
    let contexts: Vec<_> = renderer
        .template_inputs(inv, server)
        .ok()?
        .into_iter()
        .filter(|t| t.template == "site.conf.j2")
        .map(|t| t.context)
        .collect();
    let payload = serde_json::json!({
        "template": NginxRenderer::builtin_template("site.conf.j2")?,
        "contexts": contexts,
        "runs": runs,
    });
    let mut child = Command::new(tools_python())
        .args(["-c", JINJA_PEER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(&serde_json::to_vec(&payload).ok()?).ok()?;
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["median_s"].as_f64()?, v["bytes"].as_u64()?))
}

fn time_runs(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        bytes = f();
        times.push(t.elapsed());
    }
    (median(times), bytes)
}

fn render_all(renderer: &NginxRenderer, inv: &Inventory) -> usize {
    inv.servers
        .iter()
        .map(|server| {
            renderer.render(inv, server).expect("render").files().values().map(|f| f.bytes.len()).sum::<usize>()
        })
        .sum()
}

#[allow(clippy::print_stdout)]
fn main() {
    let mut options = RenderOptions::default();
    if let Ok(dir) = std::env::var("RPCC_BENCH_TEMPLATES") {
        options = options.with_override_dir(dir);
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("render benchmark: release build, medians, {threads} core(s)");
    // RPCC_BENCH_QUICK: one small cold case, for instruction counting under callgrind.
    let cases: &[(usize, usize, usize)] =
        if std::env::var("RPCC_BENCH_QUICK").is_ok() { &[(1, 500, 1)] } else { &[(1, 10_000, 7), (4, 50, 25)] };
    for &(servers, sites, runs) in cases {
        let inv = inventory(servers, sites);
        let renders = (servers * sites) as f64;
        // Templates are compiled once, when the renderer is built.
        let t = Instant::now();
        let renderer = NginxRenderer::new(options.clone()).expect("renderer");
        let compile = t.elapsed();
        // Cold: nothing cached, every site rendered; on one thread (as the Jinja2 peer
        // runs), then on every core.
        let single =
            NginxRenderer::new(options.clone().with_max_threads(std::num::NonZeroUsize::MIN)).expect("renderer");
        let (cold_one, _) = time_runs(runs, || {
            single.clear_cache();
            render_all(&single, &inv)
        });
        let (cold, bytes) = time_runs(runs, || {
            renderer.clear_cache();
            render_all(&renderer, &inv)
        });
        render_all(&renderer, &inv);
        // Warm: nothing changed since the last render of these servers.
        let (warm, _) = time_runs(runs, || render_all(&renderer, &inv));
        // One site changed between renders: alternate two inventories.
        let mut changed_src = inv.clone();
        changed_src.sites[0].websocket = !changed_src.sites[0].websocket;
        let mut flip = false;
        let (one_changed, _) = time_runs(runs, || {
            flip = !flip;
            render_all(&renderer, if flip { &changed_src } else { &inv })
        });
        if std::env::var("RPCC_BENCH_BREAKDOWN").is_ok() {
            let t = Instant::now();
            let inputs = renderer.template_inputs(&inv, &inv.servers[0]).expect("inputs");
            let views = t.elapsed();
            let t = Instant::now();
            let n: usize = inputs.iter().map(|i| renderer.render_input(i).len()).sum();
            println!(
                "    one core: views + template values {:.1} ms, template execution {:.1} ms ({n} bytes)",
                views.as_secs_f64() * 1e3,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / renders;
        println!(
            "{servers} server(s) x {sites} sites ({:.1} MB; templates compiled once in {:.1} ms): cold, one thread {:.2} µs/site | cold, {threads} cores {:.1} ms = {:.2} µs/site | warm {:.2} µs/site | 1 site changed {:.2} µs/site",
            bytes as f64 / 1e6,
            compile.as_secs_f64() * 1e3,
            us(cold_one),
            cold.as_secs_f64() * 1e3,
            us(cold),
            us(warm),
            us(one_changed)
        );
        match jinja2(&renderer, &inv, 5) {
            Some((secs, _)) => {
                let j = secs * 1e6 / sites as f64;
                println!(
                    "    Jinja2, same template and data, one thread: {j:.2} µs/site | rpcc cold on one thread is {:.1}x faster \
                     (on {threads} cores {:.1}x), warm {:.1}x",
                    j / us(cold_one),
                    j / us(cold),
                    j / us(warm)
                );
            }
            None => println!("    Jinja2 peer unavailable (run scripts/setup-host)"),
        }
    }
}
