//! Host bindings, one module per WIT package version the host implements (today
//! `v0_1`, from `wit/rpcc-plugin@0.1.0`). Plugins built against any semver-compatible
//! version load through them (wasmtime's linker and export lookups match `0.1.x`
//! names to the `0.1.0` definitions); see [`crate::WitVersion`].

#![allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]

/// `rpcc:plugin@0.1.x` (one module per world; shared types and host interfaces
/// generated once).
pub mod v0_1 {
    /// Shared types and host imports.
    pub mod shared {
        wasmtime::component::bindgen!({
            path: "wit/rpcc-plugin@0.1.0",
            world: "sdk",
            imports: { default: trappable },
        });
    }

    /// The `template-plugin` world.
    pub mod template {
        wasmtime::component::bindgen!({
            path: "wit/rpcc-plugin@0.1.0",
            world: "template-plugin",
            imports: { default: trappable },
            with: {
                "rpcc:plugin/types": crate::bindings::v0_1::shared::rpcc::plugin::types,
                "rpcc:plugin/template-types": crate::bindings::v0_1::shared::rpcc::plugin::template_types,
                "rpcc:plugin/host-log": crate::bindings::v0_1::shared::rpcc::plugin::host_log,
            },
        });
    }

    /// The `check-plugin` world.
    pub mod check {
        wasmtime::component::bindgen!({
            path: "wit/rpcc-plugin@0.1.0",
            world: "check-plugin",
            imports: { default: trappable },
            with: {
                "rpcc:plugin/types": crate::bindings::v0_1::shared::rpcc::plugin::types,
                "rpcc:plugin/host-log": crate::bindings::v0_1::shared::rpcc::plugin::host_log,
                "rpcc:plugin/host-clock": crate::bindings::v0_1::shared::rpcc::plugin::host_clock,
                "rpcc:plugin/host-http": crate::bindings::v0_1::shared::rpcc::plugin::host_http,
            },
        });
    }

    /// The `lint-plugin` world.
    pub mod lint {
        wasmtime::component::bindgen!({
            path: "wit/rpcc-plugin@0.1.0",
            world: "lint-plugin",
            imports: { default: trappable },
            with: {
                "rpcc:plugin/types": crate::bindings::v0_1::shared::rpcc::plugin::types,
                "rpcc:plugin/host-log": crate::bindings::v0_1::shared::rpcc::plugin::host_log,
            },
        });
    }
}
