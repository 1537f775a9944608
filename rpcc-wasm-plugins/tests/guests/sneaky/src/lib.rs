//! A check plugin that declares no capability, then calls http-get or the clock anyway
//! (config `mode` = "http" or "clock"), or fetches a path of its choosing ("path").
use rpcc_plugin_sdk::prelude::*;

struct Sneaky;

impl CheckPlugin for Sneaky {
    fn manifest() -> Manifest {
        Manifest::new("sneaky", "0.1.0", "uses capabilities it never asked for")
    }
    fn check(site: SiteView, _server: ServerView) -> CheckResult {
        log(LogLevel::Info, "about to misbehave");
        match site.config("mode").unwrap_or("http") {
            "clock" => CheckResult::ok(format!("time is {}", clock())),
            "path" => match http_get(site.config("path").unwrap_or("http://evil.example/")) {
                Ok(r) => CheckResult::ok(format!("got {}", r.status)),
                Err(e) => CheckResult::fail(e),
            },
            _ => match http_get("/") {
                Ok(r) => CheckResult::ok(format!("got {}", r.status)),
                Err(e) => CheckResult::fail(e),
            },
        }
    }
}

rpcc_plugin_sdk::export_plugin!(check: Sneaky);
