//! HTTP notifiers: Telegram Bot API and a signed generic webhook. Neither ever puts its
//! token or signing secret in a log line, an error or `Debug`.

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

use crate::notify::{Notification, Notifier, NotifyError, split_message};

/// Telegram's limit on a message's length, in characters.
pub const TELEGRAM_LIMIT: usize = 4096;

/// Only the error's kind: its `Display` would include the URL, and the Bot API URL
/// contains the token.
fn transport(notifier: &str, e: &reqwest::Error) -> NotifyError {
    NotifyError::Transport { notifier: notifier.to_owned(), reason: crate::http_error::kind(e, false).to_owned() }
}

/// Retry policy of the HTTP notifiers.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts per message part (≥ 1).
    pub attempts: u32,
    /// First backoff; doubles each retry.
    pub backoff: Duration,
    /// Longest `retry_after` honoured from a 429 before giving up.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, backoff: Duration::from_millis(500), max_retry_after: Duration::from_secs(60) }
    }
}

/// Sends to a Telegram chat through the Bot API (`sendMessage`), splitting messages over
/// 4,096 characters and honouring 429 `retry_after`.
pub struct TelegramNotifier {
    name: String,
    http: reqwest::Client,
    api: String,
    token: SecretString,
    chat_id: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TelegramNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramNotifier").field("name", &self.name).field("chat_id", &self.chat_id).finish()
    }
}

impl TelegramNotifier {
    /// A notifier for `chat_id` with bot `token`, at `https://api.telegram.org`.
    pub fn new(name: &str, http: reqwest::Client, token: SecretString, chat_id: &str) -> Self {
        Self {
            name: format!("telegram:{name}"),
            http,
            api: "https://api.telegram.org".into(),
            token,
            chat_id: chat_id.to_owned(),
            retry: RetryPolicy::default(),
        }
    }

    /// Another API base (a local test server, a Bot API proxy).
    pub fn with_api(mut self, base: &str) -> Self {
        base.trim_end_matches('/').clone_into(&mut self.api);
        self
    }

    /// Another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    async fn send_part(&self, text: &str) -> Result<(), NotifyError> {
        let url = format!("{}/bot{}/sendMessage", self.api, self.token.expose_secret());
        let body = serde_json::json!({ "chat_id": self.chat_id, "text": text, "disable_web_page_preview": true });
        let mut backoff = self.retry.backoff;
        let mut last = 0;
        for attempt in 1..=self.retry.attempts.max(1) {
            let resp = match self.http.post(&url).json(&body).send().await {
                Ok(r) => r,
                Err(_) if attempt < self.retry.attempts => {
                    tracing::warn!(notifier = %self.name, attempt, "send failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(e) => return Err(transport(&self.name, &e)),
            };
            let status = resp.status().as_u16();
            last = status;
            match status {
                200..=299 => return Ok(()),
                429 => {
                    let v: serde_json::Value = resp.json().await.unwrap_or_default();
                    let wait = v.pointer("/parameters/retry_after").and_then(serde_json::Value::as_u64).unwrap_or(1);
                    let wait = Duration::from_secs(wait);
                    if wait > self.retry.max_retry_after || attempt == self.retry.attempts {
                        break;
                    }
                    tracing::info!(notifier = %self.name, retry_after = wait.as_secs(), "rate limited");
                    tokio::time::sleep(wait).await;
                }
                500..=599 if attempt < self.retry.attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                500..=599 => break,
                _ => return Err(NotifyError::Refused { notifier: self.name.clone(), status }),
            }
        }
        Err(NotifyError::Unavailable { notifier: self.name.clone(), status: last, attempts: self.retry.attempts })
    }
}

#[async_trait::async_trait]
impl Notifier for TelegramNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        for part in split_message(&n.text, TELEGRAM_LIMIT) {
            self.send_part(&part).await?;
        }
        Ok(())
    }
}

