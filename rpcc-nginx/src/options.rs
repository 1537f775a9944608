//! Render options: what is not in the inventory but shapes the output.

use std::path::PathBuf;

use crate::RenderError;

/// Mozilla "intermediate" TLS ciphers (TLS 1.2; TLS 1.3 suites are fixed by OpenSSL).
pub const MOZILLA_INTERMEDIATE_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

/// Serde form of the options (e.g. from a config file); [`RenderConfig::build`]
/// validates it into [`RenderOptions`].
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderConfig {
    /// Curves for `ssl_ecdh_curve`, e.g. `["X25519", "prime256v1", "secp384r1"]`.
    pub ecdh_curves: Option<Vec<String>>,
    /// nginx version to assume when the inventory does not say (`1.22.1`).
    pub default_nginx_version: Option<String>,
    /// Access logs as JSON lines.
    pub json_access_log: Option<bool>,
    /// Directory with operator overrides of the built-in templates (same file names).
    pub override_dir: Option<PathBuf>,
    /// `worker_connections`.
    pub worker_connections: Option<u32>,
}

/// Validated render options. `Default` is the production default.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub(crate) ecdh_curves: Vec<String>,
    pub(crate) default_version: (u16, u16, u16),
    pub(crate) json_access_log: bool,
    pub(crate) override_dir: Option<PathBuf>,
    pub(crate) worker_connections: u32,
    pub(crate) max_threads: Option<std::num::NonZeroUsize>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            ecdh_curves: vec!["X25519".into(), "prime256v1".into(), "secp384r1".into()],
            default_version: (1, 22, 1),
            json_access_log: false,
            override_dir: None,
            worker_connections: 4096,
            max_threads: None,
        }
    }
}

/// Curves OpenSSL 1.1.1+/3.x know under these names.
const KNOWN_CURVES: &[&str] = &["X25519", "X448", "prime256v1", "secp384r1", "secp521r1"];

impl RenderConfig {
    /// Validate into options; each error names the option.
    pub fn build(self) -> Result<RenderOptions, RenderError> {
        let mut o = RenderOptions::default();
        if let Some(curves) = self.ecdh_curves {
            if curves.is_empty() {
                return Err(RenderError::Options {
                    option: "ecdh_curves",
                    message: "is empty; list at least one curve".into(),
                });
            }
            if let Some(bad) = curves.iter().find(|c| !KNOWN_CURVES.contains(&c.as_str())) {
                return Err(RenderError::Options {
                    option: "ecdh_curves",
                    message: format!("{bad:?} is not a supported curve (one of {})", KNOWN_CURVES.join(", ")),
                });
            }
            o.ecdh_curves = curves;
        }
        if let Some(v) = self.default_nginx_version {
            o.default_version = parse_version(&v).ok_or_else(|| RenderError::Options {
                option: "default_nginx_version",
                message: format!("{v:?} is not an nginx version such as 1.22.1"),
            })?;
        }
        if let Some(j) = self.json_access_log {
            o.json_access_log = j;
        }
        o.override_dir = self.override_dir;
        if let Some(w) = self.worker_connections {
            if !(64..=65_536).contains(&w) {
                return Err(RenderError::Options {
                    option: "worker_connections",
                    message: format!("{w} is not in 64-65536"),
                });
            }
            o.worker_connections = w;
        }
        Ok(o)
    }
}

impl RenderOptions {
    /// Use operator overrides from `dir` (files named like the built-in templates).
    pub fn with_override_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.override_dir = Some(dir.into());
        self
    }

    /// JSON access logs.
    pub fn with_json_access_log(mut self, on: bool) -> Self {
        self.json_access_log = on;
        self
    }

    /// Render on at most `threads` threads (default: every available core once a server
    /// has enough sites; `1` renders on the calling thread only).
    pub fn with_max_threads(mut self, threads: std::num::NonZeroUsize) -> Self {
        self.max_threads = Some(threads);
        self
    }
}

fn parse_version(s: &str) -> Option<(u16, u16, u16)> {
    let mut it = s.split('.').map(|p| p.parse::<u16>().ok());
    let v = (it.next()??, it.next()??, it.next().flatten().unwrap_or(0));
    it.next().is_none().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_builds_and_names_the_bad_option() {
        let ok = RenderConfig {
            ecdh_curves: Some(vec!["X25519".into()]),
            default_nginx_version: Some("1.25.3".into()),
            ..Default::default()
        };
        let o = ok.build().expect("valid");
        assert_eq!(o.ecdh_curves, ["X25519"]);
        assert_eq!(o.default_version, (1, 25, 3));
        for (cfg, option) in [
            (RenderConfig { ecdh_curves: Some(vec![]), ..Default::default() }, "ecdh_curves"),
            (RenderConfig { ecdh_curves: Some(vec!["X25519:evil".into()]), ..Default::default() }, "ecdh_curves"),
            (
                RenderConfig { default_nginx_version: Some("latest".into()), ..Default::default() },
                "default_nginx_version",
            ),
            (RenderConfig { worker_connections: Some(10), ..Default::default() }, "worker_connections"),
        ] {
            match cfg.build() {
                Err(RenderError::Options { option: got, .. }) => assert_eq!(got, option),
                other => panic!("{option}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let err = serde_json::from_str::<RenderConfig>(r#"{"ecdh_curve": ["X25519"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
