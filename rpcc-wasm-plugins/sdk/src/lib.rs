//! # rpcc-plugin-sdk
//!
//! Write an rpcc plugin in a few lines. A plugin is a WebAssembly component built for
//! `wasm32-wasip2` that implements one of three worlds of the WIT package
//! `rpcc:plugin@0.1.0`:
//!
//! * **template**: add nginx directives to a site's server block, or replace it;
//! * **check**: probe a site on a server through the host's `http-get` capability;
//! * **lint**: report findings over a server's rendered configuration.
//!
//! ```ignore
//! use rpcc_plugin_sdk::prelude::*;
//!
//! struct NoServerTokens;
//!
//! impl TemplatePlugin for NoServerTokens {
//!     fn manifest() -> Manifest {
//!         Manifest::new("no-server-tokens", "1.0.0", "adds server_tokens off")
//!     }
//!     fn render(_site: SiteView, _server: ServerView) -> Result<TemplateOutput, String> {
//!         Ok(TemplateOutput::Fragments(vec![Fragment::text(InsertionPoint::Server, "server_tokens off;")]))
//!     }
//! }
//!
//! rpcc_plugin_sdk::export_plugin!(template: NoServerTokens);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and a `[lib] crate-type =
//! ["cdylib"]`. A `#![no_std]` plugin (with the SDK's `no-std-runtime` feature for its
//! allocator and panic handler) imports no WASI at all and is about twice as fast per
//! call as one built on std. The host gives a plugin no filesystem, network, environment or clock
//! beyond the capabilities the operator grants; every call runs with fuel, memory, time
//! and output limits.

#![no_std]
extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/rpcc-plugin@0.1.0",
        world: "sdk",
        pub_export_macro: true,
        export_macro_name: "__export_sdk",
        default_bindings_module: "rpcc_plugin_sdk::bindings",
        generate_all,
    });
}

#[doc(hidden)]
pub mod template_world {
    wit_bindgen::generate!({
        path: "../wit/rpcc-plugin@0.1.0",
        world: "template-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_template",
        default_bindings_module: "rpcc_plugin_sdk::template_world",
        with: {
            "rpcc:plugin/types@0.1.0": crate::bindings::rpcc::plugin::types,
            "rpcc:plugin/template-types@0.1.0": crate::bindings::rpcc::plugin::template_types,
            "rpcc:plugin/host-log@0.1.0": crate::bindings::rpcc::plugin::host_log,
        },
    });
}

#[doc(hidden)]
pub mod check_world {
    wit_bindgen::generate!({
        path: "../wit/rpcc-plugin@0.1.0",
        world: "check-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_check",
        default_bindings_module: "rpcc_plugin_sdk::check_world",
        with: {
            "rpcc:plugin/types@0.1.0": crate::bindings::rpcc::plugin::types,
            "rpcc:plugin/host-log@0.1.0": crate::bindings::rpcc::plugin::host_log,
            "rpcc:plugin/host-clock@0.1.0": crate::bindings::rpcc::plugin::host_clock,
            "rpcc:plugin/host-http@0.1.0": crate::bindings::rpcc::plugin::host_http,
        },
    });
}

#[doc(hidden)]
pub mod lint_world {
    wit_bindgen::generate!({
        path: "../wit/rpcc-plugin@0.1.0",
        world: "lint-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_lint",
        default_bindings_module: "rpcc_plugin_sdk::lint_world",
        with: {
            "rpcc:plugin/types@0.1.0": crate::bindings::rpcc::plugin::types,
            "rpcc:plugin/host-log@0.1.0": crate::bindings::rpcc::plugin::host_log,
        },
    });
}

pub use bindings::rpcc::plugin::host_http::Response as HttpResponse;
pub use bindings::rpcc::plugin::template_types::{
    Directive, Fragment, FragmentBody, InsertionPoint, TemplateOutput,
};
pub use bindings::rpcc::plugin::types::{
    Capability, CheckResult, CheckStatus, Finding, LogLevel, Manifest, RenderedFile, ServerView, Severity,
    SiteView,
};

/// Everything a plugin needs: `use rpcc_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Capability, CheckPlugin, CheckResult, CheckStatus, Directive, Finding, Fragment, FragmentBody,
        HttpResponse, InsertionPoint, LintPlugin, LogLevel, Manifest, RenderedFile, ServerView, Severity, SiteView,
        TemplateOutput, TemplatePlugin, clock, http_get, log,
    };
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

