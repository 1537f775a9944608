//! `maintenance-page`: a template plugin. While the site's plugin config says
//! `enabled = "true"`, every request gets a 503 with a branded page (and the site's
//! health path keeps answering, so monitoring sees the server is fine).
//!
//! Config keys: `enabled` ("true"/"false", default "false"), `message` (text shown),
//! `retry_after` (seconds, default 600).
#![no_std]

use rpcc_plugin_sdk::prelude::*;

struct MaintenancePage;

impl TemplatePlugin for MaintenancePage {
    fn manifest() -> Manifest {
        Manifest::new("maintenance-page", "0.1.0", "Serve a 503 maintenance page while config enabled = \"true\"")
    }

    fn render(site: SiteView, _server: ServerView) -> Result<TemplateOutput, String> {
        if site.config("enabled") != Some("true") {
            return Ok(TemplateOutput::Fragments(Vec::new()));
        }
        let message = site.config("message").unwrap_or("We are doing planned maintenance. Back soon.");
        if message.chars().any(|c| matches!(c, '"' | '\\' | '$' | '{' | '}' | '<' | '>') || c.is_control()) {
            return Err(format!("config message {message:?} may not contain quotes, backslashes, $, braces or < >"));
        }
        let retry = site.config("retry_after").unwrap_or("600");
        if retry.is_empty() || retry.len() > 6 || !retry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("config retry_after {retry:?} must be a number of seconds"));
        }
        let page = format!(
            "<!doctype html><title>Maintenance</title><h1>{}</h1><p>{}</p>",
            site.domain, message
        );
        Ok(TemplateOutput::Fragments(vec![
            Fragment::directives(
                InsertionPoint::Server,
                vec![
                    Directive::new("error_page", &["503", "@maintenance"]),
                    Directive::new("location", &["@maintenance"]).block(),
                    Directive::new("default_type", &["text/html"]).inside(1),
                    Directive::new("add_header", &["Retry-After", retry, "always"]).inside(1),
                    Directive::new("return", &["503", &page]).inside(1),
                ],
            ),
            Fragment::text(InsertionPoint::MainLocation, "return 503;"),
        ]))
    }
}

rpcc_plugin_sdk::export_plugin!(template: MaintenancePage);
