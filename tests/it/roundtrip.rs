//! Property tests: arbitrary Unicode, including every character CEF treats
//! specially, in every mapped field. Each encoded line must be one line,
//! parse strictly, and give every field back (control characters aside).

use proptest::prelude::*;
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

use siem_agent::cef::cases::{encode_single, ActivityCase, AlertCase, CASE_STRINGS};

const PORTAL: &str = "https://tenant.portal.cloudappsecurity.com";

/// Characters that exercise every escaping rule, mixed into arbitrary text.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\\', '=', '|', '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', ' ', ',', ':', '"', 'é', '✓',
            '\u{85}', '\u{2028}', '\u{feff}', '𝄞'
        ]),
        3 => prop::char::range('a', 'z'),
    ]
}

fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..24).prop_map(String::from_iter)
}

/// Occasionally a real address, so the dvc/src/c6a1 branches are taken.
fn ip_or_text() -> impl Strategy<Value = String> {
    prop_oneof![
        field(),
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
    ]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    (prop::collection::vec(field(), CASE_STRINGS), ip_or_text()).prop_map(|(mut s, ip)| {
        // Slot 6 of an activity and slot 9 of an alert hold the address.
        s[6] = ip.clone();
        s[9] = ip;
        s
    })
}

/// The configured agent version (never empty: configuration rejects that)
/// and portal URL, usually plain, sometimes hostile.
fn settings() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("1.2.3".to_owned()),
            field().prop_map(|v| format!("v{v}"))
        ],
        prop_oneof![
            Just(PORTAL.to_owned()),
            Just(format!("{PORTAL}/")),
            field().prop_map(|p| format!("https://{p}"))
        ],
    )
}

fn encoder(version: &str, portal: &str) -> Encoder {
    let header = SyslogHeader::new(HeaderStyle::Iso, Some("host-1".into()), 16).expect("valid");
    Encoder::new(version, portal, header, Mapping::Auto)
}

/// Parses `json` and encodes its single record.
fn encode(json: &str, version: &str, portal: &str) -> String {
    match encode_single(&mut encoder(version, portal), json) {
        Ok(message) => message,
        Err(why) => panic!("{why}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn activities_round_trip(
        strings in strings(),
        app_id in prop_oneof![any::<u64>(), Just(14509u64), Just(11161u64)],
        timestamp in 0i64..4_000_000_000_000,
        (version, portal) in settings(),
    ) {
        let case = ActivityCase::from_strings(&strings, app_id, timestamp);
        let line = encode(&case.to_json(), &version, &portal);
        if let Err(why) = case.check(&line, &portal, &version) {
            return Err(TestCaseError::fail(format!("{why}\ncase: {case:?}\nline: {line}")));
        }
    }

    #[test]
    fn alerts_round_trip(
        mut strings in strings(),
        severity in -2i64..6,
        score in any::<i64>(),
        app_id in prop_oneof![any::<i64>(), Just(10489i64)],
        timestamp in 0i64..4_000_000_000_000,
        (version, portal) in settings(),
    ) {
        // `title` (slot 1) must be present for auto-detection, and is
        // checked even when empty: the name then falls back to the class.
        strings[1].push('t');
        let case = AlertCase::from_strings(&strings, [severity, score, app_id], timestamp);
        let line = encode(&case.to_json(), &version, &portal);
        if let Err(why) = case.check(&line, &portal, &version) {
            return Err(TestCaseError::fail(format!("{why}\ncase: {case:?}\nline: {line}")));
        }
    }
}

#[test]
fn empty_title_falls_back_to_class_id() {
    let strings = vec![String::new(); CASE_STRINGS];
    let case = AlertCase::from_strings(&strings, [1, 0, 10489], 1);
    let line = encode(&case.to_json(), "1.2.3", PORTAL);
    case.check(&line, PORTAL, "1.2.3").expect("round trip");
    assert!(line.contains("|ALERT_GENERIC|ALERT_GENERIC|6|"), "{line}");
}
