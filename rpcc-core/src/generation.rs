//! `Generation`: one rendered configuration tree for one server, content-addressed.
//!
//! Files are kept in a sorted map of relative paths, so iteration order, the manifest and
//! the tree hash are deterministic: the same inventory gives byte-identical trees and the
//! same hash, and "the server already runs this hash" means something.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::value::ValueError;

/// A relative path inside a generation: `/`-separated segments of `A-Z a-z 0-9 . _ -`,
/// no empty, `.` or `..` segment, not absolute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GenerationPath(String);

impl TryFrom<String> for GenerationPath {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}

impl From<GenerationPath> for String {
    fn from(p: GenerationPath) -> String {
        p.0
    }
}

impl GenerationPath {
    /// Validate a relative path.
    ///
    /// ```
    /// # use rpcc_core::generation::GenerationPath;
    /// assert!(GenerationPath::parse("sites/app.example.com.conf").is_ok());
    /// assert!(GenerationPath::parse("../etc/passwd").is_err());
    /// assert!(GenerationPath::parse("/abs").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let ok_chars = input.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if input.is_empty() || input.len() > 255 || !ok_chars {
            return Err(ValueError::new("is not a generation path (relative; letters, digits, '.', '_', '-', '/')"));
        }
        if input.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(ValueError::new("has an empty, '.' or '..' segment"));
        }
        Ok(Self(input.to_owned()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GenerationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One file of a generation. Contents are shared (`Arc`), so a renderer's cache and
/// several generations can hold the same bytes without copies. `Debug` shows the size,
/// mode and digest, never the contents (a generation carries private keys).
#[derive(Clone, PartialEq, Eq)]
pub struct GenerationFile {
    /// Contents.
    pub bytes: std::sync::Arc<[u8]>,
    /// Unix permission bits (e.g. `0o644`).
    pub mode: u32,
}

impl std::fmt::Debug for GenerationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationFile")
            .field("len", &self.bytes.len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("sha256", &Sha256Digest::of(&self.bytes))
            .finish()
    }
}

/// A `std::hash::Hasher` that feeds SHA-256, for content keys derived through `Hash`
/// (e.g. of a model `Site`). `finish()` is not meaningful; use [`Sha256Hasher::digest`].
#[derive(Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed raw bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything written.
    pub fn digest(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// A SHA-256 digest, shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Hash bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parse 64 hex digits (either case).
    ///
    /// ```
    /// # use rpcc_core::generation::Sha256Digest;
    /// let d = Sha256Digest::of(b"x");
    /// assert_eq!(Sha256Digest::from_hex(&d.to_hex()), Some(d));
    /// assert_eq!(Sha256Digest::from_hex("zz"), None);
    /// ```
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// A rendered configuration tree for one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    id: String,
    files: BTreeMap<GenerationPath, GenerationFile>,
}

/// Per-file and whole-tree hashes of a generation (what `manifest.json` holds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The generation id.
    pub id: String,
    /// Hash over every (path, mode, contents) in path order.
    pub tree_sha256: Sha256Digest,
    /// Every file with its hash, in path order.
    pub files: Vec<ManifestEntry>,
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Relative path.
    pub path: GenerationPath,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// SHA-256 of the contents.
    pub sha256: Sha256Digest,
}

impl Generation {
    /// A generation from its id and files.
    pub fn new(id: String, files: BTreeMap<GenerationPath, GenerationFile>) -> Self {
        Self { id, files }
    }

    /// The id (also the directory name under `generations/` on the server).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Files in path order.
    pub fn files(&self) -> &BTreeMap<GenerationPath, GenerationFile> {
        &self.files
    }

    /// One file's contents.
    pub fn file(&self, path: &str) -> Option<&GenerationFile> {
        self.files.iter().find(|(p, _)| p.as_str() == path).map(|(_, f)| f)
    }

    /// Hash of the whole tree: paths, modes and contents, in path order.
    pub fn tree_hash(&self) -> Sha256Digest {
        tree_hash(self.files.iter().map(|(p, f)| (p.as_str(), f.mode, &f.bytes[..])))
    }

    /// The manifest.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            id: self.id.clone(),
            tree_sha256: self.tree_hash(),
            files: self
                .files
                .iter()
                .map(|(p, f)| ManifestEntry {
                    path: p.clone(),
                    size: f.bytes.len() as u64,
                    mode: f.mode,
                    sha256: Sha256Digest::of(&f.bytes),
                })
                .collect(),
        }
    }
}

/// Hash a sequence of (path, mode, contents), length-prefixed so that no two different
/// trees hash the same way by moving bytes between fields.
pub fn tree_hash<'a>(files: impl IntoIterator<Item = (&'a str, u32, &'a [u8])>) -> Sha256Digest {
    let mut h = Sha256::new();
    for (path, mode, bytes) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(mode.to_le_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    Sha256Digest(h.finalize().into())
}

/// The `Renderer` role: turn the desired state into a generation for one server.
pub trait Renderer: Send + Sync {
    /// The renderer's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Render every site `server` serves into one generation.
    fn render(&self, inventory: &crate::Inventory, server: &crate::model::Server) -> Result<Generation, Self::Error>;
}
