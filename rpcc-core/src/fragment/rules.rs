//! What plugin output may never say, and what the arguments of the directives it may
//! use must look like.
//!
//! nginx's master runs as root and opens every file a configuration names, already
//! during `nginx -t`: a fragment that names a path can make it create, append to or
//! serve any file on the server (`access_log /etc/profile.d/x.sh;` and request headers
//! land in a root shell's start-up). So directives that name files are never allowed,
//! except `access_log`, which is confined to the server's own log directory. Every
//! directive a policy can allow has an argument rule of its own: a directive rpcc has no
//! rule for cannot be allowed at all (it passed the general value rules only, so
//! `proxy_pass http://169.254.169.254/` or `mirror /x` went through).
//!
//! # Reserved locations
//!
//! rpcc answers `/.well-known/acme-challenge/` (HTTP-01 tokens) and denies dotfiles
//! (`location ~ /\.(?!well-known/)`) itself; a plugin must not be able to take either.
//! nginx picks an exact (`=`) match first, then the longest prefix; a `^~` prefix stops
//! there, otherwise the regex locations are tried in order (nested ones of the chosen
//! prefix first) and the first match wins. So a plugin's `location`:
//!
//! - `= P` or a plain prefix `P`: refused when `P` starts with
//!   `/.well-known/acme-challenge` (ASCII case ignored) or is a dotfile path (contains
//!   `/.` not followed by `well-known/`). A shorter prefix such as `/` or `/.well-known/`
//!   loses to rpcc's longer `^~` one.
//! - `^~ P`: always refused. It would skip every regex location for the paths under it,
//!   rpcc's dotfile deny included (`^~ /app/` would serve `/app/.env`).
//! - `~ R` / `~* R`: refused unless `R` is `^` followed by a literal `/x…` (at least one
//!   character after the `/` before any regex metacharacter, that character not made
//!   optional by `?`, `*` or `{`) and has no top-level `|` alternation. Such a regex can
//!   only match paths starting with `/x`, and `x` is never `.` (a metacharacter; `\` is
//!   refused everywhere), so it can match nothing under `/.well-known/` nor `/.anything`.
//!   Dotfiles deeper down (`^/app/.*`) stay rpcc's because rpcc writes its dotfile
//!   regex before any plugin content.
//! - `@name`: refused when the name starts with `rpcc` (rpcc's own named locations).
//! - a `location` inside another location is refused (nested regexes are tried before
//!   rpcc's dotfile deny).
//!
//! At the server level (not inside a location) a plugin may not use `return`: rewrite
//! directives there run before nginx picks a location, so `return 302 https://evil/`
//! would answer every ACME challenge with a redirect the CA follows
//! ([`check_server_level`]).

use std::net::IpAddr;

use super::FragmentError;
use crate::value::RemotePath;

/// Directive names no policy can allow: they read or write files, load code, run
/// scripts, change the process or open contexts that only rpcc writes.
const NEVER_ALLOWED: &[&str] = &[
    "include",
    "load_module",
    "env",
    "user",
    "pid",
    "daemon",
    "master_process",
    "working_directory",
    "lock_file",
    "ssl_engine",
    "thread_pool",
    "server",
    "http",
    "events",
    "stream",
    "upstream",
    "map",
    "geo",
    "split_clients",
    // Name files the root master opens, creates or serves.
    "error_log",
    "root",
    "alias",
    "proxy_store",
    "fastcgi_store",
    "uwsgi_store",
    "scgi_store",
    "dav_methods",
    "create_full_put_path",
    "client_body_in_file_only",
    "open_log_file_cache",
    "log_format",
    "charset_map",
    "xml_entities",
];

/// Directives refused with a reason of their own: they send requests elsewhere or make
/// nginx fetch or include content the plugin chooses.
const NEVER_ALLOWED_BECAUSE: &[(&str, &str)] = &[
    ("mirror", "it copies every request (cookies, body) to a URI the plugin chooses"),
    ("mirror_request_body", "it belongs to mirror, which is never allowed"),
    ("auth_request", "it hands every request to a subrequest the plugin chooses"),
    ("auth_request_set", "it belongs to auth_request, which is never allowed"),
    ("resolver", "it changes the DNS server nginx trusts for every name it resolves"),
    ("ssi", "it makes nginx execute <!--# include --> commands found in responses"),
    ("rewrite", "it rewrites URIs before rpcc's reserved locations are chosen"),
    ("set", "it sets variables that rpcc's own directives read"),
];

