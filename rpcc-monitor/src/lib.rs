//! # rpcc-monitor
//!
//! - [`HttpHealthProbe`], the deploy engine's post-reload site check (HTTP, or HTTPS with
//!   SNI for TLS sites, with per-site expectations), sent to the server itself;
//! - [`SiteProber`]: per site and serving server, HTTP(S) status and latency with
//!   Host/SNI pinned to that server, and the served certificate (expiry, issuer, names,
//!   name match, trust);
//! - [`DnsProber`]: do a site's names resolve to the servers that serve it;
//! - [`GlancesSource`]: a Glances REST API v4 client (reqwest) per server, typed
//!   [`Metrics`], unreachable/unauthorized/malformed as states, bounded concurrency;
//! - [`AlertEngine`]: alert rules as a deterministic state machine (thresholds held for a
//!   duration or N checks, one message per incident, flap suppression, recovery);
//! - the [`Notifier`] role with [`LogNotifier`], [`MemoryNotifier`], [`TelegramNotifier`]
//!   (split over 4,096 characters, 429 `retry_after`, the token never shown) and
//!   [`WebhookNotifier`] (JSON, HMAC-SHA256 signature, retries with backoff), routed by
//!   group in a [`NotifierSet`] built from the inventory.
//!
//! `rpcc check` and `rpcc watch` (the CLI) drive these; the facade's `Engine` sends deploy
//! outcomes to the notifiers.

pub mod alert;
mod deploy_probe;
mod dns;
mod glances;
mod http_error;
mod http_notifiers;
mod notify;
mod site_probe;

pub use alert::{AlertEngine, AlertEvent, AlertKind, AlertRules, AlertRulesConfig, Reading, Subject};
pub use deploy_probe::HttpHealthProbe;
pub use dns::{DnsProber, DnsReport};
pub use glances::{FsUsage, GlancesError, GlancesSource, Metrics, MetricsReport, MetricsState, NetUsage, collect_all};
pub use http_notifiers::{
    RetryPolicy, TELEGRAM_LIMIT, TelegramNotifier, WEBHOOK_REPLAY_WINDOW, WebhookNotifier, WebhookRejection,
    verify_webhook_signature, webhook_signature,
};
pub use notify::{
    LogNotifier, MemoryNotifier, Notification, Notifier, NotifierSet, NotifierSettings, NotifyError, split_message,
};
pub use site_probe::{CertInfo, FetchedResponse, HttpCheck, SiteProber, SiteReport, SiteTarget, parse_cert};
