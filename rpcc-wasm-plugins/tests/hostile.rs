//! Hostile and misbehaving plugins (built from `tests/guests` for wasm32-wasip2): each
//! fails with a `PluginError` naming the plugin and the reason, within its limit, and
//! the host keeps serving other plugins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rpcc_core::model::{PluginCapability, PluginLimits};
mod common;
use common::{dir, inventory, limits};
use rpcc_wasm_plugins::{HttpResponse, Plugin, PluginError, PluginHost, PluginKind, PluginSpec, SiteHttp};

fn hostile(host: &PluginHost, mode: &str, limits: PluginLimits) -> Plugin {
    let spec = PluginSpec::from_file(dir().join("hostile.wasm")).limits(limits).config("mode", mode);
    host.load(&spec).expect("hostile plugin loads (it misbehaves only when called)")
}

fn render(plugin: &Plugin) -> Result<rpcc_core::fragment::SiteFragments, PluginError> {
    let inv = inventory();
    plugin.render(&inv, &inv.servers[0], &inv.sites[0])
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let host = PluginHost::new().unwrap();
    let p = hostile(&host, "loop", limits(|e| e.timeout = Some("30s")));
    let start = Instant::now();
    let err = render(&p).unwrap_err();
    assert!(matches!(err, PluginError::OutOfFuel { .. }), "{err}");
    assert!(err.to_string().contains("plugin hostile"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}

#[test]
fn infinite_loop_hits_the_wall_clock_limit() {
    let host = PluginHost::new().unwrap();
    let p = hostile(
        &host,
        "loop",
        limits(|e| {
            e.fuel = Some(100_000_000_000);
            e.timeout = Some("300ms");
        }),
    );
    let start = Instant::now();
    let err = render(&p).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, PluginError::Timeout { limit_ms: 300, .. }), "{err}");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn memory_bomb_is_stopped_at_the_limit() {
    let host = PluginHost::new().unwrap();
    let p = hostile(&host, "memory", limits(|e| e.memory = Some("32m")));
    let err = render(&p).unwrap_err();
    match &err {
        PluginError::MemoryLimit { wanted, limit, .. } => {
            assert_eq!(*limit, 32 << 20);
            assert!(*wanted > *limit);
        }
        other => panic!("expected MemoryLimit, got {other}"),
    }
}

#[test]
fn deep_recursion_overflows_the_stack_cleanly() {
    let host = PluginHost::new().unwrap();
    // Recursion on wasmtime's stack: the engine's stack limit.
    let err = render(&hostile(&host, "deep", PluginLimits::default())).unwrap_err();
    assert!(matches!(err, PluginError::StackOverflow { .. }), "{err}");
    // Recursion with frames in linear memory (Rust's shadow stack) runs off the bottom of
    // the plugin's own memory: a trap inside its sandbox.
    let err = render(&hostile(&host, "recursion", PluginLimits::default())).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("out of bounds memory access"), "{err}");
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message() {
    let host = PluginHost::new().unwrap();
    let err = render(&hostile(&host, "panic", PluginLimits::default())).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("panicked on purpose for app.example.com"), "{err}");
}

#[test]
fn huge_outputs_are_refused() {
    let host = PluginHost::new().unwrap();
    // 100 MB cannot even be built inside 64 MiB of memory.
    let err = render(&hostile(&host, "output", PluginLimits::default())).unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err}");
    // 2 MB fits in memory but not in the output cap.
    let spec = PluginSpec::from_file(dir().join("hostile.wasm"))
        .limits(limits(|e| e.max_output = Some("1m")))
        .config("mode", "output")
        .config("mb", "2");
    let err = render(&host.load(&spec).unwrap()).unwrap_err();
    match err {
        PluginError::OutputTooLarge { size, limit, .. } => {
            assert_eq!(limit, 1 << 20);
            // Refused while lifting, once the count passed the cap (plus the host-side
            // overhead allowance): never the whole 2 MB.
            assert!(size > limit, "{size}");
        }
        other => panic!("expected OutputTooLarge, got {other}"),
    }
}

