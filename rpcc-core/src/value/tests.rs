use proptest::prelude::*;

use super::*;

/// The characters that must never appear in an accepted value (besides the per-type
/// exceptions for CSP, which may hold `;` and `'` from its own structure).
fn has_forbidden(s: &str, allow_csp_syntax: bool) -> bool {
    s.chars().any(|c| {
        let structural = allow_csp_syntax && (c == ';' || c == '\'');
        (NGINX_UNSAFE.contains(&c) && !structural) || c.is_control()
    })
}

#[test]
fn domain_names_are_normalised_and_hostile_ones_rejected() {
    assert_eq!(DomainName::parse("WWW.Example.COM.").unwrap().as_str(), "www.example.com");
    assert_eq!(DomainName::parse("münchen.example").unwrap().as_str(), "xn--mnchen-3ya.example");
    for bad in [
        "",
        "example",
        "exa mple.com",
        "a..b.com",
        "-a.example.com",
        "a-.example.com",
        "a.example.com;",
        "a.example.com\nserver_name evil",
        "$host.example.com",
        "{a}.example.com",
        "a\".example.com",
        "a'.example.com",
        "a\\.example.com",
        "a\0.example.com",
        "10.0.0.1",
        "*.*.example.com",
        "a.*.example.com",
        "under_score.example.com",
        &format!("{}.example.com", "a".repeat(64)),
    ] {
        assert!(DomainName::parse(bad).is_err(), "{bad:?} was accepted");
    }
    let err = DomainName::parse("a;b.example.com").unwrap_err();
    assert!(err.message().contains("';'"), "{err}");
}

