//! # rpcc-monitor
//!
//! Implemented so far: [`HttpHealthProbe`], the deploy engine's post-reload site check
//! (an HTTP request with the site's `Host` sent to the server itself).
//!
//! Still to come (issue: "rpcc-monitor"): a Glances REST API v4 client, HTTPS status /
//! served-certificate / DNS probes per site and server, alert rules with de-duplication
//! and recovery, Telegram and webhook notifiers, and the `rpcc watch` scheduler.

mod health;

pub use health::HttpHealthProbe;
