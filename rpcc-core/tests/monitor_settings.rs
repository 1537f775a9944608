//! `[monitor]` alert rules, per-group overrides, retention and deploy notifications.

use rpcc_core::Inventory;

const BASE: &str = r#"
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
auth = { agent = true }

[[groups]]
name = "eu"
servers = ["edge-1"]
"#;

#[test]
fn rules_and_group_overrides_are_read() {
    let inv = Inventory::from_toml_str(&format!(
        "{BASE}\n[monitor]\nretention = \"30d\"\nnotify_deploys = true\n\
         rules = {{ cpu_above = 95, cpu_for = \"10m\", cert_days = 21, clear_for = \"5m\" }}\n\
         [[monitor.group_rules]]\ngroup = \"eu\"\ndisk_above = 70\nsite_down_checks = 1\n"
    ))
    .unwrap();
    let m = &inv.monitor;
    assert!(m.notify_deploys);
    assert_eq!(m.retention.as_duration().as_secs(), 30 * 86_400);
    assert_eq!(m.rules.cpu_above, Some(95));
    assert_eq!(m.rules.cpu_for.map(|d| d.as_duration().as_secs()), Some(600));
    assert_eq!(m.rules.cert_days, Some(21));
    assert_eq!(m.rules.disk_above, None);
    assert_eq!(m.group_rules.len(), 1);
    let merged = m.rules.overlaid(&m.group_rules[0].rules);
    assert_eq!((merged.cpu_above, merged.disk_above, merged.site_down_checks), (Some(95), Some(70), Some(1)));
}

#[test]
fn defaults_when_absent() {
    let inv = Inventory::from_toml_str(BASE).unwrap();
    assert_eq!(inv.monitor.retention.as_duration().as_secs(), 7 * 86_400);
    assert!(!inv.monitor.notify_deploys);
    assert_eq!(inv.monitor.rules, Default::default());
}

#[test]
fn bad_rules_name_the_field_and_what_is_allowed() {
    let err = Inventory::from_toml_str(&format!(
        "{BASE}\n[monitor]\nretention = \"10m\"\nnotify_deploys = \"yes\"\n\
         rules = {{ cpu_above = 150, cpu_for = \"soon\", site_down_checks = 0, cpu_abve = 3 }}\n\
         [[monitor.group_rules]]\ngroup = \"asia\"\n\
         [[monitor.group_rules]]\ndisk_above = 50\n"
    ))
    .unwrap_err()
    .to_string();
    for want in [
        "monitor.retention",
        "at least 1h",
        "monitor.notify_deploys",
        "monitor.rules.cpu_above",
        "monitor.rules.cpu_for",
        "monitor.rules.site_down_checks",
        "monitor.rules.cpu_abve",
        "did you mean `cpu_above`",
        "monitor.group_rules[0].group",
        "\"asia\" is not a group",
        "monitor.group_rules[1].group",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
