//! Alert lifecycle on a controlled timeline: fire once, no repeats, flaps suppressed,
//! one recovery; consecutive-check rules; rule validation; message splitting.

use rpcc_monitor::{AlertEngine, AlertKind, AlertRulesConfig, Reading, Subject, split_message};

const MIN: u64 = 60_000;

fn engine() -> AlertEngine {
    AlertEngine::new(AlertRulesConfig::default().build().expect("default rules are valid"))
}

fn cpu() -> Subject {
    Subject::Cpu { server: "edge-1".into() }
}

/// Feed (minute, reading) pairs; return (minute, kind) of every event.
fn run(engine: &mut AlertEngine, subject: &Subject, timeline: &[(u64, Reading)]) -> Vec<(u64, AlertKind)> {
    timeline.iter().filter_map(|(m, r)| engine.observe(subject, r, m * MIN).map(|e| (m * MIN / MIN, e.kind))).collect()
}

#[test]
fn cpu_fires_once_after_five_minutes_suppresses_a_flap_and_recovers_once() {
    let mut e = engine();
    let hot = || Reading::Percent(95.0);
    let cool = || Reading::Percent(40.0);
    let mut timeline: Vec<(u64, Reading)> = (0..=9).map(|m| (m, hot())).collect(); // hot 0..9 min
    timeline.push((10, cool())); // clearing starts
    timeline.push((11, hot())); // back within the 2-minute clearing period: same incident
    timeline.extend((12..=16).map(|m| (m, cool())));
    let events = run(&mut e, &cpu(), &timeline);
    assert_eq!(events, vec![(5, AlertKind::Fired), (14, AlertKind::Recovered)], "{events:?}");
    assert_eq!(e.firing().count(), 0);
}

#[test]
fn a_short_spike_never_fires_and_messages_name_the_subject() {
    let mut e = engine();
    let events = run(
        &mut e,
        &cpu(),
        &[
            (0, Reading::Percent(99.0)),
            (3, Reading::Percent(99.0)),
            (4, Reading::Percent(10.0)),
            (6, Reading::Percent(99.0)),
        ],
    );
    assert!(events.is_empty(), "{events:?}");
    let mut e = engine();
    let disk = Subject::Disk { server: "edge-1".into(), mount: "/var".into() };
    let fired = e.observe(&disk, &Reading::Percent(91.0), 0).expect("disk fires at once");
    assert_eq!(fired.message, "ALERT edge-1: disk /var: 91 % full (above 85 %)");
    assert!(e.observe(&disk, &Reading::Percent(92.0), MIN).is_none(), "no repeat");
}

#[test]
fn a_site_fires_after_three_consecutive_failures_only() {
    let mut e = engine();
    let site = Subject::Site { site: "app.example.com".into(), server: "edge-2".into() };
    let down = || Reading::Failed("HTTP 502".into());
    let events = run(
        &mut e,
        &site,
        &[
            (0, down()),
            (1, down()),
            (2, Reading::Ok),
            (3, down()),
            (4, down()),
            (5, down()),
            (6, down()),
            (7, Reading::Ok),
            (9, Reading::Ok),
        ],
    );
    assert_eq!(events, vec![(5, AlertKind::Fired), (9, AlertKind::Recovered)], "{events:?}");
}

#[test]
fn certificates_fire_when_expiring_or_unreadable_and_subjects_are_independent() {
    let mut e = engine();
    let a = Subject::Certificate { site: "a.example.com".into(), server: "edge-1".into() };
    let b = Subject::Certificate { site: "b.example.com".into(), server: "edge-1".into() };
    let fired = e.observe(&a, &Reading::DaysLeft(3.0), 0).expect("3 days left fires");
    assert!(fired.message.contains("expires in 3.0 day(s)"), "{}", fired.message);
    assert!(e.observe(&b, &Reading::DaysLeft(60.0), 0).is_none());
    let broken = e.observe(&b, &Reading::Failed("TLS handshake failed".into()), MIN).expect("unreadable fires");
    assert_eq!(broken.subject, b);
    assert_eq!(e.firing().count(), 2);
    assert!(e.observe(&a, &Reading::DaysLeft(80.0), 2 * MIN).is_none(), "clearing, not yet recovered");
    let rec = e.observe(&a, &Reading::DaysLeft(80.0), 5 * MIN).expect("recovered");
    assert_eq!((rec.kind, rec.since), (AlertKind::Recovered, 0));
}

#[test]
fn rule_configs_are_validated_with_the_field_named() {
    let bad = AlertRulesConfig { cpu_above: 150.0, ..AlertRulesConfig::default() }.build().unwrap_err();
    assert_eq!(bad.field, "cpu_above");
    assert!(bad.to_string().contains("percentage"));
    let bad = AlertRulesConfig { site_down_checks: 0, ..AlertRulesConfig::default() }.build().unwrap_err();
    assert_eq!(bad.field, "site_down_checks");
    let bad = AlertRulesConfig { cert_days: f64::NAN, ..AlertRulesConfig::default() }.build().unwrap_err();
    assert_eq!(bad.field, "cert_days");
    let parsed: Result<AlertRulesConfig, _> = serde_json::from_str(r#"{"cpu_abve": 80}"#);
    assert!(parsed.is_err(), "unknown fields are refused");
}

#[test]
fn long_messages_split_under_the_limit_and_rejoin_exactly() {
    let text: String = (0..800).map(|i| format!("line {i}: é ünïcode ✓\n")).collect();
    let parts = split_message(&text, 4096);
    assert!(parts.len() > 1);
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert!(parts[..parts.len() - 1].iter().all(|p| p.ends_with('\n')), "cut at line ends");
    assert_eq!(parts.concat(), text);
    let word = "x".repeat(10_000);
    let parts = split_message(&word, 4096);
    assert_eq!(parts.iter().map(String::len).collect::<Vec<_>>(), vec![4096, 4096, 1808]);
    assert_eq!(split_message("", 4096), vec![String::new()]);
}
