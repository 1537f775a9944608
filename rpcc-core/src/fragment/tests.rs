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
        "location /static/ { expires 30d; }",
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
        "location ^~ /static/ { expires 30d; }",
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

/// Every way a plugin location could take `/.well-known/acme-challenge/` from rpcc's
/// `^~` one, or a dotfile from rpcc's deny, is refused (each passed before).
#[test]
fn plugin_locations_cannot_take_rpccs_reserved_paths() {
    let refused: &[(&str, &str)] = &[
        // Exact matches beat rpcc's ^~ prefix.
        ("location = /.well-known/acme-challenge/tok3n { return 200 stolen; }", "reserved"),
        ("location = /.well-known/acme-challenge/ { return 200 stolen; }", "reserved"),
        ("location = /.WELL-KNOWN/ACME-CHALLENGE/x { return 204; }", "reserved"),
        // Longer prefixes beat it, with or without ^~.
        ("location /.well-known/acme-challenge/a { return 302 https://evil.example/; }", "reserved"),
        ("location /.well-known/acme-challengeX { return 204; }", "reserved"),
        ("location ^~ /.well-known/acme-challenge/a { return 204; }", "^~"),
        ("location ^~ /.well-known/ { return 204; }", "^~"),
        // ^~ skips regexes: rpcc's dotfile deny would not apply under it.
        ("location ^~ /app/ { return 204; }", "^~"),
        // Exact and prefix dotfile paths.
        ("location = /.env { return 200 x; }", "dotfiles"),
        ("location /.git/ { return 204; }", "dotfiles"),
        ("location = /app/.htpasswd { return 204; }", "dotfiles"),
        ("location = /.well-known { return 204; }", "dotfiles"),
        ("location /a/../b { return 204; }", "dotfiles"),
        // Regexes that could match reserved paths.
        ("location ~ /.well-known/acme-challenge/ { return 204; }", "^/"),
        ("location ~* acme-challenge { return 204; }", "^/"),
        ("location ~ ^/ { return 204; }", "no literal"),
        ("location ~ ^/.well-known/acme-challenge/ { return 204; }", "no literal"),
        ("location ~ ^/(.well-known)/ { return 204; }", "no literal"),
        ("location ~ ^/a?.well-known { return 204; }", "no literal"),
        ("location ~ ^/a*x { return 204; }", "no literal"),
        ("location ~ ^/[.]well-known/ { return 204; }", "no literal"),
        ("location ~ ^/app|.well-known { return 204; }", "top-level |"),
        ("location ~* ^/app/x|^/.well-known/acme-challenge/ { return 204; }", "top-level |"),
        ("location ~ ^/a[|]x)|y { return 204; }", "top-level |"),
        ("location ~ ^/a[[:alpha:]|] { return 204; }", "POSIX"),
        ("location ~ ^/a[x { return 204; }", "unclosed"),
        ("location ~ .* { return 204; }", "^/"),
        // rpcc's named locations.
        ("location @rpcc_not_found { return 200 x; }", "reserved"),
        ("location @RPCC_unavailable { return 200 x; }", "reserved"),
        ("location @a/b { return 204; }", "not a @name"),
    ];
    for (text, want) in refused {
        let err = Fragment::parse(text, &p(), &scope()).unwrap_err();
        assert!(
            matches!(err, FragmentError::Arguments { ref directive, .. } if directive == "location"),
            "{text}: {err}"
        );
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
    // Nested locations are tried before rpcc's (top-level) dotfile regex.
    for text in [
        "location /app/ { location ~ ^/app/x { return 204; } }",
        "location /app/ { location = /app/x { return 204; } }",
    ] {
        let err = Fragment::parse(text, &p(), &scope()).unwrap_err();
        assert!(matches!(err, FragmentError::Structure(_)) && err.to_string().contains("inside a location"), "{err}");
    }
    // What stays possible: paths that cannot reach the reserved ones.
    for text in [
        "location = /.well-known/security.txt { return 200 contact; }",
        "location /.well-known/ { return 204; }",
        "location / { return 204; }",
        "location /app/ { return 204; }",
        "location = /ping { return 200 pong; }",
        "location ~ ^/assets/ { expires 1d; }",
        "location ~* ^/API/v[0-9]+/(users|groups)/ { return 204; }",
        "location ~ ^/a+ { return 204; }",
        "location ~ ^/a[]|x] { return 204; }",
        "location @fallback { return 503; }",
    ] {
        Fragment::parse(text, &p(), &scope()).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

/// At the server level, `return` answers before any location is chosen (rpcc's ACME one
/// included); inside a location it is fine.
#[test]
fn server_level_return_is_refused() {
    let f = Fragment::parse("return 302 https://evil.example/;", &p(), &scope()).unwrap();
    let err = f.check_server_level().unwrap_err().to_string();
    assert!(err.contains("\"return\"") && err.contains("acme-challenge"), "{err}");
    let inside = Fragment::parse("location /x { return 302 https://example.com/; }", &p(), &scope()).unwrap();
    assert!(inside.check_server_level().is_ok());
    assert!(f.check_location_level().is_ok(), "return inside location / is fine");
    let fragments = SiteFragments { server_body: Some(f), ..SiteFragments::default() };
    assert!(fragments.check_placement().is_err(), "a server body is server level too");
    let loc = SiteFragments { main_location: inside, ..SiteFragments::default() };
    assert!(loc.check_placement().unwrap_err().to_string().contains("main location"));
}

/// Operator-allowed directives must have an argument rule; the ones the review found
/// passing are refused by name.
#[test]
fn allowed_directives_need_an_argument_rule() {
    for (name, want) in [
        ("mirror", "copies every request"),
        ("mirror_request_body", "mirror"),
        ("auth_request", "subrequest"),
        ("auth_request_set", "auth_request"),
        ("resolver", "DNS"),
        ("ssi", "include"),
        ("ssi_types", "ssi"),
        ("rewrite", "rewrites"),
        ("set", "variables"),
        ("proxy_set_header", "no argument rule"),
        ("sub_filter", "no argument rule"),
        ("gzip", "no argument rule"),
    ] {
        let err = FragmentPolicy::new(["add_header", name]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FragmentError::Forbidden { name: ref n, .. } if n == name), "{name}: {text}");
        assert!(text.contains(want), "{name}: {text}");
    }
    let text = FragmentPolicy::new(["sub_filter"]).unwrap_err().to_string();
    assert!(text.contains("directives with a rule: access_log") && text.contains("try_files"), "{text}");
    for name in RULED {
        FragmentPolicy::new([*name]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in DEFAULT_ALLOWED {
        assert!(RULED.contains(name), "{name} is allowed by default but has no rule");
    }
}

fn with(names: &[&str]) -> FragmentPolicy {
    FragmentPolicy::new(names.iter().copied()).unwrap()
}

#[test]
fn proxy_pass_never_reaches_metadata_or_link_local() {
    let policy = with(&["location", "proxy_pass"]);
    let at = |target: &str| format!("location /p/ {{ proxy_pass {target}; }}");
    let refused: &[(&str, &str)] = &[
        ("http://169.254.169.254/", "link-local"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://169.254.170.2:80/v2/credentials", "link-local"),
        ("https://[fd00:ec2::254]/", "EC2"),
        ("http://[fe80::1]:8080/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://100.100.100.200/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://METADATA.google.internal./", "metadata"),
        ("http://2852039166/", "dotted-quad"),
        ("http://0xa9fea9fe/", "dotted-quad"),
        ("http://0251.0376.0251.0376/", "dotted-quad"),
        ("http://169.254.43518/", "dotted-quad"),
        ("http://169.254.169.254.nip.io/", "allow_proxy_hosts"),
        ("http://backend.internal:8080/", "allow_proxy_hosts"),
        ("http://unix:/var/run/docker.sock:/", "unix:"),
        ("http://user@10.0.0.5/", "user@"),
        ("http://10.0.0.5:0/", "port"),
        ("http://10.0.0.5:99999/", "port"),
        ("http://10.0.0.5/a/../../admin", "'..'"),
        ("ftp://10.0.0.5/", "http(s)://"),
        ("http:///x", "no host"),
        ("http://0.0.0.0/", "not a host address"),
    ];
    for (target, want) in refused {
        let err = Fragment::parse(&at(target), &policy, &scope()).unwrap_err();
        assert!(
            matches!(err, FragmentError::Arguments { ref directive, .. } if directive == "proxy_pass"),
            "{target}: {err}"
        );
        assert!(err.to_string().contains(want), "{target}: {err}");
    }
    for target in
        ["http://10.0.0.5:8080", "https://192.0.2.10/api/", "http://127.0.0.1:9000/", "http://[2001:db8::5]:80/"]
    {
        Fragment::parse(&at(target), &policy, &scope()).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
    // Only what the operator listed gets past the rule.
    let listed = with(&["location", "proxy_pass"]).with_proxy_hosts(["Backend.Internal.", "169.254.10.10"]).unwrap();
    for target in ["http://backend.internal:8080/", "http://169.254.10.10/"] {
        Fragment::parse(&at(target), &listed, &scope()).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
    assert!(Fragment::parse(&at("http://169.254.169.254/"), &listed, &scope()).is_err());
    assert!(with(&["proxy_pass"]).with_proxy_hosts(["evil/x"]).is_err());
    assert!(with(&["proxy_pass"]).with_proxy_hosts([""]).is_err());
}

#[test]
fn try_files_and_paths_refuse_dot_segments() {
    let policy = with(&["location", "try_files", "return", "error_page"]);
    let refused: &[(&str, &str)] = &[
        ("location /x { try_files /../.. =404; }", "'..'"),
        ("location /x { try_files /a/../../etc/passwd =404; }", "'..'"),
        ("location /x { try_files /a /../../etc/shadow; }", "'..'"),
        ("location /x { try_files etc/passwd =404; }", "/path"),
        ("location /x { try_files /a =999; }", "=CODE"),
        ("location /x { try_files /a evil; }", "fallback"),
        ("location /x { try_files /a; }", "takes 2 to 16"),
        ("location /x { try_files /a @a/b; }", "@name"),
        ("location /x { return 302 /a/../b; }", "'..'"),
        ("error_page 404 /./x;", "'.'"),
    ];
    for (text, want) in refused {
        let err = Fragment::parse(text, &policy, &scope()).unwrap_err();
        assert!(matches!(err, FragmentError::Arguments { .. }), "{text}: {err}");
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
    for text in ["location /x { try_files /maintenance.html =503; }", "location /x { try_files /a /b @fallback; }"] {
        Fragment::parse(text, &policy, &scope()).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}