#[test]
fn forbidden_directives_and_tricks_are_rejected() {
    let host = PluginHost::new().unwrap();
    let cases = [
        ("include", "\"include\" is not allowed"),
        ("lua", "\"content_by_lua_block\" is not allowed"),
        ("dollar", "'$'"),
        ("quote", "\"include\" is not allowed"),
        ("structured-include", "\"include\" is not allowed"),
        ("bad-parent", "not an earlier directive"),
    ];
    for (mode, want) in cases {
        let err = render(&hostile(&host, mode, PluginLimits::default())).unwrap_err();
        assert!(matches!(err, PluginError::Rejected { .. }), "{mode}: {err}");
        assert!(err.to_string().contains(want), "{mode}: {err}");
    }
    let err = render(&hostile(&host, "error", PluginLimits::default())).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }) && err.to_string().contains("refuses this site"), "{err}");
}

/// A template plugin that emits `text` (nginx), allowed `allow` (or the defaults).
fn emitting(host: &PluginHost, mode: &str, text: &str, allow: Option<&[&str]>) -> Plugin {
    let mut spec = PluginSpec::from_file(dir().join("hostile.wasm")).config("mode", mode).config("text", text);
    if let Some(names) = allow {
        spec = spec.allow(rpcc_core::fragment::FragmentPolicy::new(names.iter().copied()).expect("policy"));
    }
    host.load(&spec).expect("plugin loads")
}

#[test]
fn fragments_that_make_nginx_touch_files_are_refused() {
    let host = PluginHost::new().unwrap();
    // The inventory's server has the default log directory, /var/log/nginx.
    let refused: &[(&str, &str)] = &[
        ("access_log /etc/profile.d/zz.sh;", "log directory"),
        ("access_log /var/log/nginx/../../../etc/profile.d/zz.log;", "'..'"),
        ("access_log /var/log/nginx/zz.sh;", ".log file"),
        ("access_log syslog:server=127.0.0.1:514;", "only 'off'"),
        ("error_log /etc/cron.d/zz;", "never"),
        ("root /;", "never"),
        ("location /x { alias /etc/; }", "never"),
        ("ssl_certificate /etc/shadow;", "names a file"),
        ("ssl_certificate_key /etc/ssl/private/other.key;", "never"),
        ("ssl_stapling_file /etc/shadow;", "names a file"),
        ("client_body_temp_path /etc;", "names a file"),
        ("proxy_temp_path /etc;", "names a file"),
        ("proxy_cache_path /etc keys_zone=x:1m;", "names a file"),
        ("proxy_store /etc/zz;", "never"),
        ("auth_basic_user_file /etc/shadow;", "names a file"),
        ("open_log_file_cache max=10;", "never"),
        ("dav_methods PUT;", "never"),
        ("return 302 file:///etc/passwd;", "http"),
        ("error_page 404 file:///etc/passwd;", "/path"),
    ];
    // With access_log allowed by the operator: its argument rule still confines it.
    let allow: &[&str] = &["access_log", "add_header", "return", "error_page", "location"];
    for (text, want) in refused {
        for mode in ["text", "text-location"] {
            if mode == "text-location" && text.starts_with("location") {
                continue;
            }
            let err = render(&emitting(&host, mode, text, Some(allow))).unwrap_err();
            assert!(matches!(err, PluginError::Rejected { .. }), "{mode} {text}: {err}");
            assert!(err.to_string().contains(want), "{mode} {text}: {err}");
        }
    }
    // Under the default allow-list access_log is not allowed at all.
    let err = render(&emitting(&host, "text", "access_log /var/log/nginx/a.log;", None)).unwrap_err();
    assert!(err.to_string().contains("allow_directives"), "{err}");
    // What the rules allow still renders, in rpcc's own canonical text.
    let ok =
        render(&emitting(&host, "text", "access_log /var/log/nginx/app.log combined; access_log off;", Some(allow)));
    assert_eq!(ok.unwrap().server.to_nginx(0), "access_log /var/log/nginx/app.log combined;\naccess_log off;\n");
    // An operator cannot allow a file-naming directive in the first place.
    for name in ["error_log", "root", "alias", "ssl_certificate", "client_body_temp_path"] {
        assert!(rpcc_core::fragment::FragmentPolicy::new([name]).is_err(), "{name}");
    }
}

#[test]
fn a_plugin_importing_the_filesystem_does_not_load() {
    let host = PluginHost::new().unwrap();
    let err = host.load(&PluginSpec::from_file(dir().join("fs_reader.wasm"))).unwrap_err();
    match &err {
        PluginError::ForbiddenImport { import, .. } => assert!(import.starts_with("wasi:filesystem/"), "{import}"),
        other => panic!("expected ForbiddenImport, got {other}"),
    }
    assert!(err.to_string().contains("no filesystem"), "{err}");
}