/// Reserved for rpcc: the ACME HTTP-01 webroot.
pub const ACME_PATH: &str = "/.well-known/acme-challenge/";

/// Why `name` can never be allowed in plugin output, if it cannot.
pub(super) fn never_allowed(name: &str) -> Option<&'static str> {
    if let Some((_, why)) = NEVER_ALLOWED_BECAUSE.iter().find(|(n, _)| *n == name) {
        return Some(why);
    }
    if name.starts_with("ssi_") {
        return Some("it belongs to ssi, which is never allowed");
    }
    if name.contains("lua")
        || name.starts_with("perl")
        || name.starts_with("js_")
        || name.starts_with("njs")
        || name.starts_with("worker_")
    {
        return Some("it can never be allowed in plugin output: it runs code or changes the nginx process");
    }
    let names_a_file = name.starts_with("ssl_")
        || name.contains("_ssl_")
        || name.ends_with("_temp_path")
        || name.ends_with("_cache_path")
        || name.ends_with("_file")
        || name.starts_with("geoip")
        || name.starts_with("xslt_");
    if names_a_file {
        return Some("it can never be allowed in plugin output: it names a file that nginx opens as root");
    }
    NEVER_ALLOWED.contains(&name).then_some("it can never be allowed in plugin output")
}

/// Where a fragment will be used: the facts its argument rules need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentScope {
    log_dir: Option<String>,
}

impl FragmentScope {
    /// A scope that knows no server: `access_log` may only be `off`.
    pub fn none() -> Self {
        Self::default()
    }

    /// The scope of fragments rendered for `server` (its nginx log directory).
    pub fn for_server(server: &crate::model::Server) -> Self {
        Self::with_log_dir(&server.nginx.log_dir)
    }

    /// A scope whose `access_log` files must live directly or deeper under `log_dir`
    /// (not `/`).
    pub fn with_log_dir(log_dir: &RemotePath) -> Self {
        let dir = log_dir.as_str();
        Self { log_dir: (dir != "/").then(|| dir.to_owned()) }
    }
}

/// What an argument rule may look at: where the fragment goes and what the operator
/// allowed beyond the rules.
pub(super) struct Ctx<'a> {
    pub(super) scope: &'a FragmentScope,
    /// Hosts (lower case, no trailing dot) `proxy_pass` may name beyond the rule.
    pub(super) proxy_hosts: &'a std::collections::BTreeSet<String>,
}

