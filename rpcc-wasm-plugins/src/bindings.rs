//! Host bindings generated from `wit/rpcc-plugin@0.1.0` (one module per world; shared
//! types and host interfaces generated once).

#![allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]

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
            "rpcc:plugin/types": crate::bindings::shared::rpcc::plugin::types,
            "rpcc:plugin/template-types": crate::bindings::shared::rpcc::plugin::template_types,
            "rpcc:plugin/host-log": crate::bindings::shared::rpcc::plugin::host_log,
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
            "rpcc:plugin/types": crate::bindings::shared::rpcc::plugin::types,
            "rpcc:plugin/host-log": crate::bindings::shared::rpcc::plugin::host_log,
            "rpcc:plugin/host-clock": crate::bindings::shared::rpcc::plugin::host_clock,
            "rpcc:plugin/host-http": crate::bindings::shared::rpcc::plugin::host_http,
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
            "rpcc:plugin/types": crate::bindings::shared::rpcc::plugin::types,
            "rpcc:plugin/host-log": crate::bindings::shared::rpcc::plugin::host_log,
        },
    });
}
