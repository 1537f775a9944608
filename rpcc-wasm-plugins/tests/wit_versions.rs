//! Plugins built against another `rpcc:plugin` version.

mod common;
use common::dir;
use rpcc_wasm_plugins::{PluginError, PluginHost, PluginSpec};

/// `bytes` with every `rpcc:plugin/<interface>@0.1.0` name renamed to `@<version>` (same
/// length): the component a plugin built with that SDK version would be, interface
/// for interface.
fn built_against(bytes: &[u8], version: &str) -> Vec<u8> {
    assert_eq!(version.len(), 5);
    let mut out = bytes.to_vec();
    let prefix = b"rpcc:plugin/";
    let mut i = 0;
    while let Some(at) = out[i..].windows(prefix.len()).position(|w| w == prefix) {
        let start = i + at + prefix.len();
        let name_end = start + out[start..].iter().position(|c| !(c.is_ascii_lowercase() || *c == b'-')).unwrap_or(0);
        if out[name_end..].starts_with(b"@0.1.0") {
            out[name_end + 1..name_end + 6].copy_from_slice(version.as_bytes());
        }
        i = name_end;
    }
    out
}

fn load(version: &str) -> Result<rpcc_wasm_plugins::Plugin, PluginError> {
    let original = std::fs::read(dir().join("security_headers.wasm")).expect("plugin built");
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join(format!("security_headers-{version}.wasm"));
    std::fs::write(&path, built_against(&original, version)).expect("write");
    PluginHost::new().expect("host").load(&PluginSpec::from_file(&path))
}

fn lint(plugin: &rpcc_wasm_plugins::Plugin) -> Vec<String> {
    let inv = common::inventory();
    let files = vec![(
        "sites/app.example.com.conf".to_owned(),
        "server {\n    listen 443 ssl;\n    server_name app.example.com;\n}\n".to_owned(),
    )];
    let findings = plugin.lint(&inv, &inv.servers[0], &files).expect("lint runs");
    findings.iter().map(|f| format!("{}:{} {:?} {}", f.file, f.line, f.severity, f.message)).collect()
}

/// A plugin built with a newer SDK of the same minor version (interfaces renamed
/// `@0.1.7`) loads, says which version it was built against, and behaves exactly as
/// the `0.1.0` build.
#[test]
fn a_plugin_built_against_a_compatible_newer_version_loads_and_runs() {
    let current = load("0.1.0").expect("0.1.0 loads");
    let newer = load("0.1.7").expect("0.1.7 loads");
    assert_eq!(current.wit_version().to_string(), "0.1.0");
    assert_eq!(newer.wit_version().to_string(), "0.1.7");
    let expected = lint(&current);
    assert!(expected.iter().any(|f| f.contains("Strict-Transport-Security")), "{expected:?}");
    assert_eq!(lint(&newer), expected);
}

/// Another minor (below 1.0) or major version is refused at load, naming the imports
/// and the range this host loads.
#[test]
fn a_plugin_built_against_an_incompatible_version_is_refused_with_the_range() {
    for version in ["0.2.0", "1.1.0", "0.0.9"] {
        let err = load(version).err().unwrap_or_else(|| panic!("{version} must be refused"));
        assert!(matches!(err, PluginError::ForbiddenImport { .. }), "{version}: {err}");
        let text = err.to_string();
        assert!(text.contains(&format!("rpcc:plugin/host-log@{version}")), "{text}");
        assert!(text.contains(">=0.1.0, <0.2.0") && text.contains("rebuild the plugin"), "{text}");
    }
}
