//! nginx configuration fragments from outside rpcc's own templates (template plugins):
//! parsed into a directive tree, checked against an operator [`FragmentPolicy`] and the
//! same value rules as built-in output, and written back out by rpcc itself. What goes
//! into a generation is always rpcc's canonical text, never the plugin's bytes.
//!
//! ```
//! use rpcc_core::fragment::{Fragment, FragmentPolicy, FragmentScope};
//! use rpcc_core::value::RemotePath;
//!
//! let policy = FragmentPolicy::new(["add_header", "location", "return", "access_log"]).unwrap();
//! let scope = FragmentScope::with_log_dir(&RemotePath::parse("/var/log/nginx").unwrap());
//! let f = Fragment::parse("location = /ping { return 200 'pong'; }", &policy, &scope).unwrap();
//! assert_eq!(f.to_nginx(1), "    location = /ping {\n        return 200 pong;\n    }\n");
//!
//! let err = Fragment::parse("include /etc/shadow;", &policy, &scope).unwrap_err();
//! assert!(err.to_string().contains("include"));
//! // Files only in the server's log directory, never elsewhere.
//! assert!(Fragment::parse("access_log /var/log/nginx/ping.log;", &policy, &scope).is_ok());
//! assert!(Fragment::parse("access_log /etc/profile.d/zz.sh;", &policy, &scope).is_err());
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;

mod rules;

pub use rules::{ACME_PATH, FragmentScope, RULED};

/// Directives that take a block (`location … { … }`).
const BLOCK_DIRECTIVES: &[&str] = &["location", "limit_except", "if", "types"];

/// Directives a template plugin may use when the operator lists none.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "add_header",
    "return",
    "error_page",
    "location",
    "default_type",
    "expires",
    "allow",
    "deny",
    "client_max_body_size",
    "proxy_hide_header",
];

/// At most this many directives in one fragment.
pub const MAX_DIRECTIVES: usize = 512;
/// At most this deep (a block inside a block inside a block).
pub const MAX_DEPTH: usize = 4;
/// At most this many bytes in one argument.
pub const MAX_ARG_LEN: usize = 4096;

/// Why a fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// Not nginx syntax.
    #[error("fragment is not valid nginx syntax at line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A directive outside the allow-list.
    #[error("directive {name:?} is not allowed{reason}")]
    Forbidden {
        /// The directive.
        name: String,
        /// Why (`: never allowed in plugin output` or the allow-list).
        reason: String,
    },
    /// An argument breaks the value rules.
    #[error("argument {index} of {directive:?} {message}")]
    Argument {
        /// The directive.
        directive: String,
        /// 1-based argument number.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A directive's arguments break its argument rule.
    #[error("arguments of {directive:?} refused: {message}")]
    Arguments {
        /// The directive.
        directive: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Block structure is wrong (a block on a simple directive, a missing block, too
    /// deep, too many directives).
    #[error("{0}")]
    Structure(String),
}

/// One directive: a name, arguments, and for block directives the directives inside.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Directive {
    /// Name, e.g. `add_header`.
    pub name: String,
    /// Arguments as nginx sees them (quotes removed).
    pub args: Vec<String>,
    /// `Some` for a block directive.
    pub block: Option<Vec<Directive>>,
}

/// Which directive names a source of fragments may emit (and which hosts its
/// `proxy_pass` may name beyond the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPolicy {
    allowed: BTreeSet<String>,
    proxy_hosts: BTreeSet<String>,
}

