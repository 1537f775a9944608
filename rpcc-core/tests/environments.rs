//! `[env.<name>]` overlays: one environment chosen at load, its servers and groups, the
//! shared sites, its own state and keyring; refusals name the problem and what is allowed.

use rpcc_core::model::Inventory;
use rpcc_core::{Error, LoadOptions};

const INVENTORY: &str = r#"
[[sites]]
domain = "app.example.com"
group = "edge"
upstream = { backends = ["10.0.0.5:8080"] }

[env.staging]
state = "sqlite:///var/lib/rpcc/staging.db"
key_file = "/etc/rpcc/staging.keys"

[[env.staging.servers]]
name = "stg-1"
host = "203.0.113.10"
user = "deploy"
auth = { agent = true }

[[env.staging.groups]]
name = "edge"
servers = ["stg-1"]

[env.production]
state = "postgres://rpcc@db.internal/rpcc"
key_file = "/etc/rpcc/production.keys"

[[env.production.servers]]
name = "prod-1"
host = "203.0.113.20"
user = "deploy"
auth = { agent = true }

[[env.production.servers]]
name = "prod-2"
host = "203.0.113.21"
user = "deploy"
auth = { agent = true }

[[env.production.groups]]
name = "edge"
servers = ["prod-1", "prod-2"]

[[env.production.sites]]
domain = "status.example.com"
group = "edge"
upstream = { backends = ["10.0.0.6:8080"] }
"#;

fn load(text: &str, env: Option<&str>) -> Result<Inventory, Error> {
    Inventory::from_toml_str_with(text, &LoadOptions::default().with_environment(env))
}

fn messages(e: &Error) -> String {
    e.to_string()
}

#[test]
fn each_environment_has_its_servers_groups_state_and_keyring_and_shares_the_sites() -> Result<(), Error> {
    let staging = load(INVENTORY, Some("staging"))?;
    let names: Vec<&str> = staging.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["stg-1"]);
    assert_eq!(staging.groups.len(), 1);
    assert_eq!(staging.sites.iter().map(|s| s.domain.as_str()).collect::<Vec<_>>(), ["app.example.com"]);
    let env = staging.environment.as_ref().expect("environment");
    assert_eq!((env.name.as_str(), env.state.as_deref()), ("staging", Some("sqlite:///var/lib/rpcc/staging.db")));
    assert_eq!(env.key_file.as_deref(), Some(std::path::Path::new("/etc/rpcc/staging.keys")));

    let production = load(INVENTORY, Some("production"))?;
    let names: Vec<&str> = production.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["prod-1", "prod-2"]);
    assert_eq!(production.sites.len(), 2, "the shared site plus production's own");
    assert_eq!(production.sites_for_server("prod-2").count(), 2);
    assert_eq!(production.sites_for_server("stg-1").count(), 0, "never another environment's servers");
    Ok(())
}

#[test]
fn an_environment_must_be_chosen_and_must_exist() {
    let none = load(INVENTORY, None).expect_err("must choose");
    assert!(messages(&none).contains("defines environments (staging, production); choose one with --env"), "{none}");
    let unknown = load(INVENTORY, Some("prod")).expect_err("unknown");
    assert!(messages(&unknown).contains("no environment \"prod\"; defined: staging, production"), "{unknown}");
    let plain = "[[servers]]\nname = \"a\"\nhost = \"203.0.113.1\"\nuser = \"d\"\nauth = { agent = true }\n";
    assert!(load(plain, None).is_ok());
    let asked = load(plain, Some("staging")).expect_err("no environments");
    assert!(messages(&asked).contains("defines no [env.*]"), "{asked}");
}

#[test]
fn environments_never_share_state_or_keys_and_typos_are_named() {
    let shared = INVENTORY
        .replace("postgres://rpcc@db.internal/rpcc", "sqlite:///var/lib/rpcc/staging.db")
        .replace("/etc/rpcc/production.keys", "/etc/rpcc/staging.keys");
    let e = load(&shared, Some("production")).expect_err("shared");
    let text = messages(&e);
    assert!(text.contains("env.production.state") && text.contains("environments never share a state"), "{text}");
    assert!(text.contains("env.production.key_file") && text.contains("environments never share keys"), "{text}");

    let typo = INVENTORY.replace("key_file = \"/etc/rpcc/staging.keys\"", "keyfile = \"/etc/rpcc/staging.keys\"");
    let e = load(&typo, Some("staging")).expect_err("typo");
    assert!(messages(&e).contains("keyfile") && messages(&e).contains("key_file"), "{e}");

    let bad_name = INVENTORY.replace("[env.staging]", "[env.Staging]").replace("env.staging.", "env.Staging.");
    let e = load(&bad_name, Some("production")).expect_err("bad name");
    assert!(messages(&e).contains("not an environment name"), "{e}");
}
