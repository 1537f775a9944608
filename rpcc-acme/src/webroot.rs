//! [`WebrootResponder`]: HTTP-01 answers written, over each server's transport, into
//! the ACME webroot that rpcc's nginx config serves on every site
//! (`<managed root>/acme/.well-known/acme-challenge/<token>`), on every server that
//! serves the name — DNS may send the CA to any of them.

use std::sync::Arc;
use std::time::Duration;

use rpcc_core::transport::{Argv, ExecRequest, Transport};
use rpcc_core::value::RemotePath;

use crate::ChallengeResponder;

/// One server that serves the names being ordered.
#[derive(Clone)]
pub struct WebrootTarget {
    /// Its name (for messages).
    pub server: String,
    /// How to reach it.
    pub transport: Arc<dyn Transport>,
    /// Its ACME webroot (`<managed root>/acme`).
    pub webroot: RemotePath,
}

impl std::fmt::Debug for WebrootTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrootTarget").field("server", &self.server).field("webroot", &self.webroot).finish()
    }
}

/// Publishes every answer on all its targets at once (all or the publish fails).
#[derive(Debug, Clone)]
pub struct WebrootResponder {
    targets: Vec<WebrootTarget>,
    timeout: Duration,
}

/// An ACME token is base64url (RFC 8555 §8.1): anything else from the CA is refused
/// before it becomes part of a path on a server.
fn check_token(token: &str) -> Result<(), String> {
    let ok =
        (1..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(format!("the CA sent a token that is not base64url: {token:?}")) }
}

impl WebrootResponder {
    /// Answers go to every one of `targets`.
    pub fn new(targets: Vec<WebrootTarget>) -> Self {
        Self { targets, timeout: Duration::from_secs(30) }
    }

    fn dir(t: &WebrootTarget) -> Result<RemotePath, String> {
        t.webroot.join(".well-known").and_then(|p| p.join("acme-challenge")).map_err(|e| e.to_string())
    }

    async fn publish_on(&self, t: &WebrootTarget, token: &str, answer: &str) -> Result<(), String> {
        let dir = Self::dir(t)?;
        let file = dir.join(token).map_err(|e| e.to_string())?;
        let mkdir = Argv::new("mkdir", ["-p", dir.as_str()]).map_err(|e| e.to_string())?;
        let out = t.transport.exec(ExecRequest::new(mkdir).timeout(self.timeout)).await.map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!("cannot create {dir}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        t.transport.upload(&file, answer.as_bytes(), 0o644).await.map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl ChallengeResponder for WebrootResponder {
    async fn publish(&self, _domain: &str, token: &str, key_authorization: &str) -> Result<(), String> {
        check_token(token)?;
        let results =
            futures_util::future::join_all(self.targets.iter().map(|t| self.publish_on(t, token, key_authorization)))
                .await;
        let failed: Vec<String> = self
            .targets
            .iter()
            .zip(results)
            .filter_map(|(t, r)| r.err().map(|e| format!("{}: {e}", t.server)))
            .collect();
        if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
    }

    async fn withdraw(&self, _domain: &str, token: &str) {
        if check_token(token).is_err() {
            return;
        }
        let removals = self.targets.iter().map(|t| async move {
            let file = Self::dir(t).and_then(|d| d.join(token).map_err(|e| e.to_string()));
            let argv = file.and_then(|f| Argv::new("rm", ["-f", f.as_str()]).map_err(|e| e.to_string()));
            if let Ok(argv) = argv
                && let Err(e) = t.transport.exec(ExecRequest::new(argv).timeout(self.timeout)).await
            {
                tracing::warn!(server = %t.server, error = %e, "challenge answer not removed");
            }
        });
        futures_util::future::join_all(removals).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_that_are_not_base64url_never_become_paths() {
        for bad in ["", "../../etc/passwd", "a/b", "a b", "tok;rm", "$(id)", ".hidden", "a.b"] {
            assert!(super::check_token(bad).is_err(), "{bad:?}");
        }
        assert!(super::check_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0").is_ok());
    }
}