impl Manifest {
    /// A manifest that requests no capability.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self { name: name.into(), version: version.into(), description: description.into(), capabilities: Vec::new() }
    }

    /// Request `capability` (the operator must grant it).
    pub fn with_capability(mut self, capability: Capability) -> Self {
        self.capabilities.push(capability);
        self
    }
}

impl Fragment {
    /// A fragment in nginx syntax.
    pub fn text(at: InsertionPoint, text: impl Into<String>) -> Self {
        Self { at, body: FragmentBody::Text(text.into()) }
    }

    /// A fragment of structured directives.
    pub fn directives(at: InsertionPoint, directives: Vec<Directive>) -> Self {
        Self { at, body: FragmentBody::Directives(directives) }
    }
}

impl Directive {
    /// `name args…;` at the top level of the fragment.
    pub fn new(name: &str, args: &[&str]) -> Self {
        Self { name: name.into(), args: args.iter().map(|a| (*a).into()).collect(), parent: None, block: false }
    }

    /// Put this directive inside the block opened by directive number `parent`.
    pub fn inside(mut self, parent: u32) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Make this directive open a block (`location / { … }`).
    pub fn block(mut self) -> Self {
        self.block = true;
        self
    }
}

impl CheckResult {
    /// Passed.
    pub fn ok(message: impl Into<String>) -> Self {
        Self { status: CheckStatus::Ok, message: message.into() }
    }
    /// Works, but needs attention.
    pub fn warn(message: impl Into<String>) -> Self {
        Self { status: CheckStatus::Warn, message: message.into() }
    }
    /// Failed.
    pub fn fail(message: impl Into<String>) -> Self {
        Self { status: CheckStatus::Fail, message: message.into() }
    }
}

