//! The path-tracking reader over a [`Node`] tree. It never stops at the first problem:
//! every error is recorded with its path and location and decoding goes on, so a user
//! sees all of them at once.

use super::node::{Node, NodeKind, TableEntry};
use crate::keyring::{Envelope, RecordId, Secret};
use crate::validate::{FieldError, FieldPath, Location, quote_value};
use crate::value::ValueError;

/// Collects errors while decoding.
pub(crate) struct Decoder<'s> {
    source: Option<&'s str>,
    errors: Vec<FieldError>,
    allow_plaintext: bool,
    plaintext: Vec<FieldPath>,
    /// Names of the groups decoded so far (for references checked while decoding).
    pub(crate) group_names: Vec<String>,
}

impl<'s> Decoder<'s> {
    pub(crate) fn new(source: Option<&'s str>, allow_plaintext: bool) -> Self {
        Self { source, errors: Vec::new(), allow_plaintext, plaintext: Vec::new(), group_names: Vec::new() }
    }

    /// Paths of plain-text secrets that were accepted (for warnings).
    pub(crate) fn take_plaintext(&mut self) -> Vec<FieldPath> {
        std::mem::take(&mut self.plaintext)
    }

    pub(crate) fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    fn location(&self, span: Option<&std::ops::Range<usize>>) -> Option<Location> {
        match (self.source, span) {
            (Some(src), Some(span)) => Some(Location::of_offset(src, span.start)),
            _ => None,
        }
    }

    /// Record an error at `path`, located at `node` when known.
    pub(crate) fn error(&mut self, path: &FieldPath, node: Option<&Node>, message: impl Into<String>) {
        let location = self.location(node.and_then(|n| n.span.as_ref()));
        self.errors.push(FieldError { path: path.clone(), message: message.into(), location });
    }

    /// Record an error with a span but no node (e.g. a key).
    pub(crate) fn error_at(&mut self, path: &FieldPath, span: Option<&std::ops::Range<usize>>, message: String) {
        let location = self.location(span);
        self.errors.push(FieldError { path: path.clone(), message, location });
    }

