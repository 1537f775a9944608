//! [`AcmeError`]: what went wrong talking to the CA, named by domain where it applies.

use std::time::Duration;

/// Certificate issuance failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA cannot be reached or answered with a server error (worth retrying later).
    #[error("ACME CA {directory}: {reason}")]
    Unavailable {
        /// The directory URL.
        directory: String,
        /// What happened.
        reason: String,
    },
    /// The CA refused a request with a problem document (RFC 7807).
    #[error("ACME CA refused {what}: {problem}")]
    Refused {
        /// What was asked (`the account`, `the order for app.example.com`, …).
        what: String,
        /// The problem type and detail, as the CA wrote them.
        problem: String,
        /// `Some` when the problem was `rateLimited` (or HTTP 429): retry no sooner than
        /// this, never in a loop. (A minute; the CA's `Retry-After` is not read yet.)
        rate_limited: Option<Duration>,
    },
    /// A challenge was not validated: the CA could not fetch the key authorization.
    #[error("{domain}: the CA could not validate the HTTP-01 challenge: {problem}")]
    ChallengeFailed {
        /// The name whose challenge failed.
        domain: String,
        /// The CA's reason.
        problem: String,
    },
    /// The responder could not put a key authorization in place on the servers.
    #[error("{domain}: the challenge answer could not be published: {reason}")]
    Publish {
        /// The name.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The order did not become ready or valid in time.
    #[error("the order for {domains} did not complete within {after:?}")]
    Timeout {
        /// The order's names.
        domains: String,
        /// How long it was given.
        after: Duration,
    },
    /// Stored account credentials or a root certificate could not be used.
    #[error("ACME account: {0}")]
    Account(String),
    /// A key or certificate could not be generated here.
    #[error("cannot generate the certificate: {0}")]
    Generate(String),
    /// certbot (the `client = "certbot"` backend) failed on a server.
    #[error("certbot on {server}: {detail}")]
    Certbot {
        /// The server it ran on.
        server: String,
        /// certbot's last words, or why it could not run.
        detail: String,
    },
    /// The CA broke the protocol (unexpected state, missing data).
    #[error("ACME CA answered unexpectedly: {0}")]
    Protocol(String),
}

impl AcmeError {
    /// Unavailable CAs, timeouts and rate limits may succeed later; refusals and failed
    /// challenges need something changed first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } => true,
            Self::Refused { rate_limited, .. } => rate_limited.is_some(),
            _ => false,
        }
    }

    /// Map an `instant-acme` error for `what` at `directory`.
    pub(crate) fn from_acme(directory: &str, what: &str, e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) => {
                let kind = p.r#type.as_deref().unwrap_or("problem").rsplit(':').next().unwrap_or("problem").to_owned();
                let limited = kind == "rateLimited" || p.status == Some(429);
                let problem = format!("{kind}: {}", p.detail.as_deref().unwrap_or("(no detail)"));
                if p.status.is_some_and(|s| s >= 500) && !limited {
                    return Self::Unavailable { directory: directory.to_owned(), reason: problem };
                }
                Self::Refused {
                    what: what.to_owned(),
                    problem,
                    rate_limited: limited.then_some(Duration::from_secs(60)),
                }
            }
            instant_acme::Error::Hyper(e) => {
                Self::Unavailable { directory: directory.to_owned(), reason: e.to_string() }
            }
            instant_acme::Error::Other(e) => {
                Self::Unavailable { directory: directory.to_owned(), reason: e.to_string() }
            }
            other => Self::Protocol(format!("{what}: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AcmeError;

    fn problem(json: &str) -> instant_acme::Error {
        instant_acme::Error::Api(serde_json::from_str(json).expect("a problem document"))
    }

    #[test]
    fn rate_limits_server_errors_and_refusals_are_told_apart() {
        let dir = "https://ca.example/dir";
        let limited = AcmeError::from_acme(
            dir,
            "the order for a.example.com",
            problem(
                r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates","status":429}"#,
            ),
        );
        assert!(matches!(limited, AcmeError::Refused { rate_limited: Some(_), .. }), "{limited:?}");
        assert!(limited.is_retryable());
        assert!(limited.to_string().contains("rateLimited: too many certificates"), "{limited}");
        // A bare 429 without the type is a rate limit too.
        let bare = AcmeError::from_acme(dir, "x", problem(r#"{"status":429}"#));
        assert!(matches!(bare, AcmeError::Refused { rate_limited: Some(_), .. }), "{bare:?}");
        let down = AcmeError::from_acme(
            dir,
            "x",
            problem(r#"{"type":"urn:ietf:params:acme:error:serverInternal","status":503}"#),
        );
        assert!(matches!(down, AcmeError::Unavailable { .. }) && down.is_retryable(), "{down:?}");
        let refused = AcmeError::from_acme(
            dir,
            "the order for a.example.com",
            problem(
                r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"forbidden name","status":400}"#,
            ),
        );
        assert!(matches!(refused, AcmeError::Refused { rate_limited: None, .. }) && !refused.is_retryable());
        assert!(refused.to_string().contains("the order for a.example.com"), "{refused}");
    }
}