#[test]
fn capabilities_must_be_granted() {
    let host = PluginHost::new().unwrap();
    let path = dir().join("expected_status.wasm");
    let err = host.load(&PluginSpec::from_file(&path)).unwrap_err();
    assert!(matches!(&err, PluginError::Ungranted { capability, .. } if capability == "http-get"), "{err}");
    assert!(err.to_string().contains("grant = [...]"), "{err}");
    let granted = PluginSpec::from_file(&path).grant(PluginCapability::HttpGet).grant(PluginCapability::Clock);
    let plugin = host.load(&granted).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Check);
    assert_eq!(plugin.manifest().capabilities, vec![PluginCapability::HttpGet, PluginCapability::Clock]);
}

struct CountingHttp(AtomicUsize);

impl SiteHttp for CountingHttp {
    fn get(&self, _path: &str, _timeout: Duration) -> Result<HttpResponse, rpcc_wasm_plugins::SiteHttpError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(HttpResponse { status: 200, headers: Vec::new(), body: b"ok".to_vec() })
    }
}

#[test]
fn undeclared_capabilities_are_refused_at_call_time() {
    let host = PluginHost::new().unwrap();
    let inv = inventory();
    let http = Arc::new(CountingHttp(AtomicUsize::new(0)));
    for (mode, cap) in [("http", "http-get"), ("clock", "clock")] {
        let p = host.load(&PluginSpec::from_file(dir().join("sneaky.wasm")).config("mode", mode)).unwrap();
        let err = p.check(&inv, &inv.servers[0], &inv.sites[0], http.clone()).unwrap_err();
        assert!(matches!(&err, PluginError::Ungranted { capability, .. } if capability == cap), "{mode}: {err}");
    }
    // Granted, it still cannot leave the site's own origin.
    let p = host
        .load(
            &PluginSpec::from_file(dir().join("sneaky.wasm"))
                .grant(PluginCapability::HttpGet)
                .config("mode", "path")
                .config("path", "http://evil.example/"),
        )
        .unwrap();
    let out = p.check(&inv, &inv.servers[0], &inv.sites[0], http.clone()).unwrap();
    assert_eq!(out.status, rpcc_wasm_plugins::CheckStatus::Fail);
    assert!(out.message.contains("must start with '/'"), "{}", out.message);
    assert_eq!(out.logs.len(), 1);
    assert_eq!(http.0.load(Ordering::SeqCst), 0, "the host never fetched anything");
}

#[test]
fn garbage_and_tampered_files_are_refused() {
    let host = PluginHost::new().unwrap();
    let err = host.load_bytes(&PluginSpec::from_file("junk.wasm"), b"\0asm\x01\0\0\0garbage").unwrap_err();
    assert!(matches!(err, PluginError::Compile { .. }), "{err}");
    let mut spec = PluginSpec::from_file(dir().join("maintenance_page.wasm"));
    spec.sha256 = Some("00".repeat(32));
    let err = host.load(&spec).unwrap_err();
    assert!(matches!(err, PluginError::Digest { .. }), "{err}");
    let err = host.load(&PluginSpec::from_file(dir().join("missing.wasm"))).unwrap_err();
    assert!(matches!(err, PluginError::Read { .. }) && err.is_retryable(), "{err}");
}

#[test]
fn the_host_keeps_serving_while_and_after_plugins_misbehave() {
    let host = PluginHost::new().unwrap();
    let good =
        host.load(&PluginSpec::from_file(dir().join("maintenance_page.wasm")).config("enabled", "true")).unwrap();
    let looping = hostile(
        &host,
        "loop",
        limits(|e| {
            e.fuel = Some(100_000_000_000);
            e.timeout = Some("2s");
        }),
    );
    let bad = std::thread::spawn(move || render(&looping));
    // While one plugin spins, others answer at once.
    let start = Instant::now();
    for _ in 0..50 {
        let f = render(&good).unwrap();
        assert!(f.server.to_nginx(0).contains("error_page 503 @maintenance;"));
    }
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    assert!(matches!(bad.join().unwrap(), Err(PluginError::Timeout { .. })));
    for mode in ["panic", "memory", "recursion"] {
        assert!(render(&hostile(&host, mode, PluginLimits::default())).is_err());
    }
    assert!(render(&good).is_ok());
}

