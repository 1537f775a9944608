//! `security-headers`: a lint plugin. Flags TLS sites whose server blocks send no
//! `Strict-Transport-Security`, and sites without a `Content-Security-Policy`.
#![no_std]

use rpcc_plugin_sdk::prelude::*;

struct SecurityHeaders;

/// Line (1-based) of each `server {` opening in `text` that carries `server_name`, with
/// whether it listens with `ssl`, has HSTS, has CSP.
fn server_blocks(text: &str) -> Vec<(u32, bool, bool, bool, bool)> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut current: Option<(u32, bool, bool, bool, bool)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if depth == 0 && line.starts_with("server") && line.ends_with('{') {
            current = Some(((i + 1) as u32, false, false, false, false));
        } else if let Some(block) = current.as_mut() {
            if line.starts_with("listen ") && line.contains(" ssl") {
                block.1 = true;
            }
            if line.starts_with("add_header Strict-Transport-Security") {
                block.2 = true;
            }
            if line.starts_with("add_header Content-Security-Policy") {
                block.3 = true;
            }
            // A server block that only redirects is not a page and needs no CSP.
            if depth == 1 && line.starts_with("return 301") {
                block.4 = true;
            }
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if depth == 0 {
            if let Some(block) = current.take() {
                out.push(block);
            }
        }
    }
    out
}

impl LintPlugin for SecurityHeaders {
    fn manifest() -> Manifest {
        Manifest::new("security-headers", "0.1.0", "Flags sites missing HSTS (TLS) or a Content-Security-Policy")
    }

    fn lint(_server: ServerView, files: Vec<RenderedFile>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for file in files.iter().filter(|f| f.path.starts_with("sites/")) {
            for (line, tls, hsts, csp, redirect_only) in server_blocks(&file.contents) {
                if tls && !hsts {
                    findings.push(Finding {
                        file: file.path.clone(),
                        line,
                        severity: Severity::Error,
                        message: "TLS server block without Strict-Transport-Security (set tls.hsts = true)".to_string(),
                    });
                }
                if !csp && !redirect_only {
                    findings.push(Finding {
                        file: file.path.clone(),
                        line,
                        severity: Severity::Warning,
                        message: "no Content-Security-Policy header (set security.csp)".to_string(),
                    });
                }
            }
        }
        findings
    }
}

rpcc_plugin_sdk::export_plugin!(lint: SecurityHeaders);
