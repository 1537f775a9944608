//! # rpcc-wasm-plugins
//!
//! **Not implemented yet** (issue: "rpcc-wasm-plugins"). This crate will host sandboxed
//! WASM components (WIT package `rpcc:plugin@0.1.0`) for template, check and lint
//! plugins, with fuel/epoch deadlines, memory limits, wall-clock timeouts and output caps
//! always on, and no WASI filesystem or network.
