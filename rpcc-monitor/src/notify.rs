//! The `Notifier` role and what every notifier shares: the [`NotifierSet`] that routes
//! notifications by group, message splitting, the log and memory notifiers. (Telegram
//! and webhook notifiers are in `http_notifiers.rs`.)

use std::sync::Mutex;
use std::time::Duration;

use crate::alert::AlertEvent;

/// Errors of a notifier. Never contains a token or a secret: only the notifier's name,
/// an HTTP status or a transport reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver refused the message (4xx other than 429).
    #[error("{notifier}: refused with HTTP {status}")]
    Refused {
        /// Notifier name.
        notifier: String,
        /// HTTP status.
        status: u16,
    },
    /// The receiver is failing or rate-limiting (5xx, 429) after all retries.
    #[error("{notifier}: unavailable (HTTP {status}) after {attempts} attempt(s)")]
    Unavailable {
        /// Notifier name.
        notifier: String,
        /// Last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver could not be reached.
    #[error("{notifier}: {reason}")]
    Transport {
        /// Notifier name.
        notifier: String,
        /// Why (no URL with a token in it).
        reason: String,
    },
    /// A notifier's secret (bot token, signing secret) could not be opened.
    #[error("notifier {notifier}: its secret cannot be opened: {source}")]
    Secret {
        /// Notifier name.
        notifier: String,
        /// Why (never the secret).
        #[source]
        source: rpcc_core::keyring::KeyringError,
    },
    /// The HTTP client could not be built.
    #[error("notifiers: HTTP client: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
}

impl NotifyError {
    /// Whether a later retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Transport { .. })
    }
}

/// Something to tell operators.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Notification {
    /// Group whose routing applies (`None`: every default notifier).
    pub group: Option<String>,
    /// The text.
    pub text: String,
    /// The alert it reports, if any.
    pub alert: Option<AlertEvent>,
}

impl Notification {
    /// The notification for an alert.
    pub fn alert(event: AlertEvent, group: Option<String>) -> Self {
        Self { group, text: event.message.clone(), alert: Some(event) }
    }

    /// A deploy outcome (or any other message that is not an alert).
    pub fn deploy(text: String, group: Option<String>) -> Self {
        Self { group, text, alert: None }
    }
}

/// Delivers notifications (Telegram, webhook, log …).
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// A short name for messages (`telegram:ops`), never containing a secret.
    fn name(&self) -> &str;

    /// Deliver one notification (retries are the notifier's business).
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError>;
}

#[async_trait::async_trait]
impl<N: Notifier + ?Sized> Notifier for std::sync::Arc<N> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        (**self).send(notification).await
    }
}

/// Split `text` into parts of at most `limit` characters (not bytes), at line breaks
/// where possible, else at whitespace, else anywhere (on a character boundary). Parts
/// keep their order; joined with nothing they give back the text.
///
/// ```
/// use rpcc_monitor::split_message;
/// let parts = split_message("line one\nline two\nline three", 18);
/// assert_eq!(parts, ["line one\nline two\n", "line three"]);
/// assert_eq!(parts.concat(), "line one\nline two\nline three");
/// ```
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        // Byte index just after the `limit`-th character.
        let end = rest.char_indices().nth(limit).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let cut = window
            .rfind('\n')
            .map(|i| i + 1)
            .or_else(|| {
                window.rfind(char::is_whitespace).map(|i| i + window[i..].chars().next().map_or(1, char::len_utf8))
            })
            .filter(|&i| i > 0)
            .unwrap_or(end);
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// Writes notifications to the log (`tracing`, target `rpcc::alert`).
#[derive(Debug, Default)]
pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::warn!(target: "rpcc::alert", group = n.group.as_deref().unwrap_or("-"), "{}", n.text);
        Ok(())
    }
}

/// Keeps notifications in memory (tests, dry runs, a UI's recent list).
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    sent: Mutex<Vec<Notification>>,
}

