//! WASM plugins for tests: the example plugins (`examples/plugins`) and the hostile
//! ones (`rpcc-wasm-plugins/tests/guests` on std, `tests/guests-nostd` without), built
//! once per test process for
//! `wasm32-wasip2` (cargo's own lock serialises concurrent test processes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::KitError;

/// The repository root: found from the *running* test's package directory (cargo and
/// nextest set `CARGO_MANIFEST_DIR` at run time), since a build cached from another
/// checkout may carry that checkout's compile-time path.
fn repo_root() -> PathBuf {
    let is_root = |p: &Path| p.join("examples/plugins/Cargo.toml").is_file();
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    if let Some(found) = runtime.as_deref().and_then(|start| start.ancestors().find(|p| is_root(p))) {
        return found.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the plugin builds go: `$CARGO_TARGET_DIR/wasm-plugins`, else `<root>/target/wasm-plugins`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from).join("wasm-plugins")
}

fn build(workspace: &Path) -> Result<(), KitError> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| KitError::Missing { program: "cargo".into(), hint: e.to_string() })?;
    if !out.status.success() {
        return Err(KitError::Command {
            what: format!("cargo build --target wasm32-wasip2 in {}", workspace.display()),
            detail: format!(
                "{} (is the target installed? rustup target add wasm32-wasip2)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Build the example and hostile plugins (once per process) and return the directory
/// holding `<name>.wasm` (crate names with `_`: `maintenance_page.wasm`, `hostile.wasm` …).
pub fn wasm_plugins() -> Result<PathBuf, KitError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            build(&root.join("examples/plugins")).map_err(|e| e.to_string())?;
            build(&root.join("rpcc-wasm-plugins/tests/guests")).map_err(|e| e.to_string())?;
            build(&root.join("rpcc-wasm-plugins/tests/guests-nostd")).map_err(|e| e.to_string())?;
            Ok(target_dir().join("wasm32-wasip2/release"))
        })
        .clone()
        .map_err(|detail| KitError::Command { what: "building the WASM plugins".into(), detail })
}
