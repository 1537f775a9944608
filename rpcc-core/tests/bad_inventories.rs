//! The bad-inventory corpus: every case must fail validation with exactly the expected
//! error paths (no missing error, no cascade of unrelated ones), and nothing panics.
//!
//! - `bad-inventories/*.toml`: hand-written cases, each with `# expect: <path>` lines.
//! - generated cases: each hostile character placed in each string field of a valid
//!   base inventory, and out-of-range numbers in each numeric field.

use std::collections::BTreeSet;
use std::path::Path;

use rpcc_core::{Error, Inventory};

fn error_paths(source: &str) -> Result<BTreeSet<String>, String> {
    match Inventory::from_toml_str(source) {
        Ok(_) => Err("accepted".into()),
        Err(Error::Invalid(errors)) => {
            for e in errors.errors() {
                assert!(!e.message.is_empty(), "empty message at {}", e.path);
            }
            Ok(errors.errors().iter().map(|e| e.path.to_string()).collect())
        }
        Err(other) => Err(format!("not a validation error: {other}")),
    }
}

#[test]
fn hand_written_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inventories");
    let mut count = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("corpus dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let source = std::fs::read_to_string(&path).expect("read case");
        let expected: BTreeSet<String> =
            source.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(|s| s.trim().to_owned()).collect();
        assert!(!expected.is_empty(), "{} has no # expect: lines", path.display());
        count += 1;
        match error_paths(&source) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!("{}: expected {expected:?}, got {got:?}", path.display())),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(count >= 45, "corpus shrank to {count}");
}

/// A valid inventory with one slot per field under test.
const BASE: &str = r#"
[[servers]]
name = @server_name@
host = @host@
user = @user@
host_key = @host_key@
auth = { key_file = "keys/edge" }
nginx = { root = @nginx_root@ }

[[groups]]
name = @group_name@
servers = ["edge-1"]

[[sites]]
domain = @domain@
aliases = [@alias@]
group = "eu"
upstream = { backends = [@backend@], fail_timeout = @fail_timeout@ }
tls = { mode = "custom", cert = @cert@, key = "/etc/ssl/a.key" }
headers = { "X-Custom" = @header_value@ }
health_path = @health_path@
redirects = [{ from = @redirect_from@, to = @redirect_to@ }]
limits = { body_size = @body_size@, rate_limit = { rate = @rate@ } }
security = { csp = @csp@ }

[[sites.locations]]
path = @location@
"#;

/// (slot, valid value, path of the field, is the group/server name referenced elsewhere)
const SLOTS: &[(&str, &str, &str)] = &[
    ("server_name", "edge-1", "servers[0].name"),
    ("host", "203.0.113.10", "servers[0].host"),
    ("user", "deploy", "servers[0].user"),
    ("host_key", "ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", "servers[0].host_key"),
    ("nginx_root", "/etc/nginx", "servers[0].nginx.root"),
    ("group_name", "eu", "groups[0].name"),
    ("domain", "app.example.com", "sites[0].domain"),
    ("alias", "www.app.example.com", "sites[0].aliases[0]"),
    ("backend", "10.0.0.5:8080", "sites[0].upstream.backends[0]"),
    ("fail_timeout", "10s", "sites[0].upstream.fail_timeout"),
    ("cert", "/etc/ssl/a.pem", "sites[0].tls.cert"),
    ("header_value", "hello world", "sites[0].headers.X-Custom"),
    ("health_path", "/healthz", "sites[0].health_path"),
    ("redirect_from", "/old", "sites[0].redirects[0].from"),
    ("redirect_to", "https://app.example.com/new", "sites[0].redirects[0].to"),
    ("body_size", "10m", "sites[0].limits.body_size"),
    ("rate", "10r/s", "sites[0].limits.rate_limit.rate"),
    ("csp", "default-src 'self'", "sites[0].security.csp"),
    ("location", "/api/", "sites[0].locations[0].path"),
];

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render(overrides: &[(&str, String)]) -> String {
    let mut s = BASE.to_owned();
    for (slot, valid, _) in SLOTS {
        let value = overrides.iter().find(|(k, _)| k == slot).map_or_else(|| toml_string(valid), |(_, v)| v.clone());
        s = s.replace(&format!("@{slot}@"), &value);
    }
    s
}

#[test]
fn base_inventory_is_valid() {
    let inv = Inventory::from_toml_str(&render(&[])).expect("base inventory is valid");
    assert_eq!(inv.sites.len(), 1);
}

/// Hostile characters, and where each is inserted into the valid value.
const HOSTILE: &[&str] = &["$", ";", "{", "}", "\"", "\\", "\n", "\0", "`", "\u{7}"];