type Rule = fn(&[String], &Ctx<'_>) -> Result<(), String>;

/// Directives that have an argument rule: the only ones a policy can allow.
pub const RULED: &[&str] = &[
    "access_log",
    "add_header",
    "allow",
    "client_max_body_size",
    "default_type",
    "deny",
    "error_page",
    "expires",
    "internal",
    "location",
    "proxy_hide_header",
    "proxy_pass",
    "return",
    "server_tokens",
    "try_files",
];

/// The argument rule of a directive, if it has one (a directive without one cannot be
/// allowed).
fn rule(name: &str) -> Option<Rule> {
    Some(match name {
        "access_log" => |a, c| access_log(a, c.scope),
        "add_header" => add_header,
        "proxy_hide_header" => |a, _| count(a, 1, 1).and_then(|()| header_name(&a[0])),
        "return" => return_rule,
        "error_page" => error_page,
        "location" => location,
        "default_type" => |a, _| count(a, 1, 1).and_then(|()| mime_type(&a[0])),
        "expires" => expires,
        "allow" | "deny" => |a, _| count(a, 1, 1).and_then(|()| address(&a[0])),
        "client_max_body_size" => |a, _| count(a, 1, 1).and_then(|()| size(&a[0])),
        "internal" => |a, _| count(a, 0, 0),
        "server_tokens" => |a, _| match a {
            [v] if v == "on" || v == "off" => Ok(()),
            _ => Err("takes one argument, on or off".into()),
        },
        "proxy_pass" => |a, c| count(a, 1, 1).and_then(|()| proxy_pass(&a[0], c.proxy_hosts)),
        "try_files" => try_files,
        _ => return None,
    })
}

/// True when rpcc has an argument rule for `name` (so a policy can allow it).
pub(super) fn has_rule(name: &str) -> bool {
    rule(name).is_some()
}

/// Check `args` of `directive` against its rule; a directive without one is refused.
pub(super) fn check_args(directive: &str, args: &[String], ctx: &Ctx<'_>) -> Result<(), FragmentError> {
    match rule(directive) {
        None => Err(FragmentError::Forbidden { name: directive.to_owned(), reason: no_rule_reason() }),
        Some(rule) => {
            rule(args, ctx).map_err(|message| FragmentError::Arguments { directive: directive.to_owned(), message })
        }
    }
}

/// Why a directive without an argument rule cannot be allowed, and what can.
pub(super) fn no_rule_reason() -> String {
    format!(
        ": rpcc has no argument rule for it, so it cannot be allowed (directives with a rule: {})",
        RULED.join(", ")
    )
}

/// Server-level directives that would run before nginx chooses a location (and so
/// before rpcc's reserved ones): refused at the server level of plugin output.
pub(super) fn check_server_level(d: &super::Directive) -> Result<(), FragmentError> {
    if d.name == "return" {
        return Err(FragmentError::Structure(format!(
            "{:?} is not allowed at the server level of plugin output: it would answer every request before a \
             location is chosen, rpcc's /.well-known/acme-challenge/ included (put it inside a location)",
            d.name
        )));
    }
    Ok(())
}

fn count(args: &[String], min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&args.len()) {
        return Ok(());
    }
    let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
    Err(format!("takes {want} arguments, not {}", args.len()))
}

fn access_log(args: &[String], scope: &FragmentScope) -> Result<(), String> {
    let first = args.first().map(String::as_str).unwrap_or_default();
    if first == "off" {
        return count(args, 1, 1);
    }
    let Some(dir) = &scope.log_dir else {
        return Err("may only be 'off' here (no log directory is known for this server)".into());
    };
    if first.starts_with("syslog:") || first.starts_with("memory:") {
        return Err(format!("{first:?}: only 'off' or a file under {dir}/ is allowed"));
    }
    let path = RemotePath::parse(first).map_err(|e| format!("{first:?} {e}"))?;
    let confined = path.as_str().strip_prefix(dir.as_str()).is_some_and(|rest| rest.starts_with('/'));
    if !confined || !path.as_str().ends_with(".log") {
        return Err(format!("{first:?} is not a .log file under the server's log directory {dir}/"));
    }
    count(args, 1, 5)?;
    for (i, a) in args.iter().enumerate().skip(1) {
        let ok = if i == 1 && !a.contains('=') && a != "gzip" {
            !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        } else if let Some(v) = a.strip_prefix("buffer=") {
            size(v).is_ok()
        } else if let Some(v) = a.strip_prefix("flush=") {
            time(v)
        } else if let Some(v) = a.strip_prefix("gzip=") {
            matches!(v, "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9")
        } else {
            a == "gzip"
        };
        if !ok {
            return Err(format!(
                "{a:?} is not allowed (after the path: a log format name, buffer=SIZE, flush=TIME, gzip[=1-9])"
            ));
        }
    }
    Ok(())
}

fn add_header(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 2, 3)?;
    header_name(&args[0])?;
    match args.get(2).map(String::as_str) {
        None | Some("always") => Ok(()),
        Some(other) => Err(format!("third argument {other:?} may only be 'always'")),
    }
}

fn header_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a header name (letters, digits, - and _)")) }
}

fn status(code: &str, range: std::ops::RangeInclusive<u16>) -> bool {
    code.len() == 3 && code.parse::<u16>().is_ok_and(|c| range.contains(&c))
}

fn url(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://")
}

