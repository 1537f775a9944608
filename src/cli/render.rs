//! `rpcc render <inventory.toml> --out DIR [--server NAME] [--root PATH]`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rpcc_core::fragment::SiteExtension;
use rpcc_core::generation::{Generation, Renderer};
use rpcc_core::value::RemotePath;
use rpcc_nginx::{NginxRenderer, RenderOptions};

use super::secrets::SecretArgs;
use super::{EXIT_INVALID, EXIT_UNREADABLE};

#[derive(Debug, clap::Args)]
pub(crate) struct RenderArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// Output directory; each server's tree goes to DIR/<server>/ with a manifest.json.
    #[arg(long)]
    out: PathBuf,
    /// Render only this server.
    #[arg(long)]
    server: Option<String>,
    /// Override every server's managed root (where generations live on the server).
    #[arg(long)]
    root: Option<String>,
    /// Directory of template overrides (same file names as the built-in templates).
    #[arg(long)]
    templates: Option<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

pub(crate) fn run(args: &RenderArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let mut inv = match args.secrets.load(&args.inventory, &mut err) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    if let Some(root) = &args.root {
        match RemotePath::parse(root) {
            Ok(root) => inv.servers.iter_mut().for_each(|s| s.nginx.managed_root = root.clone()),
            Err(e) => {
                let _ = writeln!(err, "error: --root {root:?} {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    let mut options = RenderOptions::default();
    if let Some(dir) = &args.templates {
        options = options.with_override_dir(dir);
    }
    let mut renderer = match NginxRenderer::new(options) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let plugins = match rpcc::engine::load_plugins(&inv) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if let Some(set) = &plugins {
        renderer = renderer.with_extension(std::sync::Arc::clone(set) as std::sync::Arc<dyn SiteExtension>);
    }
    let servers: Vec<_> = match &args.server {
        Some(name) => match inv.server(name) {
            Some(s) => vec![s],
            None => {
                let _ = writeln!(err, "error: server {name:?} is not in {}", args.inventory.display());
                return ExitCode::from(EXIT_INVALID);
            }
        },
        None => inv.servers.iter().collect(),
    };
    // Render everything first: an error leaves no output at all.
    let mut generations = Vec::with_capacity(servers.len());
    for server in servers {
        match renderer.render(&inv, server) {
            Ok(g) => generations.push((server.name.to_string(), g)),
            Err(e) => {
                let _ = writeln!(err, "error: server {}: {e}", server.name);
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    // Lint plugins: findings go to stderr; errors make the exit status 1 (the files are
    // still written, for inspection; `rpcc apply` refuses to deploy them).
    let mut lint_errors = 0;
    if let Some(set) = &plugins {
        for (name, generation) in &generations {
            let Some(server) = inv.server(name) else { continue };
            for f in set.lint(&inv, server, generation) {
                if f.finding.severity == rpcc_wasm_plugins::Severity::Error {
                    lint_errors += 1;
                }
                let _ = writeln!(
                    err,
                    "{}: {name}: {}:{}: [{}] {}",
                    severity_word(f.finding.severity),
                    f.finding.file,
                    f.finding.line,
                    f.plugin,
                    f.finding.message
                );
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (name, generation) in &generations {
        let dir = args.out.join(name);
        if let Err(e) = write_tree(&dir, generation) {
            let _ = writeln!(err, "error: cannot write {}: {e}", dir.display());
            return ExitCode::from(EXIT_UNREADABLE);
        }
        let _ = writeln!(
            out,
            "{name}: generation {} ({} files, tree sha256 {}) -> {}",
            generation.id(),
            generation.files().len(),
            generation.tree_hash(),
            dir.display()
        );
    }
    if lint_errors > 0 {
        let _ = writeln!(
            err,
            "error: lint plugins reported {lint_errors} error(s); `rpcc apply` will refuse this configuration"
        );
        return ExitCode::from(EXIT_INVALID);
    }
    ExitCode::SUCCESS
}

/// `error`, `warning` or `note`.
pub(crate) fn severity_word(s: rpcc_wasm_plugins::Severity) -> &'static str {
    match s {
        rpcc_wasm_plugins::Severity::Error => "error",
        rpcc_wasm_plugins::Severity::Warning => "warning",
        _ => "note",
    }
}

/// Write a tree into a fresh sibling directory (a new, randomly named one: never a path
/// someone could have prepared), then swap it into place.
fn write_tree(dir: &Path, generation: &Generation) -> std::io::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("server");
    let staging_dir = tempfile::Builder::new().prefix(&format!(".{name}.rpcc-staging-")).tempdir_in(parent)?;
    let staging = staging_dir.path();
    for (path, file) in generation.files() {
        let target = staging.join(path.as_str());
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&target, &file.bytes)?;
    }
    let manifest = serde_json::to_vec_pretty(&generation.manifest()).map_err(std::io::Error::other)?;
    std::fs::write(staging.join("manifest.json"), manifest)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(staging_dir.keep(), dir)
}