impl MemoryNotifier {
    /// What was sent, in order.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait::async_trait]
impl Notifier for MemoryNotifier {
    fn name(&self) -> &str {
        "memory"
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(n.clone());
        Ok(())
    }
}

/// How [`NotifierSet::from_inventory`] builds the HTTP notifiers.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// Base URL of the Telegram Bot API (default `https://api.telegram.org`; a local
    /// fake in tests). The bot token is sent there: set it only from trusted config.
    pub telegram_api: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self { telegram_api: None, timeout: Duration::from_secs(15) }
    }
}

/// Notifiers with their routes: a notifier with no groups gets every notification, one
/// with groups only those about a server of one of them. Built from the inventory's
/// `[monitor] notifiers` (plus the log), or by hand with [`NotifierSet::push`].
///
/// ```
/// use std::sync::Arc;
/// use rpcc_monitor::{MemoryNotifier, Notification, NotifierSet};
///
/// let ops = Arc::new(MemoryNotifier::default());
/// let mut set = NotifierSet::new();
/// set.push(vec!["edge".into()], Box::new(Arc::clone(&ops)));
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let failed = rt.block_on(set.deliver(&Notification::deploy("hi".into(), None), &["core".into()]));
/// assert!(failed.is_empty() && ops.sent().is_empty()); // routed to `edge` only
/// rt.block_on(set.deliver(&Notification::deploy("hi".into(), None), &["edge".into()]));
/// assert_eq!(ops.sent().len(), 1);
/// ```
#[derive(Default)]
pub struct NotifierSet {
    routes: Vec<(Vec<String>, Box<dyn Notifier>)>,
}

impl std::fmt::Debug for NotifierSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(groups, n)| (n.name(), groups))).finish()
    }
}

impl NotifierSet {
    /// No notifiers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log notifier plus the inventory's notifiers, their secrets opened with
    /// `keyring`.
    pub fn from_inventory(
        inv: &rpcc_core::model::Inventory,
        keyring: Option<&rpcc_core::keyring::Keyring>,
        settings: &NotifierSettings,
    ) -> Result<Self, NotifyError> {
        use rpcc_core::model::NotifierKind;
        let http = crate::GlancesSource::client(settings.timeout)
            .map_err(|e| NotifyError::Client { reason: e.to_string() })?;
        let mut set = Self::new();
        set.push(Vec::new(), Box::new(crate::LogNotifier));
        for n in &inv.monitor.notifiers {
            let name = n.name.as_str();
            let secret = |s: &rpcc_core::keyring::Secret| {
                s.open(keyring).map_err(|source| NotifyError::Secret { notifier: name.to_owned(), source })
            };
            let notifier: Box<dyn Notifier> = match &n.kind {
                NotifierKind::Telegram { chat_id, token } => {
                    let mut t = crate::TelegramNotifier::new(name, http.clone(), secret(token)?, chat_id);
                    if let Some(api) = &settings.telegram_api {
                        t = t.with_api(api);
                    }
                    Box::new(t)
                }
                NotifierKind::Webhook { url, secret: s, .. } => {
                    Box::new(crate::WebhookNotifier::new(name, http.clone(), url.as_str(), secret(s)?))
                }
                _ => continue,
            };
            set.push(n.groups.iter().map(ToString::to_string).collect(), notifier);
        }
        Ok(set)
    }

    /// Add `notifier` for notifications about `groups` (empty: all of them).
    pub fn push(&mut self, groups: Vec<String>, notifier: Box<dyn Notifier>) {
        self.routes.push((groups, notifier));
    }

    /// The notifiers' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(_, n)| n.name())
    }

    /// Send `note` (about servers of `groups`) to every notifier routed to it, one after
    /// another; failures are logged and returned, never stop the others.
    pub async fn deliver(&self, note: &Notification, groups: &[String]) -> Vec<NotifyError> {
        let mut failed = Vec::new();
        for (routes, sink) in &self.routes {
            if !routes.is_empty() && !routes.iter().any(|r| groups.contains(r)) {
                continue;
            }
            if let Err(e) = sink.send(note).await {
                tracing::warn!(notifier = sink.name(), error = %e, "notification failed");
                failed.push(e);
            }
        }
        failed
    }
}
