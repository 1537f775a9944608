//! `[[plugins]]` directive allow-lists through the inventory parser: a directive without
//! an argument rule is refused at the element that names it, and `allow_proxy_hosts` is
//! the only way past the `proxy_pass` rule.

use rpcc_core::Inventory;
use rpcc_core::fragment::{Fragment, FragmentScope};

fn plugin(fields: &str) -> String {
    format!("[[plugins]]\nname = \"p\"\npath = \"p.wasm\"\n{fields}\n")
}

#[test]
fn unruled_directives_are_refused_naming_the_element() {
    let err = Inventory::from_toml_str(&plugin(r#"allow_directives = ["add_header", "mirror", "proxy_set_header"]"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plugins[0].allow_directives[1]") && err.contains("\"mirror\""), "{err}");
    assert!(err.contains("plugins[0].allow_directives[2]") && err.contains("no argument rule"), "{err}");
    assert!(err.contains("directives with a rule:") && err.contains("proxy_pass"), "{err}");
    for name in ["auth_request", "resolver", "ssi"] {
        let err = Inventory::from_toml_str(&plugin(&format!("allow_directives = [\"{name}\"]"))).unwrap_err();
        assert!(err.to_string().contains("plugins[0].allow_directives[0]"), "{name}: {err}");
    }
}

#[test]
fn allow_proxy_hosts_widens_only_proxy_pass() {
    let inv = Inventory::from_toml_str(&plugin(
        r#"allow_directives = ["location", "proxy_pass"]
allow_proxy_hosts = ["auth.internal"]"#,
    ))
    .expect("inventory");
    let policy = &inv.plugins[0].allow_directives;
    assert_eq!(policy.proxy_hosts().collect::<Vec<_>>(), ["auth.internal"]);
    let scope = FragmentScope::none();
    assert!(Fragment::parse("location /a/ { proxy_pass http://auth.internal:8080/; }", policy, &scope).is_ok());
    let err = Fragment::parse("location /a/ { proxy_pass http://169.254.169.254/; }", policy, &scope).unwrap_err();
    assert!(err.to_string().contains("link-local"), "{err}");
    let err = Inventory::from_toml_str(&plugin(r#"allow_proxy_hosts = ["ok.example", "bad host/x"]"#)).unwrap_err();
    assert!(err.to_string().contains("plugins[0].allow_proxy_hosts[1]"), "{err}");
}
