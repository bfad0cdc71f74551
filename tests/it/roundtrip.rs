//! Property tests: arbitrary Unicode, including every character CEF treats
//! specially, in every mapped field. Each encoded line must be one line,
//! parse strictly, and give every field back (control characters aside).

use proptest::prelude::*;
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

use siem_agent::cef::cases::{encode_single, ActivityCase, AlertCase, CASE_STRINGS};
use siem_agent::cef::graph_cases::{CloudAppEventCase, GraphAlertCase, GRAPH_CASE_STRINGS};

const PORTAL: &str = "https://tenant.portal.cloudappsecurity.com";

/// Characters that exercise every escaping rule, mixed into arbitrary text.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\\', '=', '|', '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', ' ', ',', ':', '"', 'é', '✓',
            '\u{85}', '\u{2028}', '\u{feff}', '𝄞', '@'
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

fn graph_strings() -> impl Strategy<Value = Vec<String>> {
    (
        prop::collection::vec(field(), GRAPH_CASE_STRINGS),
        ip_or_text(),
        ip_or_text(),
    )
        .prop_map(|(mut s, first, second)| {
            // Slots 6 and 9 hold the addresses.
            s[6] = first;
            s[9] = second;
            s
        })
}

/// A Graph time: milliseconds over the whole range ISO text can hold,
/// sometimes at its ends, and four more digits to cut off.
fn graph_time() -> impl Strategy<Value = (i64, u16)> {
    (
        prop_oneof![
            8 => 0i64..=253_402_300_799_999,
            1 => Just(0i64),
            1 => Just(253_402_300_799_999i64),
        ],
        0u16..10_000,
    )
}

fn graph_severity() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "informational",
            "low",
            "medium",
            "high",
            "unknown",
            ""
        ])
        .prop_map(str::to_owned),
        field(),
    ]
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

/// Parses `json` and encodes its single record with `mapping`.
fn encode_as(mapping: Mapping, json: &str, version: &str, portal: &str) -> String {
    let header = SyslogHeader::new(HeaderStyle::Iso, Some("host-1".into()), 16).expect("valid");
    let mut encoder = Encoder::new(version, portal, header, mapping);
    match encode_single(&mut encoder, json) {
        Ok(message) => message,
        Err(why) => panic!("{why}"),
    }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn graph_alerts_round_trip(
        strings in graph_strings(),
        severity in graph_severity(),
        app_ids in any::<[Option<u64>; 2]>(),
        times in [graph_time(), graph_time(), graph_time(), graph_time()],
        (version, portal) in settings(),
        mapping in prop::sample::select(vec![Mapping::GraphAlerts, Mapping::Auto]),
    ) {
        let case = GraphAlertCase::from_strings(&strings, severity, app_ids, times);
        let line = encode_as(mapping, &case.to_json(), &version, &portal);
        if let Err(why) = case.check(&line, &version) {
            return Err(TestCaseError::fail(format!("{why}\ncase: {case:?}\nline: {line}")));
        }
    }

    #[test]
    fn cloud_app_events_round_trip(
        strings in graph_strings(),
        app_id in prop_oneof![any::<u64>(), Just(20892u64), Just(11161u64)],
        time in graph_time(),
        (version, portal) in settings(),
        mapping in prop::sample::select(vec![Mapping::CloudAppEvents, Mapping::Auto]),
    ) {
        let case = CloudAppEventCase::from_strings(&strings, app_id, time);
        let line = encode_as(mapping, &case.to_json(), &version, &portal);
        if let Err(why) = case.check(&line, &version) {
            return Err(TestCaseError::fail(format!("{why}\ncase: {case:?}\nline: {line}")));
        }
    }
}

/// Values of every JSON type in every mapped Graph field, and huge arrays:
/// one strict line each, never a panic, whatever the mapping.
#[test]
fn graph_records_of_the_wrong_shape_still_give_one_strict_line() {
    let hostile = [
        "null".to_owned(),
        "true".to_owned(),
        "-1.5e300".to_owned(),
        "18446744073709551615".to_owned(),
        "\"\\u0000=|\\n\\r\"".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        format!(
            "[{}]",
            vec!["{\"Name\":\"x\",\"appId\":1}"; 5_000].join(",")
        ),
    ];
    let alert_keys = [
        "id",
        "title",
        "description",
        "severity",
        "status",
        "category",
        "detectorId",
        "incidentId",
        "alertWebUrl",
        "createdDateTime",
        "lastUpdateDateTime",
        "firstActivityDateTime",
        "lastActivityDateTime",
        "mitreTechniques",
        "evidence",
    ];
    let event_keys = [
        "Timestamp",
        "ReportId",
        "ActionType",
        "ActivityType",
        "Application",
        "ApplicationId",
        "AccountObjectId",
        "AccountId",
        "AccountDisplayName",
        "IPAddress",
        "UserAgent",
        "CountryCode",
        "ObjectName",
        "ActivityObjects",
        "RawEventData",
    ];
    for (mapping, keys) in [
        (Mapping::GraphAlerts, &alert_keys[..]),
        (Mapping::CloudAppEvents, &event_keys[..]),
    ] {
        for value in &hostile {
            let record = format!(
                "{{{}}}",
                keys.iter()
                    .map(|key| format!("\"{key}\":{value}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let line = encode_as(mapping, &record, "1.0", PORTAL);
            if let Err(why) = siem_agent::cef::cases::check_one_line(&line) {
                panic!("{mapping:?} with {value:.40}: {why}");
            }
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