fn return_rule(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 1, 2)?;
    let first = args[0].as_str();
    if args.len() == 1 && url(first) {
        return Ok(());
    }
    if !status(first, 100..=599) {
        return Err(format!("{first:?} is not a status code (100-599) or an http(s):// URL"));
    }
    match args.get(1) {
        Some(to) if matches!(first, "301" | "302" | "303" | "307" | "308") && !(url(to) || to.starts_with('/')) => {
            Err(format!("redirect target {to:?} is not an http(s):// URL or a /path"))
        }
        Some(to) if to.starts_with('/') && matches!(first, "301" | "302" | "303" | "307" | "308") => {
            no_dot_segments(to)
        }
        _ => Ok(()),
    }
}

fn error_page(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 2, 16)?;
    let (target, codes) = args.split_last().ok_or("needs codes and a target")?;
    let (codes, answer) = match codes.split_last() {
        Some((last, rest)) if last.starts_with('=') => (rest, Some(last)),
        _ => (codes, None),
    };
    if codes.is_empty() {
        return Err("needs at least one status code".into());
    }
    if let Some(c) = codes.iter().find(|c| !status(c, 300..=599)) {
        return Err(format!("{c:?} is not a status code (300-599)"));
    }
    if let Some(a) = answer
        && a.len() > 1
        && !status(&a[1..], 100..=599)
    {
        return Err(format!("{a:?} is not '=' or '=CODE'"));
    }
    if !(target.starts_with('/') || target.starts_with('@') || url(target)) {
        return Err(format!("{target:?} is not a /path, a @name or an http(s):// URL"));
    }
    if target.starts_with('/') {
        no_dot_segments(target)?;
    }
    Ok(())
}

fn location(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 1, 2)?;
    let (modifier, path) = match args {
        [m, p] => (Some(m.as_str()), p.as_str()),
        [p] => (None, p.as_str()),
        _ => return Err("needs a path".into()),
    };
    match modifier {
        None if path.starts_with('@') => named_location(path),
        None | Some("=") if path.starts_with('/') => literal_location(path),
        Some("^~") => Err(format!(
            "'^~ {path}' is not allowed in plugin output: ^~ skips regex locations, rpcc's dotfile deny \
             included (use a plain prefix location)"
        )),
        Some("~" | "~*") => regex_location(path),
        Some(m) if !matches!(m, "=" | "^~" | "~" | "~*") => Err(format!("modifier {m:?} is not =, ~ or ~*")),
        _ => Err(format!("{path:?} is not a /path or a @name")),
    }
}

fn named_location(path: &str) -> Result<(), String> {
    let name = &path[1..];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("{path:?} is not a @name (letters, digits, _ and -)"));
    }
    if name.to_ascii_lowercase().starts_with("rpcc") {
        return Err(format!("{path:?} is reserved: named locations starting with @rpcc are rpcc's own"));
    }
    Ok(())
}

/// True when `path` starts with rpcc's ACME path (without its last `/`, ASCII case
/// ignored).
fn under_acme(path: &str) -> bool {
    let acme = ACME_PATH.trim_end_matches('/');
    path.get(..acme.len()).is_some_and(|p| p.eq_ignore_ascii_case(acme))
}

/// True when rpcc's dotfile deny (`/\.(?!well-known/)`) matches somewhere in `path`.
fn dotfile(path: &str) -> bool {
    path.match_indices("/.").any(|(i, _)| !path[i + 2..].starts_with("well-known/"))
}

fn literal_location(path: &str) -> Result<(), String> {
    if under_acme(path) {
        return Err(format!("{path:?} is reserved: rpcc answers {ACME_PATH} (ACME HTTP-01 challenges) itself"));
    }
    if dotfile(path) {
        return Err(format!(
            "{path:?} is reserved: rpcc denies dotfiles (paths with a /. segment other than /.well-known/)"
        ));
    }
    no_dot_segments(path)
}

