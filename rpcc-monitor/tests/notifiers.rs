//! Telegram and webhook notifiers against a local HTTP server that records every request
//! and answers from a script: message splitting, 429 `retry_after`, retries, refusals,
//! signatures, and the token never showing in errors or `Debug`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcc_monitor::{
    Notification, Notifier as _, NotifyError, RetryPolicy, TelegramNotifier, WEBHOOK_REPLAY_WINDOW, WebhookNotifier,
    WebhookRejection, verify_webhook_signature, webhook_signature,
};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const TOKEN: &str = "123456:canary-bot-token-Zq";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: String,
    body: String,
}

/// Answers with `script[i]` for the i-th request (the last entry repeats).
async fn server(script: Vec<(u16, &'static str)>) -> anyhow::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut i = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let (status, body) = script[i.min(script.len() - 1)];
            i += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() >= len {
                            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                            log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Seen {
                                path,
                                headers: head.to_owned(),
                                body: rest.to_owned(),
                            });
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok((base, seen))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client")
}

fn fast() -> RetryPolicy {
    RetryPolicy { attempts: 3, backoff: Duration::from_millis(20), max_retry_after: Duration::from_secs(5) }
}

fn note(text: String) -> Notification {
    Notification { group: Some("eu".into()), text, alert: None }
}

#[tokio::test]
async fn telegram_splits_long_messages_and_honours_retry_after() -> anyhow::Result<()> {
    let (base, seen) = server(vec![
        (200, r#"{"ok":true}"#),
        (429, r#"{"ok":false,"error_code":429,"parameters":{"retry_after":1}}"#),
        (200, r#"{"ok":true}"#),
    ])
    .await?;
    let t =
        TelegramNotifier::new("ops", http(), SecretString::from(TOKEN), "-100123").with_api(&base).with_retry(fast());
    let text: String = (0..300).map(|i| format!("incident line {i}: something happened\n")).collect();
    assert!(text.chars().count() > 4096 * 2);
    let started = Instant::now();
    t.send(&note(text.clone())).await?;
    assert!(started.elapsed() >= Duration::from_secs(1), "retry_after was not honoured");
    let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(seen.len(), 4, "3 parts, one of them retried after 429");
    assert!(seen.iter().all(|s| s.path == format!("/bot{TOKEN}/sendMessage")));
    let parts: Vec<String> = seen
        .iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&s.body).expect("JSON body");
            v["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert_eq!(parts[1], parts[2], "the rate-limited part is sent again");
    assert_eq!(format!("{}{}{}", parts[0], parts[2], parts[3]), text);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&seen[0].body)?["chat_id"], "-100123");
    Ok(())
}

#[tokio::test]
async fn telegram_errors_never_show_the_token() -> anyhow::Result<()> {
    let (base, _) = server(vec![(400, r#"{"ok":false,"description":"chat not found"}"#)]).await?;
    let t = TelegramNotifier::new("ops", http(), SecretString::from(TOKEN), "1").with_api(&base).with_retry(fast());
    let e = t.send(&note("hi".into())).await.unwrap_err();
    assert!(matches!(e, NotifyError::Refused { status: 400, .. }), "{e}");
    let (base, _) = server(vec![(502, "{}")]).await?;
    let t2 = TelegramNotifier::new("ops", http(), SecretString::from(TOKEN), "1").with_api(&base).with_retry(fast());
    let e2 = t2.send(&note("hi".into())).await.unwrap_err();
    assert!(matches!(e2, NotifyError::Unavailable { status: 502, attempts: 3, .. }), "{e2}");
    let closed = TelegramNotifier::new("ops", http(), SecretString::from(TOKEN), "1")
        .with_api("http://127.0.0.1:1")
        .with_retry(fast());
    let e3 = closed.send(&note("hi".into())).await.unwrap_err();
    for text in [e.to_string(), e2.to_string(), e3.to_string(), format!("{e:?} {e3:?} {t:?}")] {
        assert!(!text.contains("canary-bot-token"), "token leaked: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_with_backoff() -> anyhow::Result<()> {
    let secret = SecretString::from("webhook-secret");
    let (base, seen) = server(vec![(500, "{}"), (503, "{}"), (204, "")]).await?;
    let w = WebhookNotifier::new("pager", http(), &format!("{base}/hook"), secret.clone()).with_retry(fast());
    w.send(&note("disk full on edge-1".into())).await?;
    let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        let sig =
            s.headers.lines().find_map(|l| l.strip_prefix("x-rpcc-signature: ")).expect("signature header").to_owned();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        assert_eq!(verify_webhook_signature(&secret, &sig, s.body.as_bytes(), now), Ok(()));
        // The same request replayed later than the window, or with another body, is refused.
        let later = now + WEBHOOK_REPLAY_WINDOW.as_secs() + 1;
        assert!(matches!(
            verify_webhook_signature(&secret, &sig, s.body.as_bytes(), later),
            Err(WebhookRejection::Stale { .. })
        ));
        assert_eq!(verify_webhook_signature(&secret, &sig, b"{}", now), Err(WebhookRejection::Mismatch));
        assert_eq!(verify_webhook_signature(&secret, "sha256=00", b"{}", now), Err(WebhookRejection::Malformed));
        let v: serde_json::Value = serde_json::from_str(&s.body)?;
        assert_eq!(v["text"], "disk full on edge-1");
        assert_eq!(v["group"], "eu");
    }
    // A known-answer signature (computed with Python's hmac/hashlib over "<t>.<body>").
    assert_eq!(
        webhook_signature(&SecretString::from("key"), 1_700_000_000, b"The quick brown fox jumps over the lazy dog"),
        "t=1700000000,v1=2f658d6aef4f246e91cd741bbcded7479e9605f9d41c9e248122a117e0e1765b"
    );
    let (base, _) = server(vec![(500, "{}")]).await?;
    let w = WebhookNotifier::new("pager", http(), &format!("{base}/hook"), secret).with_retry(fast());
    let e = w.send(&note("x".into())).await.unwrap_err();
    assert!(matches!(e, NotifyError::Unavailable { status: 500, attempts: 3, .. }) && e.is_retryable(), "{e}");
    assert!(e.to_string().contains("webhook:pager") && !e.to_string().contains(&base));
    Ok(())
}