#[test]
fn ports_hosts_and_backends() {
    assert!(Port::new(0).is_err());
    assert!(Port::from_i64(65536).is_err());
    assert!(Port::from_i64(-1).is_err());
    assert_eq!(Port::parse("443").unwrap().get(), 443);
    assert!(Port::parse("+443").is_err());
    assert_eq!(Host::parse("LOCALHOST").unwrap().as_str(), "localhost");
    assert!(Host::parse("300.1.1.1").is_err());
    assert!(Host::parse("fe80::1%eth0").is_err());
    assert_eq!(Backend::parse("[2001:db8::1]:80").unwrap().as_str(), "[2001:db8::1]:80");
    assert_eq!(Backend::parse("App.Internal:8080").unwrap().as_str(), "app.internal:8080");
    for bad in
        ["10.0.0.5", "10.0.0.5:", ":80", "10.0.0.5:0", "2001:db8::1:80", "10.0.0.5:80;", "a b:80", "unix:/tmp/x.sock"]
    {
        assert!(Backend::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn paths_urls_and_headers() {
    assert!(UrlPath::parse("/api/v1/users_list-2.json").is_ok());
    for bad in ["", "api", "/a b", "/a;b", "/a$b", "/a?x=1", "/a#f", "/%zz", "/a/../b", "/a/./b", "/a{b}"] {
        assert!(UrlPath::parse(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(RedirectUrl::parse("https://example.com").is_ok());
    assert!(RedirectUrl::parse("http://[2001:db8::1]:8080/x?a=b&c=d").is_ok());
    for bad in [
        "ftp://x.example.com",
        "https://",
        "https://x.example.com/$uri",
        "https://a b.com",
        "https://x.example.com/?q=$arg",
        "//x.example.com",
    ] {
        assert!(RedirectUrl::parse(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(HeaderName::parse("X-Robots-Tag").is_ok());
    assert!(HeaderName::parse("X_Bad").is_err());
    assert!(HeaderValue::parse("noindex, nofollow").is_ok());
    for bad in ["", " x", "x ", "a;b", "a$b", "a\"b", "a'b", "a\\b", "a\nb", "é"] {
        assert!(HeaderValue::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn security_policies_are_canonicalised() {
    let csp =
        ContentSecurityPolicy::parse("  default-src 'self' ;; script-src 'sha256-abc+/=' https://cdn.example.com  ")
            .unwrap();
    assert_eq!(csp.as_str(), "default-src 'self'; script-src 'sha256-abc+/=' https://cdn.example.com");
    for bad in [
        "",
        "default-src 'evil'",
        "default-src $x",
        "Default-Src 'self'",
        "default-src \"x\"",
        "img-src {a}",
        "default-src 'self'\n",
    ] {
        assert!(ContentSecurityPolicy::parse(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(
        PermissionsPolicy::parse("camera=(),geolocation=( self )").unwrap().as_str(),
        "camera=(), geolocation=(self)"
    );
    assert!(PermissionsPolicy::parse("camera=(\"https://x\")").is_err());
    assert!(PermissionsPolicy::parse("camera").is_err());
}

#[test]
fn quantities() {
    assert_eq!(Size::parse("512k").unwrap().bytes(), 512 * 1024);
    assert_eq!(Size::parse("0").unwrap().bytes(), 0);
    assert!(Size::parse("65g").is_err());
    assert!(Size::parse("1.5m").is_err());
    assert_eq!(DurationValue::parse("500ms").unwrap().as_duration().as_millis(), 500);
    assert!(DurationValue::parse("0s").is_err());
    assert!(DurationValue::parse("366d").is_err());
    assert!(DurationValue::parse("1w").is_err());
    assert_eq!(Rate::parse("5r/m").unwrap().unit(), RateUnit::PerMinute);
    assert!(Rate::parse("0r/s").is_err());
    assert!(Rate::parse("100001r/s").is_err());
}

#[test]
fn remote_paths_and_identifiers() {
    assert_eq!(RemotePath::parse("/etc/nginx/").unwrap().as_str(), "/etc/nginx");
    assert_eq!(RemotePath::parse("/").unwrap().join("rpcc").unwrap().as_str(), "/rpcc");
    assert_eq!(RemotePath::parse("//").unwrap().as_str(), "/");
    for bad in ["", "relative", "/a//b", "/a/../b", "/a b", "/a;b", "/a$b", "/a\nb", "/a*"] {
        assert!(RemotePath::parse(bad).is_err(), "{bad:?} was accepted");
    }
    for bad in ["", "Edge", "-edge", "edge 1", "../x", "edge/1", &"a".repeat(64)] {
        assert!(Identifier::parse(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(UnixUser::parse("deploy").is_ok());
    assert!(UnixUser::parse("root;id").is_err());
    assert!(UnitName::parse("nginx.service").is_ok());
    assert!(UnitName::parse("-nginx").is_err());
}

#[test]
fn host_key_pins() {
    let ok = "ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    assert_eq!(HostKeyPin::parse(ok).unwrap().as_str(), ok);
    for bad in [
        "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        "ssh-dss SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        "ssh-ed25519 MD5:aa:bb",
        "ssh-ed25519 SHA256:short",
        "ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2$",
    ] {
        assert!(HostKeyPin::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn built_in_literals_are_valid() {
    assert!(DurationValue::parse(&DurationValue::secs(60).to_string()).is_ok());
    assert!(HeaderValue::parse(HeaderValue::from_static("SAMEORIGIN").as_str()).is_ok());
}

/// Strings biased towards each type's grammar with hostile characters sprinkled in.
fn hostile(class: &'static str, len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = class.chars().chain("$;{}\"'\\\n\r\0` \t\u{7}é*".chars()).collect();
    proptest::collection::vec(proptest::sample::select(alphabet), len).prop_map(|v| v.into_iter().collect())
}

macro_rules! roundtrip {
    ($ty:ty, $value:expr, $csp:expr) => {{
        let v: $ty = $value;
        let text = v.to_string();
        prop_assert!(!has_forbidden(&text, $csp), "{} accepted {:?}", stringify!($ty), text);
        let json = serde_json::to_string(&v).unwrap();
        let back: $ty = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.to_string(), text);
    }};
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn accepted_domains_are_safe(s in prop_oneof![hostile("abc-.xyz09", 1..=30), "[a-z]{1,10}(\\.[a-z]{2,5}){1,3}", any::<String>()]) {
        if let Ok(v) = DomainName::parse(&s) { roundtrip!(DomainName, v, false); }
    }

    #[test]
    fn accepted_hosts_and_backends_are_safe(s in prop_oneof![hostile("abc.-:[]0129", 1..=30), "[a-z0-9.]{1,15}:[0-9]{1,6}", any::<String>()]) {
        if let Ok(v) = Host::parse(&s) { roundtrip!(Host, v, false); }
        if let Ok(v) = Backend::parse(&s) { roundtrip!(Backend, v, false); }
    }

    #[test]
    fn accepted_identifiers_are_safe(s in prop_oneof![hostile("abz09._-", 1..=70), any::<String>()]) {
        if let Ok(v) = Identifier::parse(&s) { roundtrip!(Identifier, v, false); }
        if let Ok(v) = UnixUser::parse(&s) { roundtrip!(UnixUser, v, false); }
        if let Ok(v) = UnitName::parse(&s) { roundtrip!(UnitName, v, false); }
    }

    #[test]
    fn accepted_http_values_are_safe(s in prop_oneof![hostile("aZ09-/ .%,=:", 1..=40), "/[a-z0-9/._-]{0,20}", any::<String>()]) {
        if let Ok(v) = HeaderName::parse(&s) { roundtrip!(HeaderName, v, false); }
        if let Ok(v) = HeaderValue::parse(&s) { roundtrip!(HeaderValue, v, false); }
        if let Ok(v) = UrlPath::parse(&s) { roundtrip!(UrlPath, v, false); }
        if let Ok(v) = RemotePath::parse(&s) { roundtrip!(RemotePath, v, false); }
        if let Ok(v) = PermissionsPolicy::parse(&s) { roundtrip!(PermissionsPolicy, v, false); }
    }

    #[test]
    fn accepted_urls_are_safe(s in prop_oneof![
        ("https?://[a-z.]{1,12}(:[0-9]{1,5})?", hostile("/a9?&=.%", 0..=20)).prop_map(|(a, b)| format!("{a}{b}")),
        any::<String>(),
    ]) {
        if let Ok(v) = RedirectUrl::parse(&s) { roundtrip!(RedirectUrl, v, false); }
    }

    #[test]
    fn accepted_csp_is_safe(s in prop_oneof![hostile("abc-src 'self';*:/.", 1..=40), any::<String>()]) {
        if let Ok(v) = ContentSecurityPolicy::parse(&s) { roundtrip!(ContentSecurityPolicy, v, true); }
    }

    #[test]
    fn accepted_quantities_are_safe(s in prop_oneof![hostile("0129kmgsrhd/", 1..=8), any::<String>()]) {
        if let Ok(v) = Size::parse(&s) { roundtrip!(Size, v, false); }
        if let Ok(v) = DurationValue::parse(&s) { roundtrip!(DurationValue, v, false); }
        if let Ok(v) = Rate::parse(&s) { roundtrip!(Rate, v, false); }
    }
}
