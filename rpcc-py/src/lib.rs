//! # rpcc-py
//!
//! **Not implemented yet** (issue: "rpcc-py"). This crate will be built with maturin into
//! the Python package `rpcc` (native module `rpcc._rpcc`) so the legacy Flask panel can
//! swap its engines (render, deploy, SSH, crypto) for rpcc one at a time.
