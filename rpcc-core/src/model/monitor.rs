//! Monitoring settings of an inventory (`[monitor]`): schedule and notifiers.

use crate::keyring::Secret;
use crate::value::{DurationValue, Identifier, RedirectUrl};

/// `[monitor]`: how `rpcc watch` runs and where alerts go.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct MonitorSettings {
    /// Time between rounds (default 60 s); each round starts at a jittered offset.
    pub interval: DurationValue,
    /// Per-request timeout (default 10 s).
    pub timeout: DurationValue,
    /// Servers or sites checked at once (default 32).
    pub concurrency: u32,
    /// Where alerts and recoveries are sent (the log always gets them).
    pub notifiers: Vec<NotifierSettings>,
    /// DNS checks of every site's names (off unless set): the system resolver or a
    /// name server.
    pub dns: Option<DnsResolver>,
    /// Alert thresholds (`[monitor.rules]`); unset fields keep the defaults.
    pub rules: AlertRuleSettings,
    /// Per-group overrides (`[[monitor.group_rules]]`), applied over `rules` for
    /// alerts about that group's servers and sites.
    pub group_rules: Vec<GroupRules>,
    /// How long `rpcc watch` keeps metric samples in the state store (default 7d).
    pub retention: DurationValue,
    /// Send each `rpcc apply` outcome to the notifiers (default off).
    pub notify_deploys: bool,
}

/// Alert thresholds; `None` keeps the built-in default.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AlertRuleSettings {
    /// CPU above this percentage (default 90) …
    pub cpu_above: Option<u8>,
    /// … for this long (default 5m).
    pub cpu_for: Option<DurationValue>,
    /// Memory above this percentage (default 90) …
    pub memory_above: Option<u8>,
    /// … for this long (default 5m).
    pub memory_for: Option<DurationValue>,
    /// Any file system above this percentage (default 85).
    pub disk_above: Option<u8>,
    /// A certificate expiring within this many days (default 14).
    pub cert_days: Option<u32>,
    /// A site failing this many consecutive checks (default 3).
    pub site_down_checks: Option<u32>,
    /// DNS mismatching this many consecutive checks (default 2).
    pub dns_mismatch_checks: Option<u32>,
    /// Glances unreachable this many consecutive rounds (default 3).
    pub metrics_down_checks: Option<u32>,
    /// An incident recovers after being clear this long (default 2m).
    pub clear_for: Option<DurationValue>,
}

impl AlertRuleSettings {
    /// These settings with `over`'s set fields taking precedence.
    pub fn overlaid(&self, over: &AlertRuleSettings) -> AlertRuleSettings {
        AlertRuleSettings {
            cpu_above: over.cpu_above.or(self.cpu_above),
            cpu_for: over.cpu_for.or(self.cpu_for),
            memory_above: over.memory_above.or(self.memory_above),
            memory_for: over.memory_for.or(self.memory_for),
            disk_above: over.disk_above.or(self.disk_above),
            cert_days: over.cert_days.or(self.cert_days),
            site_down_checks: over.site_down_checks.or(self.site_down_checks),
            dns_mismatch_checks: over.dns_mismatch_checks.or(self.dns_mismatch_checks),
            metrics_down_checks: over.metrics_down_checks.or(self.metrics_down_checks),
            clear_for: over.clear_for.or(self.clear_for),
        }
    }
}

/// `[[monitor.group_rules]]`: thresholds for one group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct GroupRules {
    /// The group (exists in the inventory).
    pub group: Identifier,
    /// Its overrides.
    pub rules: AlertRuleSettings,
}

/// Which resolver the DNS checks ask.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DnsResolver {
    /// `/etc/resolv.conf`.
    System,
    /// This name server (`ip:port`).
    Server(std::net::SocketAddr),
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            interval: DurationValue::secs(60),
            timeout: DurationValue::secs(10),
            concurrency: 32,
            notifiers: Vec::new(),
            dns: None,
            rules: AlertRuleSettings::default(),
            group_rules: Vec::new(),
            retention: DurationValue::secs(86_400).times(7),
            notify_deploys: false,
        }
    }
}

/// One notifier.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct NotifierSettings {
    /// Unique name (`ops`).
    pub name: Identifier,
    /// Only alerts about these groups' servers and sites (empty: all).
    pub groups: Vec<Identifier>,
    /// Where it sends.
    pub kind: NotifierKind,
}

/// A notifier's kind and its settings.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotifierKind {
    /// Telegram Bot API.
    Telegram {
        /// Chat id (`-100…`) or `@channel`.
        chat_id: String,
        /// Bot token: an envelope (record `notifier/<name>/token`).
        #[serde(skip)]
        token: Secret,
    },
    /// Signed JSON webhook.
    Webhook {
        /// The URL.
        url: RedirectUrl,
        /// HMAC-SHA256 signing secret: an envelope (record `notifier/<name>/secret`).
        #[serde(skip)]
        secret: Secret,
        /// An `http://` URL accepted on purpose (`insecure_http = true`, e.g. a receiver
        /// on this host); without it only `https://` is.
        insecure_http: bool,
    },
}
