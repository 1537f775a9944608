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

pub use rules::FragmentScope;

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

/// Which directive names a source of fragments may emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPolicy {
    allowed: BTreeSet<String>,
}

impl FragmentPolicy {
    /// A policy allowing exactly `names`. A name that can never be allowed (`include`,
    /// `load_module`, `*lua*` …) or is not a directive name is an error.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, FragmentError> {
        let mut allowed = BTreeSet::new();
        for n in names {
            let n = n.as_ref();
            check_name(n)?;
            if let Some(why) = rules::never_allowed(n) {
                return Err(FragmentError::Forbidden { name: n.to_owned(), reason: format!(": {why}") });
            }
            allowed.insert(n.to_owned());
        }
        Ok(Self { allowed })
    }

    /// The [`DEFAULT_ALLOWED`] policy.
    pub fn default_set() -> Self {
        Self { allowed: DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect() }
    }

    /// Allowed names, sorted.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    fn check(
        &self,
        d: &Directive,
        scope: &FragmentScope,
        depth: usize,
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
        rules::check_args(&d.name, &d.args, scope)?;
        let takes_block = BLOCK_DIRECTIVES.contains(&d.name.as_str());
        match (&d.block, takes_block) {
            (Some(_), false) => Err(FragmentError::Structure(format!("{:?} cannot have a block", d.name))),
            (None, true) => Err(FragmentError::Structure(format!("{:?} needs a block {{ … }}", d.name))),
            (Some(inner), true) => inner.iter().try_for_each(|c| self.check(c, scope, depth + 1, count)),
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
            policy.check(d, scope, 0, &mut count)?;
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
mod tests {
    use super::*;

    fn p() -> FragmentPolicy {
        FragmentPolicy::default_set()
    }

    fn scope() -> FragmentScope {
        FragmentScope::with_log_dir(&crate::value::RemotePath::parse("/var/log/nginx").unwrap())
    }

    #[test]
    fn canonical_output_requotes_and_indents() {
        let f = Fragment::parse(
            "# comment\nadd_header X-A 'a b' always;\nlocation /x {\n return 302 https://example.com/;\n}",
            &p(),
            &scope(),
        )
        .unwrap();
        assert_eq!(
            f.to_nginx(0),
            "add_header X-A \"a b\" always;\nlocation /x {\n    return 302 https://example.com/;\n}\n"
        );
        // Round trip: our output parses to the same tree.
        assert_eq!(Fragment::parse(&f.to_nginx(2), &p(), &scope()).unwrap(), f);
    }

    #[test]
    fn hostile_fragments_are_refused_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("include /etc/shadow;", "\"include\" is not allowed: it can never"),
            ("content_by_lua_block { return 1; }", "never be allowed"),
            ("add_header X $request_uri;", "'$'"),
            ("add_header X \"a\\\"b\";", "backslash"),
            ("return 200 \"a\nb\";", "newline inside"),
            ("add_header X y", "missing its ';'"),
            ("location / { return 200;", "missing '}'"),
            ("}", "unexpected '}'"),
            ("proxy_pass http://evil;", "allow_directives"),
            ("add_header X Y { }", "cannot have a block"),
            ("location /a;", "needs a block"),
            ("location /a { location /b { location /c { location /d { location /e { return 1; } } } } }", "deeper"),
            ("ADD_HEADER X Y;", "not a directive name"),
            ("add_header X \u{7};", "control character"),
        ];
        for (text, want) in cases {
            let err = Fragment::parse(text, &p(), &scope()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let csp = Fragment::parse("add_header CSP \"default-src 'self'\";", &p(), &scope());
        assert_eq!(csp.unwrap().to_nginx(0), "add_header CSP \"default-src 'self'\";\n");
        let semi = Fragment::parse("add_header X \"a;b\";", &p(), &scope()).unwrap();
        assert_eq!(semi.to_nginx(0), "add_header X \"a;b\";\n");
        let many = "add_header X Y;\n".repeat(MAX_DIRECTIVES + 1);
        assert!(Fragment::parse(&many, &p(), &scope()).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn policies_cannot_allow_dangerous_names() {
        for name in ["include", "load_module", "access_by_lua", "perl_modules", "js_import", "worker_processes"] {
            assert!(FragmentPolicy::new([name]).is_err(), "{name}");
        }
        assert!(FragmentPolicy::new(["Bad Name"]).is_err());
        let only = FragmentPolicy::new(["return"]).unwrap();
        assert!(Fragment::parse("return 204;", &only, &scope()).is_ok());
        assert!(Fragment::parse("add_header X Y;", &only, &scope()).is_err());
    }

    #[test]
    fn structured_directives_are_checked_like_text() {
        let d = Directive { name: "include".into(), args: vec!["/etc/passwd".into()], block: None };
        assert!(Fragment::from_directives(vec![d], &p(), &scope()).is_err());
        let ok = Directive {
            name: "location".into(),
            args: vec!["=".into(), "/x".into()],
            block: Some(vec![Directive { name: "return".into(), args: vec!["204".into()], block: None }]),
        };
        let f = Fragment::from_directives(vec![ok], &p(), &scope()).unwrap();
        assert_eq!(f.to_nginx(0), "location = /x {\n    return 204;\n}\n");
    }

    #[test]
    fn directives_that_name_files_are_never_allowed() {
        for name in [
            "error_log",
            "root",
            "alias",
            "ssl_certificate",
            "ssl_dhparam",
            "proxy_ssl_certificate_key",
            "client_body_temp_path",
            "proxy_cache_path",
            "proxy_store",
            "auth_basic_user_file",
            "dav_methods",
            "open_log_file_cache",
            "xslt_stylesheet",
        ] {
            let err = FragmentPolicy::new([name]).unwrap_err().to_string();
            assert!(err.contains("never") || err.contains("names a file"), "{name}: {err}");
            let err = Fragment::parse(&format!("{name} /etc/x;"), &p(), &scope()).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        assert!(!p().allowed().any(|n| n == "access_log"), "access_log is not in the defaults");
    }

    #[test]
    fn access_log_is_off_or_a_log_file_under_the_log_dir() {
        let policy = FragmentPolicy::new(["access_log"]).unwrap();
        let ok = [
            "access_log off;",
            "access_log /var/log/nginx/app.log;",
            "access_log /var/log/nginx/sites/app.log combined buffer=32k flush=5s gzip=4;",
        ];
        for text in ok {
            Fragment::parse(text, &policy, &scope()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let bad = [
            ("access_log /etc/profile.d/zz.sh;", "log directory"),
            ("access_log /var/log/nginx/../../../etc/profile.d/zz.log;", "'..'"),
            ("access_log /var/log/nginxevil/a.log;", "log directory"),
            ("access_log /var/log/nginx/zz.sh;", ".log file"),
            ("access_log /var/log/nginx;", ".log file"),
            ("access_log syslog:server=10.0.0.1 combined;", "only 'off'"),
            ("access_log memory:32m;", "only 'off'"),
            ("access_log relative.log;", "absolute"),
            ("access_log /var/log/nginx/a.log combined if=x;", "not allowed"),
            ("access_log /var/log/nginx/a.log combined buffer=lots;", "not allowed"),
            ("access_log off extra;", "takes 1"),
        ];
        for (text, want) in bad {
            let err = Fragment::parse(text, &policy, &scope()).unwrap_err();
            assert!(matches!(err, FragmentError::Arguments { .. }), "{text}: {err}");
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
        // A scope that knows no log directory allows `off` only.
        assert!(Fragment::parse("access_log off;", &policy, &FragmentScope::none()).is_ok());
        let err = Fragment::parse("access_log /var/log/nginx/a.log;", &policy, &FragmentScope::none()).unwrap_err();
        assert!(err.to_string().contains("may only be 'off'"), "{err}");
        let root = FragmentScope::with_log_dir(&crate::value::RemotePath::parse("/").unwrap());
        assert!(Fragment::parse("access_log /etc/x.log;", &policy, &root).is_err(), "a log dir of / confines nothing");
    }

    #[test]
    fn default_directives_have_argument_rules() {
        let ok = [
            "add_header X-Frame-Options DENY always;",
            "return 301 https://example.com/;",
            "return https://example.com/;",
            "return 204;",
            "error_page 404 500 =200 /oops.html;",
            "error_page 502 @fallback;",
            "location ^~ /static/ { expires 30d; }",
            "location @fallback { return 503; }",
            "default_type text/plain;",
            "expires modified 1h30m;",
            "expires -1;",
            "allow 10.0.0.0/8;",
            "deny all;",
            "allow 2001:db8::/32;",
            "client_max_body_size 10m;",
            "proxy_hide_header X-Powered-By;",
        ];
        for text in ok {
            Fragment::parse(text, &p(), &scope()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let bad = [
            "add_header X-A b sometimes;",
            "add_header \"X A\" b;",
            "add_header X;",
            "return 999 x;",
            "return file:///etc/passwd;",
            "error_page 404 file:///etc/passwd;",
            "error_page 200 /x;",
            "location ~~ /x { return 204; }",
            "location x { return 204; }",
            "default_type text;",
            "expires tomorrow;",
            "allow 10.0.0.0/33;",
            "deny everyone;",
            "client_max_body_size 10q;",
            "proxy_hide_header \"X Y\";",
        ];
        for text in bad {
            let err = Fragment::parse(text, &p(), &scope()).unwrap_err();
            assert!(matches!(err, FragmentError::Arguments { .. }), "{text}: {err}");
        }
    }
}
