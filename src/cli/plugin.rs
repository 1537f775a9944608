//! `rpcc plugin check <file.wasm>`: load a plugin as rpcc would, print its manifest and
//! run it against a sample site.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rpcc_core::Inventory;
use rpcc_core::fragment::FragmentPolicy;
use rpcc_core::generation::Renderer;
use rpcc_core::model::{PluginCapability, Server, Site};
use rpcc_nginx::{NginxRenderer, RenderOptions};
use rpcc_wasm_plugins::{HttpResponse, Plugin, PluginHost, PluginKind, PluginSpec, SiteHttp};

use super::EXIT_INVALID;

/// Plugin commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PluginCommand {
    /// Load a plugin (.wasm component), print its manifest and run it against a sample site.
    Check(PluginCheckArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct PluginCheckArgs {
    /// The component file.
    file: PathBuf,
    /// Grant a capability (http-get, clock); repeatable.
    #[arg(long, value_parser = ["http-get", "clock"])]
    grant: Vec<String>,
    /// A config entry KEY=VALUE passed with the sample site; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Allow this directive in template output (default: rpcc's default set); repeatable.
    #[arg(long, value_name = "DIRECTIVE")]
    allow: Vec<String>,
}

/// The sample the plugin runs against (documentation addresses: nothing is contacted).
const SAMPLE: &str = r#"
[[servers]]
name = "sample-edge"
host = "203.0.113.10"
user = "deploy"
auth = { agent = true }

[[groups]]
name = "sample"
servers = ["sample-edge"]

[[sites]]
domain = "app.example.com"
aliases = ["www.app.example.com"]
group = "sample"
upstream = { backends = ["10.0.0.5:8080"] }
health_path = "/healthz"
headers = { X-Sample = "yes" }
"#;

/// Answers every GET with 200 "ok" (no network).
struct SampleHttp;

impl SiteHttp for SampleHttp {
    fn get(&self, _path: &str, _timeout: Duration) -> Result<HttpResponse, rpcc_wasm_plugins::SiteHttpError> {
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"ok\n".to_vec(),
        })
    }
}

pub(crate) fn run(cmd: &PluginCommand) -> ExitCode {
    let PluginCommand::Check(args) = cmd;
    let mut err = std::io::stderr();
    let mut out = std::io::stdout().lock();
    let mut spec = PluginSpec::from_file(&args.file);
    for g in &args.grant {
        spec = spec.grant(if g == "clock" { PluginCapability::Clock } else { PluginCapability::HttpGet });
    }
    for kv in &args.config {
        let Some((k, v)) = kv.split_once('=') else {
            let _ = writeln!(err, "error: --config {kv:?} must be KEY=VALUE");
            return ExitCode::from(EXIT_INVALID);
        };
        spec = spec.config(k, v);
    }
    if !args.allow.is_empty() {
        match FragmentPolicy::new(&args.allow) {
            Ok(p) => spec = spec.allow(p),
            Err(e) => {
                let _ = writeln!(err, "error: --allow: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    let inv = match Inventory::from_toml_str(SAMPLE) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(err, "error: sample inventory: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let result = PluginHost::new().and_then(|host| host.load(&spec));
    let plugin = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let m = plugin.manifest();
    let caps: Vec<&str> = m.capabilities.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(out, "plugin:       {} {}", m.name, m.version);
    let _ = writeln!(
        out,
        "kind:         {} (built against rpcc:plugin@{}; this host implements {})",
        plugin.kind().as_str(),
        plugin.wit_version(),
        rpcc_wasm_plugins::WIT_VERSION
    );
    let _ = writeln!(out, "description:  {}", m.description);
    let _ = writeln!(out, "capabilities: {}", if caps.is_empty() { "none".to_owned() } else { caps.join(", ") });
    let _ = writeln!(out, "sha256:       {}", plugin.sha256());
    let (server, site) = (&inv.servers[0], &inv.sites[0]);
    let _ = writeln!(out, "\nsample: site {} on server {} (nothing is contacted)\n", site.domain, server.name);
    let outcome = match plugin.kind() {
        PluginKind::Template => run_template(&mut out, &plugin, &inv, server, site),
        PluginKind::Lint => run_lint(&mut out, &plugin, &inv, server),
        _ => run_check(&mut out, &plugin, &inv, server, site),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn run_template(
    out: &mut impl Write,
    plugin: &Plugin,
    inv: &Inventory,
    server: &Server,
    site: &Site,
) -> Result<(), String> {
    let renderer = NginxRenderer::new(RenderOptions::default())
        .map_err(|e| e.to_string())?
        .with_extension(Arc::new(plugin.clone()));
    let text = renderer.render_site(inv, server, site.domain.as_str()).map_err(|e| e.to_string())?;
    let _ = writeln!(out, "rendered site config:\n{text}");
    Ok(())
}

fn run_lint(out: &mut impl Write, plugin: &Plugin, inv: &Inventory, server: &Server) -> Result<(), String> {
    let renderer = NginxRenderer::new(RenderOptions::default()).map_err(|e| e.to_string())?;
    let generation = renderer.render(inv, server).map_err(|e| e.to_string())?;
    let findings = plugin.lint_generation(inv, server, &generation).map_err(|e| e.to_string())?;
    let _ = writeln!(out, "{} finding(s) over {} files:", findings.len(), generation.files().len());
    for f in findings {
        let _ = writeln!(out, "  {}: {}:{}: {}", super::render::severity_word(f.severity), f.file, f.line, f.message);
    }
    Ok(())
}

fn run_check(
    out: &mut impl Write,
    plugin: &Plugin,
    inv: &Inventory,
    server: &Server,
    site: &Site,
) -> Result<(), String> {
    let r = plugin.check(inv, server, site, Arc::new(SampleHttp)).map_err(|e| e.to_string())?;
    let _ = writeln!(out, "check (every GET answered 200 \"ok\" by the sample): {:?}: {}", r.status, r.message);
    for l in r.logs {
        let _ = writeln!(out, "  log {}: {}", l.level, l.message);
    }
    Ok(())
}