impl SiteView {
    /// The operator's setting `key` for this plugin (`[[plugins]] config`).
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The response header `name` the site adds (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A template plugin: fragments for a site, or a whole server block.
pub trait TemplatePlugin {
    /// Who the plugin is and what it needs.
    fn manifest() -> Manifest;
    /// Output for `site` on `server`; an `Err` fails the render with this message.
    fn render(site: SiteView, server: ServerView) -> Result<TemplateOutput, String>;
}

/// A check plugin.
pub trait CheckPlugin {
    /// Who the plugin is and what it needs (usually [`Capability::HttpGet`]).
    fn manifest() -> Manifest;
    /// Check `site` on `server`.
    fn check(site: SiteView, server: ServerView) -> CheckResult;
}

/// A lint plugin.
pub trait LintPlugin {
    /// Who the plugin is.
    fn manifest() -> Manifest;
    /// Findings over one server's rendered files.
    fn lint(server: ServerView, files: Vec<RenderedFile>) -> Vec<Finding>;
}

/// Log through the host (kept short by the host; never fails).
pub fn log(level: LogLevel, message: &str) {
    bindings::rpcc::plugin::host_log::log(level, message);
}

/// Milliseconds since the Unix epoch (capability `clock`).
pub fn clock() -> u64 {
    bindings::rpcc::plugin::host_clock::now_unix_ms()
}

/// GET `path` of the site being checked, on the server being checked (capability
/// `http-get`; check plugins only).
pub fn http_get(path: &str) -> Result<HttpResponse, String> {
    bindings::rpcc::plugin::host_http::get(path)
}

#[doc(hidden)]
pub struct Adapter<T>(core::marker::PhantomData<T>);

impl<T: TemplatePlugin> template_world::exports::rpcc::plugin::template::Guest for Adapter<T> {
    fn describe() -> Manifest {
        T::manifest()
    }
    fn render(site: SiteView, server: ServerView) -> Result<TemplateOutput, String> {
        T::render(site, server)
    }
}

#[doc(hidden)]
pub struct CheckAdapter<T>(core::marker::PhantomData<T>);

impl<T: CheckPlugin> check_world::exports::rpcc::plugin::check::Guest for CheckAdapter<T> {
    fn describe() -> Manifest {
        T::manifest()
    }
    fn check(site: SiteView, server: ServerView) -> CheckResult {
        T::check(site, server)
    }
}

#[doc(hidden)]
pub struct LintAdapter<T>(core::marker::PhantomData<T>);

impl<T: LintPlugin> lint_world::exports::rpcc::plugin::lint::Guest for LintAdapter<T> {
    fn describe() -> Manifest {
        T::manifest()
    }
    fn lint(server: ServerView, files: Vec<RenderedFile>) -> Vec<Finding> {
        T::lint(server, files)
    }
}

/// Export a plugin type: `export_plugin!(template: MyPlugin)`, `export_plugin!(check:
/// MyCheck)` or `export_plugin!(lint: MyLint)`.
#[macro_export]
macro_rules! export_plugin {
    (template: $ty:ty) => {
        type __RpccTemplatePlugin = $crate::Adapter<$ty>;
        $crate::template_world::__export_template!(__RpccTemplatePlugin with_types_in $crate::template_world);
    };
    (check: $ty:ty) => {
        type __RpccCheckPlugin = $crate::CheckAdapter<$ty>;
        $crate::check_world::__export_check!(__RpccCheckPlugin with_types_in $crate::check_world);
    };
    (lint: $ty:ty) => {
        type __RpccLintPlugin = $crate::LintAdapter<$ty>;
        $crate::lint_world::__export_lint!(__RpccLintPlugin with_types_in $crate::lint_world);
    };
}

/// The runtime of `#![no_std]` plugins (feature `no-std-runtime`).
#[cfg(all(feature = "no-std-runtime", target_arch = "wasm32"))]
mod no_std_runtime {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    const PAGE: usize = 65_536;

    /// Hands out memory upwards and never frees it: each call runs in a fresh instance,
    /// so whatever a call allocates is gone when it returns.
    struct Bump {
        next: UnsafeCell<usize>,
        end: UnsafeCell<usize>,
    }

    // SAFETY: a wasm32 plugin instance is single-threaded.
    unsafe impl Sync for Bump {}

    unsafe extern "C" {
        /// First byte after the data and the stack (set by the linker).
        static __heap_base: u8;
    }

    // SAFETY: blocks never overlap (`next` only moves up) and are aligned as asked.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: single-threaded; no other reference to these cells exists.
            let (next, end) = unsafe { (&mut *self.next.get(), &mut *self.end.get()) };
            if *end == 0 {
                // First use: the free part of the initial memory.
                *next = core::ptr::addr_of!(__heap_base) as usize;
                *end = core::arch::wasm32::memory_size(0) * PAGE;
            }
            let align = layout.align().max(1);
            let start = (*next + align - 1) & !(align - 1);
            let stop = start.saturating_add(layout.size());
            if stop > *end {
                let pages = (stop - *end).div_ceil(PAGE);
                let prev = core::arch::wasm32::memory_grow(0, pages);
                if prev == usize::MAX || prev * PAGE != *end {
                    return core::ptr::null_mut();
                }
                *end = (prev + pages) * PAGE;
            }
            *next = stop;
            start as *mut u8
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump { next: UnsafeCell::new(0), end: UnsafeCell::new(0) };

    /// `memcmp`/`bcmp` (there is no libc under `no_std`; `memcpy`/`memset` become
    /// bulk-memory instructions). Volatile reads keep the optimiser from turning the loop
    /// back into a call to itself.
    ///
    /// # Safety
    /// `a` and `b` must be readable for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: the caller guarantees `n` readable bytes behind both pointers.
            let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    /// `bcmp`: like `memcmp`, only equality matters.
    ///
    /// # Safety
    /// As [`memcmp`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract.
        unsafe { memcmp(a, b, n) }
    }

    /// The canonical ABI's allocator export (std provides it on wasip2; `no_std` does not).
    ///
    /// # Safety
    /// Called by the host as the component model specifies.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
        use alloc::alloc::{Layout, alloc, realloc};
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the host passes a valid alignment, and `old_ptr`/`old_len` from an
        // earlier call of this function.
        let ptr = unsafe {
            if old_len == 0 {
                alloc(Layout::from_size_align_unchecked(new_len, align))
            } else {
                realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
            }
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable();
        }
        ptr
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let message = alloc::format!("panicked: {info}");
        crate::log(crate::LogLevel::Error, &message);
        core::arch::wasm32::unreachable()
    }
}
