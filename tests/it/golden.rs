//! The official agent's own lines, reproduced byte for byte by `replay`.
//!
//! `tests/golden/official-agent-samples.cef` holds twelve lines the vendor's
//! agent emitted. For each we wrote a JSON record in the API's shape, using
//! all four input shapes across the fixtures, and replay them with the
//! options the official agent ran with (its version, portal and host name).
//!
//! Left out: the alert whose app tag is `APPID_O365_PORTAL`. The numeric app
//! id behind that tag is not known to us, so no record can honestly be
//! written for it; adding that id to the table would be a guess.
//!
//! Also note: the official agent doubled single quotes in alert messages.
//! We write `description` as the API gives it, so these fixtures carry the
//! doubled quotes in the description itself.

use super::support::{assert_lines_eq, golden, replay, stderr_text, stdout_lines};

const ACTIVITY_PORTAL: &str = "https://contoso.portal.cloudappsecurity.com";
const ALERT_PORTAL: &str = "https://cloud-app-security.com";

/// One replay: the fixture, the options, and which official lines (1-based)
/// it must reproduce, in order.
struct Case {
    fixture: &'static str,
    version: &'static str,
    portal: &'static str,
    hostname: Option<&'static str>,
    lines: &'static [usize],
}

const CASES: &[Case] = &[
    Case {
        fixture: "activity-logout.json",
        version: "0.111.85",
        portal: ACTIVITY_PORTAL,
        hostname: None,
        lines: &[1],
    },
    Case {
        fixture: "activities-0.112.68.json",
        version: "0.112.68",
        portal: ACTIVITY_PORTAL,
        hostname: None,
        lines: &[2, 3],
    },
    Case {
        fixture: "activities-0.112.49.ndjson",
        version: "0.112.49",
        portal: ACTIVITY_PORTAL,
        hostname: None,
        lines: &[4, 5],
    },
    Case {
        fixture: "activity-with-hostname.json",
        version: "0.112.68",
        portal: ACTIVITY_PORTAL,
        hostname: Some("LAB-EUW-ARCTEST"),
        lines: &[6],
    },
    Case {
        fixture: "alerts-0.102.17.json",
        version: "0.102.17",
        portal: ALERT_PORTAL,
        hostname: None,
        lines: &[7, 8, 9, 11, 12],
    },
];

/// The line whose app id is unknown (see the module docs).
const LEFT_OUT: usize = 10;

fn official_lines() -> Vec<String> {
    std::fs::read_to_string(golden("official-agent-samples.cef"))
        .expect("the golden file is in the repo")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn replay_reproduces_the_official_lines() {
    let official = official_lines();
    assert_eq!(official.len(), 12);
    for case in CASES {
        let fixture = golden(case.fixture);
        let fixture = fixture.to_str().expect("UTF-8 path");
        let mut args = vec![
            "--agent-version",
            case.version,
            "--portal-url",
            case.portal,
            fixture,
        ];
        if let Some(host) = case.hostname {
            args.extend(["--hostname", host]);
        }
        let output = replay(&args, None);
        assert!(
            output.status.success(),
            "{}: {}",
            case.fixture,
            stderr_text(&output)
        );
        assert_eq!(stderr_text(&output), "", "{}", case.fixture);
        let expected: Vec<String> = case
            .lines
            .iter()
            .map(|&n| official[n - 1].clone())
            .collect();
        assert_lines_eq(&expected, &stdout_lines(&output));
    }
}

#[test]
fn every_official_line_but_one_is_covered() {
    let mut covered: Vec<usize> = CASES.iter().flat_map(|c| c.lines.iter().copied()).collect();
    covered.push(LEFT_OUT);
    covered.sort_unstable();
    assert_eq!(covered, (1..=12).collect::<Vec<_>>());
    assert!(official_lines()[LEFT_OUT - 1].contains("APPID_O365_PORTAL"));
}

#[test]
fn official_lines_are_strict_cef() {
    // Our strict parser must accept what the official agent wrote, or the
    // subset it enforces would not be the one SIEM content relies on.
    for line in official_lines() {
        let cef = siem_agent::cef::strict::strip_syslog_header(&line).expect("has CEF");
        if let Err(error) = siem_agent::cef::strict::parse(cef) {
            panic!("{error}: {line}");
        }
    }
}