impl FragmentPolicy {
    /// A policy allowing exactly `names`. A name that can never be allowed (`include`,
    /// `load_module`, `*lua*`, `mirror` …), that rpcc has no argument rule for (see
    /// [`RULED`]) or that is not a directive name is an error.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, FragmentError> {
        let mut allowed = BTreeSet::new();
        for n in names {
            let n = n.as_ref();
            check_name(n)?;
            if let Some(why) = rules::never_allowed(n) {
                return Err(FragmentError::Forbidden { name: n.to_owned(), reason: format!(": {why}") });
            }
            if !rules::has_rule(n) {
                return Err(FragmentError::Forbidden { name: n.to_owned(), reason: rules::no_rule_reason() });
            }
            allowed.insert(n.to_owned());
        }
        Ok(Self { allowed, proxy_hosts: BTreeSet::new() })
    }

    /// The [`DEFAULT_ALLOWED`] policy.
    pub fn default_set() -> Self {
        Self { allowed: DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect(), proxy_hosts: BTreeSet::new() }
    }

    /// Also let `proxy_pass` name these hosts (names or addresses, compared in lower
    /// case without a trailing dot), which its rule refuses otherwise: host names, and
    /// link-local or metadata addresses. A host that is not a plain name or address
    /// (empty, or with `/`, `@`, `:` outside brackets, whitespace …) is an error.
    pub fn with_proxy_hosts<S: AsRef<str>>(
        mut self,
        hosts: impl IntoIterator<Item = S>,
    ) -> Result<Self, FragmentError> {
        for h in hosts {
            let h = h.as_ref();
            let norm = h.trim_end_matches('.').to_ascii_lowercase();
            let plain = !norm.is_empty()
                && norm.len() <= 253
                && (norm.parse::<std::net::IpAddr>().is_ok()
                    || norm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
            if !plain {
                return Err(FragmentError::Arguments {
                    directive: "proxy_pass".into(),
                    message: format!("allowed host {h:?} is not a host name or an IP address"),
                });
            }
            self.proxy_hosts.insert(norm);
        }
        Ok(self)
    }

    /// Allowed names, sorted.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    /// Hosts `proxy_pass` may name beyond its rule, sorted.
    pub fn proxy_hosts(&self) -> impl Iterator<Item = &str> {
        self.proxy_hosts.iter().map(String::as_str)
    }

    fn check(
        &self,
        d: &Directive,
        scope: &FragmentScope,
        depth: usize,
        in_location: bool,
        count: &mut usize,
    ) -> Result<(), FragmentError> {
        *count += 1;
        if *count > MAX_DIRECTIVES {
            return Err(FragmentError::Structure(format!("more than {MAX_DIRECTIVES} directives")));
        }
        if depth > MAX_DEPTH {
            return Err(FragmentError::Structure(format!("blocks nested deeper than {MAX_DEPTH}")));
        }
        check_name(&d.name)?;
        if let Some(why) = rules::never_allowed(&d.name) {
            return Err(FragmentError::Forbidden { name: d.name.clone(), reason: format!(": {why}") });
        }
        if !self.allowed.contains(&d.name) {
            let list = self.allowed.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            return Err(FragmentError::Forbidden {
                name: d.name.clone(),
                reason: format!(" by this plugin's allow_directives (allowed: {list})"),
            });
        }
        for (i, a) in d.args.iter().enumerate() {
            check_arg(a).map_err(|message| FragmentError::Argument {
                directive: d.name.clone(),
                index: i + 1,
                message,
            })?;
        }
        rules::check_args(&d.name, &d.args, &rules::Ctx { scope, proxy_hosts: &self.proxy_hosts })?;
        let is_location = d.name == "location";
        if is_location && in_location {
            return Err(FragmentError::Structure(format!(
                "location {} inside a location is not allowed in plugin output: nested locations are tried \
                 before rpcc's dotfile deny",
                d.args.join(" ")
            )));
        }
        let takes_block = BLOCK_DIRECTIVES.contains(&d.name.as_str());
        match (&d.block, takes_block) {
            (Some(_), false) => Err(FragmentError::Structure(format!("{:?} cannot have a block", d.name))),
            (None, true) => Err(FragmentError::Structure(format!("{:?} needs a block {{ … }}", d.name))),
            (Some(inner), true) => {
                inner.iter().try_for_each(|c| self.check(c, scope, depth + 1, in_location || is_location, count))
            }
            (None, false) => Ok(()),
        }
    }
}

fn check_name(name: &str) -> Result<(), FragmentError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(FragmentError::Forbidden {
            name: name.to_owned(),
            reason: ": not a directive name (lower-case letters, digits and _)".into(),
        })
    }
}

/// The value rules of built-in output: no variables (`$`), quotes, backslashes,
/// braces… that could end or change a directive; no control characters. (`;` is fine:
/// rpcc quotes such arguments.)
fn check_arg(a: &str) -> Result<(), String> {
    if a.len() > MAX_ARG_LEN {
        return Err(format!("is {} bytes long (at most {MAX_ARG_LEN})", a.len()));
    }
    if let Some(c) = a.chars().find(|c| matches!(c, '$' | '"' | '\\' | '{' | '}' | '`') || c.is_control()) {
        let what = match c {
            '$' => "'$' (nginx variables are not allowed in plugin output)".to_owned(),
            c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
            c => format!("{c:?}"),
        };
        return Err(format!("contains {what}"));
    }
    Ok(())
}

