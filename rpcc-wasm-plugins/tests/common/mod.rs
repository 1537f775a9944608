//! Shared by the plugin host's test files: where the built guests are, a one-site
//! inventory, and plugin limits built through the inventory's own parser.
#![allow(dead_code)]

use std::path::PathBuf;

use rpcc_core::Inventory;
use rpcc_core::model::PluginLimits;

pub fn dir() -> PathBuf {
    rpcc_testkit::wasm_plugins().expect("build the test plugins")
}

pub fn inventory() -> Inventory {
    Inventory::from_toml_str(
        r#"
        [[servers]]
        name = "edge-1"
        host = "203.0.113.10"
        user = "deploy"
        auth = { agent = true }
        [[groups]]
        name = "eu"
        servers = ["edge-1"]
        [[sites]]
        domain = "app.example.com"
        group = "eu"
        upstream = { backends = ["10.0.0.5:8080"] }
        "#,
    )
    .expect("inventory")
}

pub fn limits(edit: impl FnOnce(&mut toml_limits::Edit)) -> PluginLimits {
    let mut e = toml_limits::Edit::default();
    edit(&mut e);
    e.build()
}

/// Limits through the inventory's own parser (the only public way to build them).
pub mod toml_limits {
    use rpcc_core::model::PluginLimits;

    #[derive(Default)]
    pub struct Edit {
        pub fuel: Option<u64>,
        pub memory: Option<&'static str>,
        pub timeout: Option<&'static str>,
        pub max_output: Option<&'static str>,
    }

    impl Edit {
        pub fn build(self) -> PluginLimits {
            let mut fields = Vec::new();
            if let Some(f) = self.fuel {
                fields.push(format!("fuel = {f}"));
            }
            for (k, v) in [("memory", self.memory), ("timeout", self.timeout), ("max_output", self.max_output)] {
                if let Some(v) = v {
                    fields.push(format!("{k} = \"{v}\""));
                }
            }
            let inv = rpcc_core::Inventory::from_toml_str(&format!(
                "[[plugins]]\nname = \"x\"\npath = \"x.wasm\"\nlimits = {{ {} }}\n",
                fields.join(", ")
            ))
            .expect("limits");
            inv.plugins[0].limits
        }
    }
}
