//! Inventories from non-TOML sources (JSON, as Python dicts will arrive), and secrets
//! that never show in Debug, errors or serialized output.

use rpcc_core::inventory::Node;
use rpcc_core::keyring::{Keyring, RecordId};
use rpcc_core::model::ServerAuth;
use rpcc_core::{Error, Inventory, LoadOptions};
use secrecy::{ExposeSecret as _, SecretString};

const CANARY: &str = "canary-Zq8xV2-secret";

#[test]
fn json_source_is_validated_with_paths_and_null_means_absent() -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(serde_json::json!({
        "servers": [{"name": "edge-1", "host": "203.0.113.10", "user": "deploy", "auth": {"agent": true}, "host_key": null}],
        "groups": [{"name": "eu", "servers": ["edge-1"]}],
        "sites": [{"domain": "app.example.com", "group": "eu", "upstream": {"backends": ["10.0.0.5:8080"]}}]
    }))?;
    let inv = Inventory::from_node(&node).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(inv.servers[0].host_key.is_none());

    let bad: Node = serde_json::from_value(serde_json::json!({
        "servers": [{"name": "edge-1", "host": 7, "user": "deploy", "auth": {"agent": true}}],
        "sites": [{"domain": "app.example.com", "group": "eu", "upstream": {"backends": ["10.0.0.5:8080"], "balanse": "ip_hash"}}]
    }))?;
    let errors = Inventory::from_node(&bad).unwrap_err();
    assert!(errors.has_path("servers[0].host"), "{errors}");
    assert!(errors.has_path("sites[0].group"), "{errors}");
    assert!(errors.has_path("sites[0].upstream.balanse"), "{errors}");
    assert!(errors.errors().iter().all(|e| e.location.is_none()));
    assert!(errors.errors().iter().any(|e| e.message.contains("did you mean `balance`")), "{errors}");
    Ok(())
}

fn inventory_with_secrets() -> String {
    format!(
        r#"
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
auth = {{ password = "{CANARY}" }}

[[servers]]
name = "edge-2"
host = "203.0.113.11"
user = "deploy"
auth = {{ key_file = "keys/edge", passphrase = "{CANARY}" }}
"#
    )
}

#[test]
fn secrets_never_show_in_debug_or_json() -> anyhow::Result<()> {
    let inv = Inventory::from_toml_str_with(&inventory_with_secrets(), &LoadOptions::allow_plaintext(true))?;
    assert!(matches!(inv.servers[0].auth, ServerAuth::Password(_)));
    // Accepted plain text is listed so callers can warn about it.
    let listed: Vec<String> = inv.plaintext_secrets.iter().map(ToString::to_string).collect();
    assert_eq!(listed, ["servers[0].auth.password", "servers[1].auth.passphrase"]);
    let debug = format!("{inv:?} {:#?}", inv.servers);
    assert!(!debug.contains(CANARY), "Debug leaks the secret");
    let json = serde_json::to_string(&inv)?;
    assert!(!json.contains(CANARY), "JSON leaks the secret: {json}");
    Ok(())
}

#[test]
fn secrets_never_show_in_errors() {
    // A secret in the wrong place, with other errors around it.
    let source = inventory_with_secrets()
        .replace("user = \"deploy\"\nauth = { password", "user = \"Deploy\"\nauth = { agent = true, password")
        + &format!("\n[[sites]]\ndomain = \"{CANARY}\"\n");
    let err = Inventory::from_toml_str(&source).unwrap_err();
    let Error::Invalid(errors) = &err else { panic!("{err}") };
    assert!(errors.has_path("servers[0].auth"));
    // The only place the canary may appear is where the user typed it as a domain name.
    for e in errors.errors() {
        if e.message.contains(CANARY) {
            assert_eq!(e.path.as_str(), "sites[0].domain", "secret leaked in {e}");
        }
    }
    // Password and passphrase type errors do not echo the value either.
    let typed = inventory_with_secrets().replace(&format!("password = \"{CANARY}\""), "password = 12345");
    let err = Inventory::from_toml_str(&typed).unwrap_err().to_string();
    assert!(err.contains("servers[0].auth.password: expected a string, found an integer"), "{err}");
}

#[test]
fn plain_text_secrets_are_refused_by_default_and_envelopes_are_opened_per_record() -> anyhow::Result<()> {
    let err = Inventory::from_toml_str(&inventory_with_secrets()).unwrap_err();
    let Error::Invalid(errors) = &err else { panic!("{err}") };
    assert!(errors.has_path("servers[0].auth.password") && errors.has_path("servers[1].auth.passphrase"));
    assert!(err.to_string().contains("rpcc keys encrypt --for server/edge-1/password"), "{err}");
    assert!(!err.to_string().contains(CANARY));

    let (_, entry) = Keyring::generate_entry(None)?;
    let ring = Keyring::parse(&entry, "test")?;
    let pw = ring.seal(&RecordId::parse("server/edge-1/password")?, &SecretString::from(CANARY))?;
    let pp = ring.seal(&RecordId::parse("server/edge-2/passphrase")?, &SecretString::from(CANARY))?;
    let source = inventory_with_secrets().replacen(CANARY, pw.as_str(), 1).replacen(CANARY, pp.as_str(), 1);
    let inv = Inventory::from_toml_str(&source)?;
    assert!(inv.plaintext_secrets.is_empty());
    let secrets = inv.secrets();
    assert_eq!(secrets.len(), 2);
    for s in &secrets {
        assert_eq!(s.open(Some(&ring))?.expose_secret(), CANARY);
        assert!(!format!("{s:?}").contains(CANARY));
    }
    // Without a keyring a sealed secret cannot be opened; the error says how to configure one.
    assert!(secrets[0].open(None).unwrap_err().to_string().contains("RPCC_KEYS"));

    // The two envelopes swapped between records: both refused as moved.
    let swapped = inventory_with_secrets().replacen(CANARY, pp.as_str(), 1).replacen(CANARY, pw.as_str(), 1);
    let inv = Inventory::from_toml_str(&swapped)?;
    for s in inv.secrets() {
        let e = s.open(Some(&ring)).unwrap_err().to_string();
        assert!(e.contains("different record"), "{e}");
    }
    // A malformed envelope is a validation error at load, with its path.
    let bad = inventory_with_secrets().replacen(CANARY, "rpcc:v7:k1:abc", 1).replacen(CANARY, pp.as_str(), 1);
    let err = Inventory::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("servers[0].auth.password: has unknown envelope version `v7`"), "{err}");
    Ok(())
}
