//! `expected-status`: a check plugin. GETs `path` (config, default the site's health
//! path or `/`) on the checked server and compares the status with `status` (config,
//! default 200); warns when the answer takes longer than `slow_ms` (default 1000).
#![no_std]

use rpcc_plugin_sdk::prelude::*;

struct ExpectedStatus;

impl CheckPlugin for ExpectedStatus {
    fn manifest() -> Manifest {
        Manifest::new("expected-status", "0.1.0", "GET a path on each server and compare the status")
            .with_capability(Capability::HttpGet)
            .with_capability(Capability::Clock)
    }

    fn check(site: SiteView, server: ServerView) -> CheckResult {
        let path = site.config("path").or(site.health_path.as_deref()).unwrap_or("/");
        let expected: u16 = match site.config("status").unwrap_or("200").parse() {
            Ok(s) => s,
            Err(_) => return CheckResult::fail("config status is not a number"),
        };
        let slow_ms: u64 = site.config("slow_ms").and_then(|s| s.parse().ok()).unwrap_or(1000);
        let start = clock();
        match http_get(path) {
            Ok(response) if response.status == expected => {
                let took = clock().saturating_sub(start);
                if took > slow_ms {
                    CheckResult::warn(format!("{path} on {}: {} in {took} ms (slow)", server.name, response.status))
                } else {
                    CheckResult::ok(format!("{path} on {}: {}", server.name, response.status))
                }
            }
            Ok(response) => CheckResult::fail(format!(
                "{path} on {}: status {}, expected {expected}",
                server.name, response.status
            )),
            Err(e) => CheckResult::fail(format!("{path} on {}: {e}", server.name)),
        }
    }
}

rpcc_plugin_sdk::export_plugin!(check: ExpectedStatus);