#[test]
fn every_hostile_character_in_every_field_is_rejected_at_its_path() {
    let mut count = 0;
    let mut failures = Vec::new();
    for (slot, valid, path) in SLOTS {
        for bad in HOSTILE {
            if *slot == "csp" && *bad == ";" {
                continue; // `;` separates CSP directives; the policy is re-emitted canonically
            }
            // Insert in the middle so prefix/suffix rules are not what rejects it.
            let mid = valid.len() / 2;
            let mid = (0..=mid).rev().find(|i| valid.is_char_boundary(*i)).unwrap_or(0);
            let value = format!("{}{bad}{}", &valid[..mid], &valid[mid..]);
            let source = render(&[(slot, toml_string(&value))]);
            count += 1;
            let mut expected = BTreeSet::from([path.to_string()]);
            // Renaming the server or group breaks the references to it as well.
            if *slot == "server_name" {
                expected.insert("groups[0].servers[0]".into());
            }
            if *slot == "group_name" {
                expected.insert("sites[0].group".into());
            }
            match error_paths(&source) {
                Ok(got) if *slot == "server_name" || *slot == "group_name" => {
                    // An unparseable name suppresses "unknown reference" noise by design.
                    if !got.contains(*path) || got.len() > expected.len() {
                        failures.push(format!("{slot} with {bad:?}: got {got:?}"));
                    }
                }
                Ok(got) if got == expected => {}
                Ok(got) => failures.push(format!("{slot} with {bad:?}: expected {expected:?}, got {got:?}")),
                Err(e) => failures.push(format!("{slot} with {bad:?}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(count, SLOTS.len() * HOSTILE.len() - 1);
}

#[test]
fn hostile_values_are_never_echoed_raw() {
    // The error message shows the value escaped, so a newline cannot forge a second
    // error line in a terminal or log.
    let source = render(&[("domain", toml_string("evil.example.com\nsites[9].domain: all good"))]);
    let Err(Error::Invalid(errors)) = Inventory::from_toml_str(&source) else { panic!("must fail") };
    for e in errors.errors() {
        assert!(!e.message.contains('\n'), "{e}");
    }
}

#[test]
fn out_of_range_numbers_are_rejected_at_their_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("port = 22", "port = 0", "servers[0].port"),
        ("port = 22", "port = 65536", "servers[0].port"),
        ("port = 22", "port = -22", "servers[0].port"),
        ("port = 22", "port = 22.5", "servers[0].port"),
        ("port = 22", "port = 99999999999999999999", "servers[0].port"),
    ];
    let base = render(&[]).replace("user = \"deploy\"", "port = 22\nuser = \"deploy\"");
    Inventory::from_toml_str(&base).expect("base with port is valid");
    for (from, to, path) in cases {
        let source = base.replace(from, to);
        match Inventory::from_toml_str(&source) {
            Err(Error::Invalid(e)) => assert!(e.has_path(path) && e.len() == 1, "{to}: {e}"),
            other => panic!("{to}: {other:?}"),
        }
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let Err(Error::Syntax { location: Some(loc), .. }) =
        Inventory::from_toml_str("[[servers]]\nname = \"a\"\nhost = \n")
    else {
        panic!("expected a syntax error with a location")
    };
    assert_eq!(loc.line, 3);
}

#[test]
fn every_error_has_a_line_when_input_is_toml() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inventories/many-errors-at-once.toml"),
    )
    .expect("read");
    let Err(Error::Invalid(errors)) = Inventory::from_toml_str(&source) else { panic!("must fail") };
    assert_eq!(errors.len(), 7);
    for e in errors.errors() {
        let loc = e.location.expect("location");
        let line = source.lines().nth(loc.line as usize - 1).expect("line exists");
        let key = e.path.as_str().rsplit('.').next().unwrap_or_default();
        let key = key.split('[').next().unwrap_or_default();
        assert!(line.contains(key), "{e} points at line {}: {line:?}", loc.line);
    }
}

/// Per-site lists are bounded (one error naming the limit), and duplicate checks over
/// the largest allowed lists stay linear: 2,048 redirects with one duplicate at the end
/// decode at once with exactly that error.
#[test]
fn per_site_lists_are_bounded_and_checked_linearly() {
    let base = "[[servers]]\nname = \"e\"\nhost = \"203.0.113.10\"\nuser = \"d\"\nauth = { agent = true }\n\
                [[groups]]\nname = \"g\"\nservers = [\"e\"]\n[[sites]]\ndomain = \"a.example.com\"\ngroup = \"g\"\n\
                upstream = { backends = [\"10.0.0.5:80\"] }\n";
    let redirects = |n: usize, dup: bool| {
        let mut list: Vec<String> =
            (0..n).map(|i| format!("{{ from = \"/old/{i}\", to = \"https://b.example.com/{i}\" }}")).collect();
        if dup {
            list[n - 1] = "{ from = \"/old/0\", to = \"https://b.example.com/x\" }".into();
        }
        format!("{base}redirects = [{}]\n", list.join(", "))
    };
    assert_eq!(error_paths(&redirects(2049, false)), Ok(BTreeSet::from(["sites[0].redirects".to_owned()])));
    let started = std::time::Instant::now();
    assert_eq!(error_paths(&redirects(2048, true)), Ok(BTreeSet::from(["sites[0].redirects[2047].from".to_owned()])));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    let headers: Vec<String> = (0..65).map(|i| format!("\"X-H{i}\" = \"v\"")).collect();
    assert_eq!(
        error_paths(&format!("{base}headers = {{ {} }}\n", headers.join(", "))),
        Ok(BTreeSet::from(["sites[0].headers".to_owned()]))
    );
    let locations: Vec<String> = (0..257).map(|i| format!("{{ path = \"/p{i}\" }}")).collect();
    assert_eq!(
        error_paths(&format!("{base}locations = [{}]\n", locations.join(", "))),
        Ok(BTreeSet::from(["sites[0].locations".to_owned()]))
    );
    let aliases: Vec<String> = (0..257).map(|i| format!("\"w{i}.example.com\"")).collect();
    assert_eq!(
        error_paths(&format!("{base}aliases = [{}]\n", aliases.join(", "))),
        Ok(BTreeSet::from(["sites[0].aliases".to_owned()]))
    );
}
