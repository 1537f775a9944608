//! # rpcc-monitor
//!
//! Implemented so far:
//! - [`HttpHealthProbe`], the deploy engine's post-reload site check (an HTTP request with
//!   the site's `Host` sent to the server itself);
//! - [`AlertEngine`]: alert rules as a deterministic state machine (thresholds held for a
//!   duration or N checks, one message per incident, flap suppression, recovery);
//! - the [`Notifier`] role with [`LogNotifier`], [`MemoryNotifier`] and [`split_message`];
//! - [`GlancesSource`]: a Glances REST API v4 client (reqwest) per server, typed
//!   [`Metrics`], unreachable/unauthorized/malformed as states, bounded concurrency.
//!
//! Still to come (issue: "rpcc-monitor"): HTTPS status /
//! served-certificate / DNS probes per site and server, Telegram and webhook notifiers,
//! recording alerts in the store, and the `rpcc watch` scheduler.

pub mod alert;
mod glances;
mod health;
mod notify;

pub use alert::{AlertEngine, AlertEvent, AlertKind, AlertRules, AlertRulesConfig, Reading, Subject};
pub use glances::{FsUsage, GlancesError, GlancesSource, Metrics, MetricsReport, MetricsState, NetUsage, collect_all};
pub use health::HttpHealthProbe;
pub use notify::{LogNotifier, MemoryNotifier, Notification, Notifier, NotifyError, split_message};