    /// Open `node` as a table with the given known keys.
    pub(crate) fn table<'n>(
        &mut self,
        node: &'n Node,
        path: &FieldPath,
        known: &'static [&'static str],
    ) -> Option<Table<'n>> {
        match &node.kind {
            NodeKind::Table(entries) => {
                Some(Table { entries, used: vec![false; entries.len()], path: path.clone(), known, node })
            }
            _ => {
                self.error(path, Some(node), format!("expected a table, found {}", node.type_name()));
                None
            }
        }
    }

    /// Read a string, reporting a type error otherwise.
    pub(crate) fn string<'n>(&mut self, node: &'n Node, path: &FieldPath) -> Option<&'n str> {
        match &node.kind {
            NodeKind::String(s) => Some(s),
            _ => {
                self.error(path, Some(node), format!("expected a string, found {}", node.type_name()));
                None
            }
        }
    }

    /// Read a string and parse it into a validated value.
    pub(crate) fn parse<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let s = self.string(node, path)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, Some(node), format!("{} {e}", quote_value(s)));
                None
            }
        }
    }

    /// Read a secret field: an `rpcc:v1` envelope, or plain text when the load allows
    /// it. `record` is `None` when the owner's name is itself invalid (already reported).
    /// Errors never include the value.
    pub(crate) fn secret(&mut self, node: &Node, path: &FieldPath, record: Option<&RecordId>) -> Option<Secret> {
        let s = match &node.kind {
            NodeKind::String(s) => s,
            _ => {
                self.error(path, Some(node), format!("expected a string, found {}", node.type_name()));
                return None;
            }
        };
        if s.is_empty() {
            self.error(path, Some(node), "is empty");
            return None;
        }
        if Envelope::looks_like(s) {
            return match Envelope::parse(s) {
                Ok(e) => record.map(|r| Secret::sealed(r.clone(), e)),
                Err(problem) => {
                    self.error(path, Some(node), problem.to_string());
                    None
                }
            };
        }
        if !self.allow_plaintext {
            let record = record.map_or_else(|| "<record>".to_owned(), ToString::to_string);
            self.error(
                path,
                Some(node),
                format!(
                    "is plain text (value not shown); secrets are stored encrypted: \
                     pipe the value to `rpcc keys encrypt --for {record}` and put the envelope here, \
                     or pass --allow-plaintext to accept it with a warning"
                ),
            );
            return None;
        }
        if s.contains('\0') {
            self.error(path, Some(node), "contains a NUL byte (value not shown)");
            return None;
        }
        self.plaintext.push(path.clone());
        record.map(|r| Secret::plain(r.clone(), secrecy::SecretString::from(s.as_str())))
    }

    /// Read a boolean.
    pub(crate) fn bool(&mut self, node: &Node, path: &FieldPath) -> Option<bool> {
        match node.kind {
            NodeKind::Bool(b) => Some(b),
            _ => {
                self.error(path, Some(node), format!("expected true or false, found {}", node.type_name()));
                None
            }
        }
    }

    /// Read an integer within `min..=max`.
    pub(crate) fn int(&mut self, node: &Node, path: &FieldPath, min: i64, max: i64, what: &str) -> Option<i64> {
        match node.kind {
            NodeKind::Integer(n) if n >= i128::from(min) && n <= i128::from(max) => i64::try_from(n).ok(),
            NodeKind::Integer(n) => {
                self.error(path, Some(node), format!("{n} is not {what} ({min}-{max})"));
                None
            }
            _ => {
                self.error(
                    path,
                    Some(node),
                    format!("expected an integer ({what}, {min}-{max}), found {}", node.type_name()),
                );
                None
            }
        }
    }

    /// Read an array and decode each item with `item`.
    pub(crate) fn array<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        mut item: impl FnMut(&mut Self, &Node, &FieldPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let NodeKind::Array(items) = &node.kind else {
            self.error(path, Some(node), format!("expected an array, found {}", node.type_name()));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, n) in items.iter().enumerate() {
            match item(self, n, &path.index(i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// [`Self::array`] of at most `max` entries: a longer one is one error naming the
    /// limit (its entries are not decoded).
    pub(crate) fn bounded_array<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        max: usize,
        item: impl FnMut(&mut Self, &Node, &FieldPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        if let NodeKind::Array(items) = &node.kind
            && items.len() > max
        {
            self.error(path, Some(node), format!("has {} entries; at most {max} are allowed per site", items.len()));
            return None;
        }
        self.array(node, path, item)
    }

    /// Read a string naming one of `choices`.
    pub(crate) fn choice<T: Copy>(&mut self, node: &Node, path: &FieldPath, choices: &[(&str, T)]) -> Option<T> {
        let s = self.string(node, path)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let hint = did_you_mean(s, &names).map(|m| format!("; did you mean \"{m}\"?")).unwrap_or_default();
        self.error(path, Some(node), format!("{} is not one of {}{hint}", quote_value(s), names.join(", ")));
        None
    }
}

/// A table being read: tracks which keys were used so unknown ones can be reported.
pub(crate) struct Table<'n> {
    entries: &'n [TableEntry],
    used: Vec<bool>,
    path: FieldPath,
    known: &'static [&'static str],
    node: &'n Node,
}

impl<'n> Table<'n> {
    /// Take an optional key; `null` counts as absent.
    pub(crate) fn get(&mut self, key: &str) -> Option<(&'n Node, FieldPath)> {
        debug_assert!(self.known.contains(&key), "key {key} not in the known list");
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        let node = &self.entries[i].value;
        if matches!(node.kind, NodeKind::Null) {
            return None;
        }
        Some((node, self.path.field(key)))
    }

    /// Take a required key, reporting its absence.
    pub(crate) fn require(&mut self, d: &mut Decoder<'_>, key: &str, what: &str) -> Option<(&'n Node, FieldPath)> {
        let got = self.get(key);
        if got.is_none() {
            d.error(&self.path.field(key), Some(self.node), format!("is missing; {what} is required"));
        }
        got
    }

    /// True when the key is present (and not null), without taking it.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key && !matches!(e.value.kind, NodeKind::Null))
    }

    /// Report every key that was not taken as unknown, with a did-you-mean suggestion.
    pub(crate) fn finish(self, d: &mut Decoder<'_>) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = match did_you_mean(&entry.key, self.known) {
                Some(m) => format!("; did you mean `{m}`?"),
                None => format!("; known fields here: {}", self.known.join(", ")),
            };
            d.error_at(
                &self.path.field(&entry.key),
                entry.key_span.as_ref().or(entry.value.span.as_ref()),
                format!("unknown field{hint}"),
            );
        }
    }
}

/// The closest candidate by Jaro-Winkler similarity, if any is close enough.
pub(crate) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(input, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