/// A checked fragment: directives that passed a [`FragmentPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Fragment {
    directives: Vec<Directive>,
}

impl Fragment {
    /// Parse nginx text and check it against `policy` and the argument rules in `scope`.
    pub fn parse(text: &str, policy: &FragmentPolicy, scope: &FragmentScope) -> Result<Self, FragmentError> {
        let directives = Parser::new(text).parse_all()?;
        Self::from_directives(directives, policy, scope)
    }

    /// Check a directive tree against `policy` and the argument rules in `scope`.
    pub fn from_directives(
        directives: Vec<Directive>,
        policy: &FragmentPolicy,
        scope: &FragmentScope,
    ) -> Result<Self, FragmentError> {
        let mut count = 0;
        for d in &directives {
            policy.check(d, scope, 0, false, &mut count)?;
        }
        Ok(Self { directives })
    }

    /// The directives.
    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }

    /// True when there is nothing to insert.
    pub fn is_empty(&self) -> bool {
        self.directives.is_empty()
    }

    /// rpcc's canonical text, indented by `level` × 4 spaces, one directive per line.
    pub fn to_nginx(&self, level: usize) -> String {
        let mut out = String::new();
        write_directives(&mut out, &self.directives, level);
        out
    }

    /// Append another fragment's directives.
    pub fn extend(&mut self, other: Fragment) {
        self.directives.extend(other.directives);
    }

    /// Check that this fragment may stand at the server level of a site's server block
    /// (an `InsertionPoint::Server` fragment or a replaced server body): no `return`,
    /// which would answer requests before nginx chooses a location, rpcc's reserved
    /// ones included.
    pub fn check_server_level(&self) -> Result<(), FragmentError> {
        self.directives.iter().try_for_each(rules::check_server_level)
    }

    /// Check that this fragment may stand inside a location (the site's `location /`):
    /// it opens no location of its own.
    pub fn check_location_level(&self) -> Result<(), FragmentError> {
        match self.directives.iter().find(|d| d.name == "location") {
            Some(d) => Err(FragmentError::Structure(format!(
                "location {} is not allowed inside the site's main location",
                d.args.join(" ")
            ))),
            None => Ok(()),
        }
    }
}

fn write_directives(out: &mut String, ds: &[Directive], level: usize) {
    for d in ds {
        out.push_str(&"    ".repeat(level));
        out.push_str(&d.name);
        for a in &d.args {
            out.push(' ');
            let plain = !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || matches!(c, '#' | ';' | '\''));
            if plain {
                out.push_str(a);
            } else {
                let _ = write!(out, "\"{a}\"");
            }
        }
        match &d.block {
            Some(inner) => {
                out.push_str(" {\n");
                write_directives(out, inner, level + 1);
                out.push_str(&"    ".repeat(level));
                out.push_str("}\n");
            }
            None => out.push_str(";\n"),
        }
    }
}

/// A small nginx tokenizer/parser: words, quoted strings, `;`, `{`, `}`, comments.
struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    line: usize,
}

