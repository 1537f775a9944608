//! What plugin output may never say, and what the arguments of the directives it may
//! use must look like.
//!
//! nginx's master runs as root and opens every file a configuration names, already
//! during `nginx -t`: a fragment that names a path can make it create, append to or
//! serve any file on the server (`access_log /etc/profile.d/x.sh;` and request headers
//! land in a root shell's start-up). So directives that name files are never allowed,
//! except `access_log`, which is confined to the server's own log directory, and every
//! default-allowed directive has an argument rule of its own.

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

/// Why `name` can never be allowed in plugin output, if it cannot.
pub(super) fn never_allowed(name: &str) -> Option<&'static str> {
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

type Rule = fn(&[String], &FragmentScope) -> Result<(), String>;

/// The argument rule of a directive, if it has one (operator-allowed directives without
/// one pass the general value rules only).
fn rule(name: &str) -> Option<Rule> {
    Some(match name {
        "access_log" => access_log,
        "add_header" => add_header,
        "proxy_hide_header" => |a, _| count(a, 1, 1).and_then(|()| header_name(&a[0])),
        "return" => return_rule,
        "error_page" => error_page,
        "location" => location,
        "default_type" => |a, _| count(a, 1, 1).and_then(|()| mime_type(&a[0])),
        "expires" => expires,
        "allow" | "deny" => |a, _| count(a, 1, 1).and_then(|()| address(&a[0])),
        "client_max_body_size" => |a, _| count(a, 1, 1).and_then(|()| size(&a[0])),
        _ => return None,
    })
}

/// Check `args` of `directive` against its rule.
pub(super) fn check_args(directive: &str, args: &[String], scope: &FragmentScope) -> Result<(), FragmentError> {
    match rule(directive) {
        None => Ok(()),
        Some(rule) => {
            rule(args, scope).map_err(|message| FragmentError::Arguments { directive: directive.to_owned(), message })
        }
    }
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

fn add_header(args: &[String], _: &FragmentScope) -> Result<(), String> {
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

fn return_rule(args: &[String], _: &FragmentScope) -> Result<(), String> {
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
        _ => Ok(()),
    }
}

fn error_page(args: &[String], _: &FragmentScope) -> Result<(), String> {
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
    Ok(())
}

fn location(args: &[String], _: &FragmentScope) -> Result<(), String> {
    count(args, 1, 2)?;
    let (modifier, path) = match args {
        [m, p] => (Some(m.as_str()), p.as_str()),
        [p] => (None, p.as_str()),
        _ => return Err("needs a path".into()),
    };
    match modifier {
        None if path.starts_with('@') && path.len() > 1 => Ok(()),
        None | Some("=" | "^~") if path.starts_with('/') => Ok(()),
        Some("~" | "~*") if !path.is_empty() => Ok(()),
        Some(m) if !matches!(m, "=" | "^~" | "~" | "~*") => Err(format!("modifier {m:?} is not =, ^~, ~ or ~*")),
        _ => Err(format!("{path:?} is not a /path or a @name")),
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

fn expires(args: &[String], _: &FragmentScope) -> Result<(), String> {
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
