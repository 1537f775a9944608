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
    },
}
