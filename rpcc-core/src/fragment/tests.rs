//! Unit tests of fragment parsing, checking and canonical output.

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
