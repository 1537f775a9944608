//! Where rpcc keeps what it did and what it holds, as roles: [`StateStore`]
//! (generations, deployments, the audit log, this machine's per-server locks) and
//! [`SecretStore`] (sealed secrets, envelopes only), their [`StoreError`], and
//! [`MemoryStore`], an in-memory store for tests and dry runs. `rpcc-store` implements
//! both roles on SQLite.

mod memory;
mod secrets;
mod state;

pub use memory::MemoryStore;

pub use secrets::{SecretStore, SecretSwap};
pub use state::{
    AuditAction, DeploymentRecord, DeploymentState, LocalLock, NewDeployment, StateStore, StoreError, unix_ms,
};

/// Everything an engine keeps in one place: deploy state and the audit log, sealed
/// secrets (ACME accounts, imported passwords) and certificates. `rpcc-store`'s SQLite
/// store implements it; another backend implements the three roles and this.
#[async_trait::async_trait]
pub trait EngineStore: StateStore + SecretStore + crate::certs::CertificateStore + std::fmt::Debug {
    /// Where it lives, for messages (a file path, a URL without credentials).
    fn location(&self) -> String;

    /// Whether new audit entries are keyed (HMAC under the keyring).
    fn audit_keyed(&self) -> bool;

    /// Re-key the audit chain under this store's seal (after a key rotation, so the old
    /// key can be retired): the whole chain is verified with `keyring` first, then every
    /// keyed entry's MAC and link is rewritten at once, serialized with appends, and the
    /// checkpoint moves to the new head. Returns how many entries changed; `Ok(0)` for
    /// a store without a seal. A chain that does not verify is left as it is
    /// ([`StoreError::Corrupt`]).
    async fn rekey_audit(&self, keyring: &crate::keyring::Keyring) -> Result<u64, StoreError>;

    /// The last audit entry's sequence number and hash (`None`: empty log).
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self.audit_log().await?.last().map(|r| (r.seq, r.hash.clone())))
    }
}

/// A store URL without its passwords, for messages, logs, `Debug` and files others can
/// read: the userinfo password (`postgres://rpcc:secret@db/x` → `postgres://rpcc@db/x`)
/// is dropped and the value of every `password` query parameter (libpq's
/// `?password=…`, any case) becomes `***`. Anything that is not a URL is returned as it
/// is.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme) = url.find("://") else { return url.to_owned() };
    let (main, query) = match url[scheme..].find('?') {
        Some(q) => (&url[..scheme + q], Some(&url[scheme + q + 1..])),
        None => (url, None),
    };
    let mut out = match main.rfind('@') {
        Some(at) if at > scheme => {
            let userinfo = &main[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &main[..scheme + 3], &main[at + 1..])
        }
        _ => main.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_redacted_url_has_no_password_in_userinfo_or_query() {
        let cases = [
            ("postgres://rpcc:s3cr3t@db.example:5432/rpcc", "postgres://rpcc@db.example:5432/rpcc"),
            ("postgresql://u:p:q@h/d?sslmode=require", "postgresql://u@h/d?sslmode=require"),
            ("postgres://rpcc@127.0.0.1/x", "postgres://rpcc@127.0.0.1/x"),
            ("postgres://127.0.0.1/x", "postgres://127.0.0.1/x"),
            ("postgres://rpcc@db/x?password=s3cr3t", "postgres://rpcc@db/x?password=***"),
            (
                "postgres://db/x?sslmode=require&PassWord=s3cr3t&application_name=a",
                "postgres://db/x?sslmode=require&PassWord=***&application_name=a",
            ),
            ("postgres://u:s3cr3t@db/x?password=s3cr3t&password=again", "postgres://u@db/x?password=***&password=***"),
            // An '@' in the query is not the end of a userinfo.
            ("postgres://db/x?password=s3cr3t@x", "postgres://db/x?password=***"),
            ("/var/lib/rpcc/state.db", "/var/lib/rpcc/state.db"),
            ("sqlite:///var/lib/rpcc/state.db", "sqlite:///var/lib/rpcc/state.db"),
        ];
        for (url, want) in cases {
            assert_eq!(redacted_url(url), want, "{url}");
            assert!(!redacted_url(url).contains("s3cr3t"), "{url}");
        }
    }

    #[test]
    fn an_environments_debug_has_no_state_password() {
        let env = crate::model::EnvironmentSettings {
            name: "prod".into(),
            state: Some("postgres://rpcc:s3cr3t@db/rpcc?password=s3cr3t".into()),
            key_file: None,
        };
        let text = format!("{env:?}");
        assert!(!text.contains("s3cr3t") && text.contains("postgres://rpcc@db/rpcc?password=***"), "{text}");
    }
}