/// POSTs each notification as JSON to a URL, signed: header `X-Rpcc-Signature:
/// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under a shared secret, so a
/// receiver can refuse old (replayed) requests ([`verify_webhook_signature`]); retries
/// 5xx and transport failures with exponential backoff, each attempt signed afresh.
pub struct WebhookNotifier {
    name: String,
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    retry: RetryPolicy,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier").field("name", &self.name).finish()
    }
}

/// How old a signed webhook may be when it arrives ([`verify_webhook_signature`]).
pub const WEBHOOK_REPLAY_WINDOW: Duration = Duration::from_secs(300);

fn webhook_mac(secret: &SecretString, timestamp: u64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `X-Rpcc-Signature` value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
///
/// ```
/// use rpcc_monitor::{webhook_signature, verify_webhook_signature};
/// use secrecy::SecretString;
/// let key = SecretString::from("key");
/// let sig = webhook_signature(&key, 1_700_000_000, b"{}");
/// assert!(sig.starts_with("t=1700000000,v1="));
/// assert!(verify_webhook_signature(&key, &sig, b"{}", 1_700_000_060).is_ok());
/// assert!(verify_webhook_signature(&key, &sig, b"{}", 1_700_001_000).is_err()); // replayed later
/// ```
pub fn webhook_signature(secret: &SecretString, timestamp: u64, body: &[u8]) -> String {
    let Some(mac) = webhook_mac(secret, timestamp, body) else { return String::new() };
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Why a receiver refuses a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookRejection {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    /// Signed more than [`WEBHOOK_REPLAY_WINDOW`] before (or after) `now`.
    #[error("signed at {timestamp}, outside the replay window around {now}")]
    Stale {
        /// When it was signed.
        timestamp: u64,
        /// The receiver's clock.
        now: u64,
    },
    /// The MAC does not match the body and timestamp under the secret.
    #[error("signature does not match")]
    Mismatch,
}

/// Check a received webhook at receiver time `now` (Unix seconds): the header's
/// timestamp within [`WEBHOOK_REPLAY_WINDOW`], and its MAC over `"<t>.<body>"`
/// (compared in constant time).
pub fn verify_webhook_signature(
    secret: &SecretString,
    header: &str,
    body: &[u8],
    now: u64,
) -> Result<(), WebhookRejection> {
    let (mut timestamp, mut digest) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<u64>().ok(),
            Some(("v1", v)) if v.len() == 64 => {
                digest =
                    (0..32).map(|i| u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>();
            }
            _ => {}
        }
    }
    let (Some(timestamp), Some(digest)) = (timestamp, digest) else { return Err(WebhookRejection::Malformed) };
    if timestamp.abs_diff(now) > WEBHOOK_REPLAY_WINDOW.as_secs() {
        return Err(WebhookRejection::Stale { timestamp, now });
    }
    let mac = webhook_mac(secret, timestamp, body).ok_or(WebhookRejection::Mismatch)?;
    mac.verify_slice(&digest).map_err(|_| WebhookRejection::Mismatch)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl WebhookNotifier {
    /// A webhook to `url` (never shown: it may carry a token) signed with `secret`.
    pub fn new(name: &str, http: reqwest::Client, url: &str, secret: SecretString) -> Self {
        Self { name: format!("webhook:{name}"), http, url: url.to_owned(), secret, retry: RetryPolicy::default() }
    }

    /// Another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(n).map_err(|e| NotifyError::Transport {
            notifier: self.name.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let mut backoff = self.retry.backoff;
        let mut last = 0;
        for attempt in 1..=self.retry.attempts.max(1) {
            let signature = webhook_signature(&self.secret, unix_now(), &body);
            let sent = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Rpcc-Signature", &signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    last = r.status().as_u16();
                    if !(r.status().is_server_error() || last == 429) {
                        return Err(NotifyError::Refused { notifier: self.name.clone(), status: last });
                    }
                }
                Err(e) if attempt == self.retry.attempts => return Err(transport(&self.name, &e)),
                Err(_) => {}
            }
            if attempt < self.retry.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(NotifyError::Unavailable { notifier: self.name.clone(), status: last, attempts: self.retry.attempts })
    }
}
