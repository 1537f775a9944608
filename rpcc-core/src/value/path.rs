//! File paths: local paths the control plane reads (key files), and absolute paths on
//! a server that go into configs and remote commands.

use super::{ValueError, describe_char, reject_unsafe, string_newtype_impls};

/// A path on the control-plane machine (e.g. an SSH key file), relative paths resolved
/// against the inventory's directory. No NUL, newline or control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FilePath(String);

impl FilePath {
    /// Validate a local path.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() {
            return Err(ValueError::new("is empty; a file path is required"));
        }
        if let Some(c) = input.chars().find(|c| c.is_control()) {
            return Err(ValueError::new(format!("contains {}", describe_char(c))));
        }
        if input.len() > 4096 {
            return Err(ValueError::new("is longer than 4096 characters"));
        }
        Ok(Self(input.to_owned()))
    }

    /// Resolve against a base directory when relative.
    pub fn resolve(&self, base: &std::path::Path) -> std::path::PathBuf {
        let p = std::path::Path::new(&self.0);
        if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
    }
}
string_newtype_impls!(FilePath);

/// An absolute path on a managed server, safe in nginx directives and as a shell-quoted
/// argument: starts with `/`, only `A-Z a-z 0-9 / . _ - + @`, no `.`/`..` segments, no
/// empty segments, at most 1024 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RemotePath(String);

impl RemotePath {
    /// Validate a remote path.
    ///
    /// ```
    /// # use rpcc_core::value::RemotePath;
    /// assert!(RemotePath::parse("/etc/nginx").is_ok());
    /// assert!(RemotePath::parse("/etc/nginx/../shadow").is_err());
    /// assert!(RemotePath::parse("etc/nginx").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        reject_unsafe(input, false)?;
        if !input.starts_with('/') {
            return Err(ValueError::new("must be an absolute path (starting with '/')"));
        }
        if let Some(c) = input.chars().find(|c| !(c.is_ascii_alphanumeric() || "/._-+@".contains(*c))) {
            return Err(ValueError::new(format!(
                "contains {}; remote paths allow letters, digits and / . _ - + @",
                describe_char(c)
            )));
        }
        let trimmed = match input.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        if trimmed.len() > 1 && trimmed[1..].split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(ValueError::new("has an empty, '.' or '..' segment"));
        }
        if input.len() > 1024 {
            return Err(ValueError::new("is longer than 1024 characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Append a relative, already-safe component (an identifier or a fixed name).
    pub fn join(&self, component: &str) -> Result<Self, ValueError> {
        if self.0 == "/" {
            Self::parse(&format!("/{component}"))
        } else {
            Self::parse(&format!("{}/{component}", self.0))
        }
    }
}
string_newtype_impls!(RemotePath);