enum Token {
    Word(String),
    Semi,
    Open,
    Close,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { chars: text.char_indices().peekable(), line: 1 }
    }

    fn err(&self, message: impl Into<String>) -> FragmentError {
        FragmentError::Syntax { line: self.line, message: message.into() }
    }

    fn next_token(&mut self) -> Result<Option<Token>, FragmentError> {
        loop {
            let Some(&(_, c)) = self.chars.peek() else { return Ok(None) };
            match c {
                '\n' => {
                    self.line += 1;
                    self.chars.next();
                }
                c if c.is_whitespace() => {
                    self.chars.next();
                }
                '#' => {
                    while let Some(&(_, c)) = self.chars.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.chars.next();
                    }
                }
                ';' => {
                    self.chars.next();
                    return Ok(Some(Token::Semi));
                }
                '{' => {
                    self.chars.next();
                    return Ok(Some(Token::Open));
                }
                '}' => {
                    self.chars.next();
                    return Ok(Some(Token::Close));
                }
                '"' | '\'' => {
                    self.chars.next();
                    let mut s = String::new();
                    loop {
                        match self.chars.next() {
                            None => return Err(self.err("unterminated quoted string")),
                            Some((_, q)) if q == c => break,
                            Some((_, '\\')) => return Err(self.err("backslash escapes are not allowed")),
                            Some((_, '\n')) => return Err(self.err("newline inside a quoted string")),
                            Some((_, ch)) => s.push(ch),
                        }
                    }
                    return Ok(Some(Token::Word(s)));
                }
                _ => {
                    let mut s = String::new();
                    while let Some(&(_, ch)) = self.chars.peek() {
                        if ch.is_whitespace() || matches!(ch, ';' | '{' | '}' | '"' | '\'' | '#') {
                            break;
                        }
                        if ch == '\\' {
                            return Err(self.err("backslash escapes are not allowed"));
                        }
                        s.push(ch);
                        self.chars.next();
                    }
                    return Ok(Some(Token::Word(s)));
                }
            }
        }
    }

    fn parse_all(&mut self) -> Result<Vec<Directive>, FragmentError> {
        let out = self.parse_block(0)?;
        Ok(out)
    }

    fn parse_block(&mut self, depth: usize) -> Result<Vec<Directive>, FragmentError> {
        if depth > MAX_DEPTH {
            return Err(FragmentError::Structure(format!("blocks nested deeper than {MAX_DEPTH}")));
        }
        let mut out = Vec::new();
        let mut words: Vec<String> = Vec::new();
        loop {
            match self.next_token()? {
                None if depth == 0 && words.is_empty() => return Ok(out),
                None if words.is_empty() => return Err(self.err("missing '}'")),
                None => return Err(self.err(format!("directive {:?} is missing its ';'", words[0]))),
                Some(Token::Word(w)) => {
                    words.push(w);
                    if out.len() + words.len() > MAX_DIRECTIVES * 8 {
                        return Err(FragmentError::Structure("fragment too large".into()));
                    }
                }
                Some(Token::Semi) => {
                    let mut it = std::mem::take(&mut words).into_iter();
                    let name = it.next().ok_or_else(|| self.err("';' without a directive"))?;
                    out.push(Directive { name, args: it.collect(), block: None });
                }
                Some(Token::Open) => {
                    let mut it = std::mem::take(&mut words).into_iter();
                    let name = it.next().ok_or_else(|| self.err("'{' without a directive"))?;
                    let args = it.collect();
                    let inner = self.parse_block(depth + 1)?;
                    out.push(Directive { name, args, block: Some(inner) });
                }
                Some(Token::Close) if depth > 0 && words.is_empty() => return Ok(out),
                Some(Token::Close) if depth > 0 => {
                    return Err(self.err(format!("directive {:?} is missing its ';'", words[0])));
                }
                Some(Token::Close) => return Err(self.err("unexpected '}'")),
            }
            if out.len() > MAX_DIRECTIVES {
                return Err(FragmentError::Structure(format!("more than {MAX_DIRECTIVES} directives")));
            }
        }
    }
}

/// What template extensions add to one site on one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct SiteFragments {
    /// Directives at the level of the site's main `server` block.
    pub server: Fragment,
    /// Directives at the top of the site's `location /`.
    pub main_location: Fragment,
    /// Replaces the body of the main server block (rpcc keeps `listen`, `server_name`
    /// and TLS directives).
    pub server_body: Option<Fragment>,
}

impl SiteFragments {
    /// True when nothing is added or replaced.
    pub fn is_empty(&self) -> bool {
        self.server.is_empty() && self.main_location.is_empty() && self.server_body.is_none()
    }

    /// Check that each part may stand where it goes ([`Fragment::check_server_level`]
    /// for `server` and `server_body`, [`Fragment::check_location_level`] for
    /// `main_location`).
    pub fn check_placement(&self) -> Result<(), FragmentError> {
        self.server.check_server_level()?;
        if let Some(body) = &self.server_body {
            body.check_server_level()?;
        }
        self.main_location.check_location_level()
    }
}

/// Why a [`SiteExtension`] refused a site: the extension's own error (its message names
/// the plugin and the reason), shared so a render can report it from several threads.
pub type ExtensionError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Something that adds checked fragments to sites at render time (the WASM plugin host
/// implements it). Called once per site and server, possibly from several threads.
pub trait SiteExtension: Send + Sync + std::fmt::Debug {
    /// The fragments for `site` on `server`, or why the render must fail.
    fn site_fragments(
        &self,
        inventory: &crate::model::Inventory,
        server: &crate::model::Server,
        site: &crate::model::Site,
    ) -> Result<SiteFragments, ExtensionError>;
}

#[cfg(test)]
mod tests;
