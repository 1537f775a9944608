//! # rpcc-monitor
//!
//! **Not implemented yet** (issue: "rpcc-monitor"). This crate will hold a Glances REST
//! API v4 client, HTTP status / served-certificate / DNS probes per site and server,
//! alert rules with de-duplication and recovery, Telegram and webhook notifiers, and the
//! `rpcc watch` scheduler on tokio intervals.