/// The rule for plugin regex locations (see the module documentation).
fn regex_location(re: &str) -> Result<(), String> {
    const META: &[char] = &['.', '^', '$', '|', '?', '*', '+', '(', ')', '[', ']', '{', '}', '\\'];
    let allowed = "allowed: ^/ then at least one literal character, e.g. ^/assets/ or ^/api/v[0-9]+/";
    let Some(rest) = re.strip_prefix("^/") else {
        return Err(format!("regex {re:?} does not start with ^/ ({allowed})"));
    };
    let literal: Vec<char> = rest.chars().take_while(|c| !META.contains(c)).collect();
    let optional_last = rest.chars().nth(literal.len()).is_some_and(|c| matches!(c, '?' | '*' | '{'));
    if literal.len() <= usize::from(optional_last) {
        return Err(format!(
            "regex {re:?} could match rpcc's reserved paths ({ACME_PATH}, dotfiles): it has no literal \
             character after ^/ ({allowed})"
        ));
    }
    // A top-level alternation ends the anchor: ^/a|.* matches anything. (No `\` can
    // appear, so brackets and parentheses mean what they look like.)
    let chars: Vec<char> = re.chars().collect();
    let (mut depth, mut i) = (0usize, 0);
    while i < chars.len() {
        match chars[i] {
            '[' => {
                // A class: a leading ^ and then a leading ] are literal; it ends at the next ].
                let mut j = i + 1;
                if chars.get(j) == Some(&'^') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '[' && matches!(chars.get(j + 1), Some(':' | '.' | '=')) {
                        return Err(format!("regex {re:?}: POSIX classes ([:name:]) are not allowed in plugin output"));
                    }
                    j += 1;
                }
                if j == chars.len() {
                    return Err(format!("regex {re:?} has an unclosed ["));
                }
                i = j;
            }
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => {
                return Err(format!("regex {re:?} has a top-level | (it would not stay anchored at ^/; {allowed})"));
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A URI path must not have `.` or `..` segments.
fn no_dot_segments(path: &str) -> Result<(), String> {
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("{path:?} has a '.' or '..' segment (not allowed)"));
    }
    Ok(())
}

/// `try_files`: files relative to the location's root (a `/path` without `.`/`..`
/// segments), then a last `/uri`, `@name` or `=CODE`.
fn try_files(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 2, 16)?;
    let (last, files) = args.split_last().ok_or("needs files and a fallback")?;
    for f in files {
        if !f.starts_with('/') {
            return Err(format!("{f:?} is not a /path (files are looked up under the location's root)"));
        }
        no_dot_segments(f)?;
    }
    if let Some(code) = last.strip_prefix('=') {
        return if status(code, 200..=599) { Ok(()) } else { Err(format!("{last:?} is not =CODE (200-599)")) };
    }
    if last.starts_with('@') {
        return named_target(last);
    }
    if !last.starts_with('/') {
        return Err(format!("fallback {last:?} is not a /uri, a @name or =CODE"));
    }
    no_dot_segments(last)
}

fn named_target(name: &str) -> Result<(), String> {
    let ok = name.len() > 1 && name[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a @name (letters, digits, _ and -)")) }
}

/// Host names of cloud instance-metadata services.
const METADATA_NAMES: &[&str] =
    &["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"];

/// `proxy_pass`: `http(s)://HOST[:PORT][/path]`. HOST is an IP address that is not
/// link-local or a metadata service (169.254.0.0/16, fe80::/10, fd00:ec2::254,
/// 100.100.100.200, also inside IPv4-mapped or NAT64 IPv6), or a host the operator
/// listed in the plugin's `allow_proxy_hosts`. Names need that listing: nginx resolves
/// them when it loads the config, where rpcc cannot see the address
/// (`169.254.169.254.nip.io`); no `unix:` sockets, no userinfo, no `.`/`..` segments.
fn proxy_pass(target: &str, listed: &std::collections::BTreeSet<String>) -> Result<(), String> {
    let allowed = "allowed: http(s)://ADDRESS[:PORT][/path] with an IP address that is not link-local or \
                   cloud metadata, or a host listed in the plugin's allow_proxy_hosts";
    let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) else {
        return Err(format!("{target:?} is not an http(s):// URL ({allowed})"));
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.contains('@') || authority.starts_with("unix:") {
        return Err(format!("{target:?}: no unix: sockets or user@ parts ({allowed})"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("{target:?}: unclosed [ in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!("{target:?}: port {p:?} is not 1-65535"));
    }
    no_dot_segments(path)?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{target:?} has no host ({allowed})"));
    }
    if listed.contains(&host) {
        return Ok(());
    }
    let ip: IpAddr = if authority.starts_with('[') {
        host.parse().map_err(|_| format!("{target:?}: {host:?} is not an IPv6 address"))?
    } else {
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(v4) => IpAddr::V4(v4),
            // inet_aton also reads 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518.
            Err(_)
                if host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit() || b == b'x')) =>
            {
                return Err(format!("{target:?}: {host:?} is not an IPv4 address in dotted-quad form ({allowed})"));
            }
            Err(_) if METADATA_NAMES.contains(&host.as_str()) => {
                return Err(format!("{target:?}: {host:?} is a cloud metadata service ({allowed})"));
            }
            Err(_) => {
                return Err(format!(
                    "{target:?}: the name {host:?} is not in the plugin's allow_proxy_hosts (nginx resolves \
                     names itself, so rpcc only accepts names the operator listed; {allowed})"
                ));
            }
        }
    };
    if let Some(why) = metadata_or_link_local(ip) {
        return Err(format!("{target:?}: {ip} is {why} ({allowed})"));
    }
    Ok(())
}