#[test]
fn no_std_plugins_report_panics_and_memory_bombs() {
    // Built on the SDK's `no-std-runtime` (bump allocator, logging panic handler).
    let host = PluginHost::new().unwrap();
    let load = |mode: &str| {
        let spec = PluginSpec::from_file(dir().join("nostd_hostile.wasm"))
            .limits(limits(|e| e.memory = Some("8m")))
            .config("mode", mode);
        host.load(&spec).unwrap()
    };
    let err = render(&load("panic")).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("no_std plugin panicked for app.example.com"), "{err}");
    let err = render(&load("memory")).unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { limit, .. } if limit == 8 << 20), "{err}");
    let ok = render(&load("fine")).unwrap();
    assert_eq!(ok.server.to_nginx(0), "add_header X-No-Std yes always;\n");
}

/// Issue 26 item 5: a plugin cannot take rpcc's ACME or dotfile locations, neither as
/// server fragments nor as a whole server body, nor answer everything at the server
/// level before a location is chosen.
#[test]
fn plugins_cannot_take_rpccs_reserved_locations() {
    let host = PluginHost::new().unwrap();
    let refused: &[(&str, &str)] = &[
        ("location = /.well-known/acme-challenge/tok3n { return 200 tok3n.thumbprint; }", "reserved"),
        ("location /.well-known/acme-challenge/x { return 302 https://evil.example/; }", "reserved"),
        ("location ^~ /.well-known/acme-challenge/x { return 204; }", "^~"),
        ("location ~* ^/.well-known/acme-challenge/ { return 204; }", "no literal"),
        ("location ~ acme-challenge { return 204; }", "^/"),
        ("location ~ ^/x|/.well-known { return 204; }", "top-level |"),
        ("location = /.git/config { return 200 x; }", "dotfiles"),
        ("location ^~ /app/ { return 204; }", "^~"),
        ("location /app/ { location ~ ^/app/ { return 204; } }", "inside a location"),
        ("location @rpcc_not_found { return 200 x; }", "reserved"),
        ("return 302 https://evil.example/;", "server level"),
    ];
    for (text, want) in refused {
        for mode in ["text", "body"] {
            let err = render(&emitting(&host, mode, text, None)).unwrap_err();
            assert!(matches!(err, PluginError::Rejected { .. }), "{mode} {text}: {err}");
            assert!(err.to_string().contains(want), "{mode} {text}: {err}");
        }
    }
    // An ordinary body still renders (rpcc adds its reserved locations around it).
    let ok = render(&emitting(&host, "body", "location / { return 200 plugin; }", None)).unwrap();
    assert_eq!(ok.server_body.map(|b| b.to_nginx(0)), Some("location / {\n    return 200 plugin;\n}\n".into()));
}

/// Operator-allowed directives: each has an argument rule, and the ones a review found
/// passing (`proxy_pass` to metadata, `try_files` with `..`) are refused; `mirror`,
/// `auth_request`, `resolver` and `ssi` cannot be allowed at all.
#[test]
fn operator_allowed_directives_keep_their_argument_rules() {
    let host = PluginHost::new().unwrap();
    let allow: &[&str] = &["location", "proxy_pass", "try_files", "return"];
    for (text, want) in [
        ("location /m/ { proxy_pass http://169.254.169.254/; }", "link-local"),
        ("location /m/ { proxy_pass http://metadata.google.internal/; }", "metadata"),
        ("location /m/ { proxy_pass http://[fd00:ec2::254]/; }", "EC2"),
        ("location /m/ { try_files /../.. =404; }", "'..'"),
    ] {
        let err = render(&emitting(&host, "text", text, Some(allow))).unwrap_err();
        assert!(matches!(err, PluginError::Rejected { .. }) && err.to_string().contains(want), "{text}: {err}");
    }
    let ok = render(&emitting(&host, "text", "location /m/ { proxy_pass http://10.0.0.5:8080/; }", Some(allow)));
    assert!(ok.is_ok(), "{ok:?}");
    for name in ["mirror", "auth_request", "resolver", "ssi", "proxy_set_header"] {
        assert!(rpcc_core::fragment::FragmentPolicy::new(["location", name]).is_err(), "{name}");
    }
}