fn metadata_or_link_local(ip: IpAddr) -> Option<&'static str> {
    let v4 = |a: std::net::Ipv4Addr| {
        if a.is_link_local() {
            Some("link-local (169.254.0.0/16, where cloud metadata services answer)")
        } else if a == std::net::Ipv4Addr::new(100, 100, 100, 200) {
            Some("a cloud metadata service")
        } else if a.is_unspecified() || a.is_broadcast() {
            Some("not a host address")
        } else {
            None
        }
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            if a == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("the EC2 instance-metadata service")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local (fe80::/10)")
            } else if a.is_unspecified() {
                Some("not a host address")
            } else if let Some(inner) = a.to_ipv4_mapped() {
                v4(inner)
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0, 0] {
                // NAT64 (64:ff9b::/96) and the old IPv4-compatible form carry an IPv4 address.
                v4(std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
            } else {
                None
            }
        }
    }
}

fn mime_type(t: &str) -> Result<(), String> {
    let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    match t.split_once('/') {
        Some((a, b)) if part(a) && part(b) => Ok(()),
        _ => Err(format!("{t:?} is not a MIME type (type/subtype)")),
    }
}

/// nginx time: `30s`, `1h30m`, `-1`, `2d` (units ms s m h d w M y).
fn time(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    let mut digits = false;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        digits = true;
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h", "d", "w", "M", "y"].into_iter().find(|u| rest.starts_with(u));
        rest = &rest[unit.map_or(0, str::len)..];
    }
    digits
}

fn expires(args: &[String], _: &Ctx<'_>) -> Result<(), String> {
    count(args, 1, 2)?;
    let (last, first) = (args[args.len() - 1].as_str(), args[0].as_str());
    let ok = match args.len() {
        1 => matches!(first, "off" | "epoch" | "max") || time(first) || first.strip_prefix('@').is_some_and(time),
        _ => first == "modified" && time(last),
    };
    if ok { Ok(()) } else { Err("must be off, epoch, max, a time (1h, 30d) or 'modified TIME'".into()) }
}

fn address(a: &str) -> Result<(), String> {
    if a == "all" || a == "unix:" {
        return Ok(());
    }
    let (ip, prefix) = a.split_once('/').map_or((a, None), |(i, p)| (i, Some(p)));
    let ip: IpAddr = ip.parse().map_err(|_| format!("{a:?} is not all, unix: or an IP address/CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.map(str::parse::<u8>) {
        None => Ok(()),
        Some(Ok(p)) if p <= max => Ok(()),
        Some(_) => Err(format!("{a:?} has a prefix length outside 0-{max}")),
    }
}

fn size(s: &str) -> Result<(), String> {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    let ok = !digits.is_empty()
        && digits.len() <= 12
        && digits.bytes().all(|b| b.is_ascii_digit())
        && s.len() - digits.len() <= 1;
    if ok { Ok(()) } else { Err(format!("{s:?} is not a size (e.g. 10m)")) }
}
