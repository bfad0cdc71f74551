//! Microsoft Graph records as CEF, held to the lines the project's spec
//! (`graph-sources.md`) writes out field by field.
//!
//! `tests/golden/graph-alerts.cef` and `cloud-app-events.cef` were written
//! from the spec's field list for the two sample answers beside them (an
//! `alerts_v2` page and a `runHuntingQuery` result, shaped like Microsoft's
//! documented responses), with the epoch milliseconds worked out apart
//! from this code. The edge cases below are the spec's "details that
//! decide", one record each, with the line the spec implies.

use super::support::{assert_lines_eq, golden, replay, stderr_text, stdout_lines};

fn golden_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(golden(name))
        .expect("the golden file is in the repo")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Replays `input` (a file, or stdin when `None` is given with `stdin`)
/// with no syslog header and version 1.0; the lines.
fn lines(extra: &[&str], input: Option<&str>, stdin: Option<&[u8]>) -> Vec<String> {
    let mut args = vec!["--agent-version", "1.0", "--header", "none"];
    args.extend_from_slice(extra);
    if let Some(input) = input {
        args.push(input);
    }
    let output = replay(&args, stdin);
    assert!(output.status.success(), "{}", stderr_text(&output));
    assert_eq!(stderr_text(&output), "");
    stdout_lines(&output)
}

#[test]
fn an_alerts_v2_page_gives_the_spec_lines_by_detection_and_by_name() {
    let page = golden("graph-alerts-page.json");
    let page = page.to_str().expect("UTF-8 path");
    let expected = golden_lines("graph-alerts.cef");
    assert_lines_eq(&expected, &lines(&[], Some(page), None));
    assert_lines_eq(
        &expected,
        &lines(&["--data-type", "graph-alerts"], Some(page), None),
    );
}

#[test]
fn a_hunting_result_gives_the_spec_lines_by_detection_and_by_name() {
    let result = golden("cloud-app-events-result.json");
    let result = result.to_str().expect("UTF-8 path");
    let expected = golden_lines("cloud-app-events.cef");
    assert_lines_eq(&expected, &lines(&[], Some(result), None));
    assert_lines_eq(
        &expected,
        &lines(&["--data-type", "cloud-app-events"], Some(result), None),
    );
}

#[test]
fn graph_lines_are_strict_cef_behind_every_header_style() {
    for name in ["graph-alerts-page.json", "cloud-app-events-result.json"] {
        let input = golden(name);
        for style in ["iso", "rfc3164", "rfc5424"] {
            let output = replay(
                &[
                    "--header",
                    style,
                    "--hostname",
                    "h",
                    input.to_str().expect("path"),
                ],
                None,
            );
            assert!(output.status.success(), "{}", stderr_text(&output));
            for line in stdout_lines(&output) {
                if let Err(why) = siem_agent::cef::cases::check_one_line(&line) {
                    panic!("{name} {style}: {why}");
                }
            }
        }
    }
}

#[test]
fn the_syslog_header_carries_the_record_time() {
    let input = golden("graph-alerts-page.json");
    let output = replay(&[input.to_str().expect("path")], None);
    let lines = stdout_lines(&output);
    // createdDateTime of each alert, cut to the millisecond.
    assert!(
        lines[0].starts_with("2026-11-30T10:02:17.523Z CEF:0|"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("2026-11-30T10:03:41.000Z CEF:0|"),
        "{}",
        lines[1]
    );
    let input = golden("cloud-app-events-result.json");
    let output = replay(&[input.to_str().expect("path")], None);
    assert!(stdout_lines(&output)[0].starts_with("2026-11-30T10:00:01.446Z CEF:0|"));
}

/// An alert and the line the spec gives it.
const ALERT_CASES: &[(&str, &str)] = &[
    // Nothing but an id: the class and name fall back to ALERT_GENERIC,
    // severity 3, every other value empty.
    (
        r##"{"id":"a1","createdDateTime":"2026-01-01T00:00:00Z"}"##,
        "CEF:0|MCAS|SIEM_Agent|1.0|ALERT_GENERIC|ALERT_GENERIC|3|externalId=a1 start= end= msg= suser= destinationServiceName= cn1Label=riskScore cn1= cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2= cs3Label=relatedAudits cs3= cs4Label=policyIDs cs4= rt= cat= act= cs5Label=incidentId cs5= cs6Label=mitreTechniques cs6=",
    ),
    // The first user evidence counts even when its principal is empty
    // (then its account name); later ones are not searched. An app without
    // appId adds no tag; times not in UTC `Z` form are empty; severity
    // words are matched exactly.
    (
        r##"{"id":"a2","title":"","detectorId":"d|x","severity":"High","createdDateTime":"2026-01-01T00:00:00Z",
            "firstActivityDateTime":"2026-01-01T00:00:00+01:00","lastActivityDateTime":"2026-01-01T00:00:00.5Z",
            "lastUpdateDateTime":5,"status":"resolved","category":"a=b","incidentId":7,"mitreTechniques":"T1",
            "evidence":[
              {"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"2001:db8::1"},
              {"@odata.type":"#microsoft.graph.security.userEvidence","userAccount":{"userPrincipalName":"","accountName":"jdoe"}},
              {"@odata.type":"#microsoft.graph.security.userEvidence","userAccount":{"userPrincipalName":"later@x"}},
              {"@odata.type":"#microsoft.graph.security.cloudApplicationEvidence","displayName":"App One"},
              {"@odata.type":"#microsoft.graph.security.cloudApplicationEvidence","appId":10489,"displayName":"Box"},
              {"@odata.type":"#microsoft.graph.security.cloudApplicationEvidence","appId":"33626"},
              {"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"10.1.2.3"},
              {"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"10.9.9.9"}
            ]}"##,
        "CEF:0|MCAS|SIEM_Agent|1.0|d\\|x|d\\|x|3|externalId=a2 start= end=1767225600500 msg= suser=jdoe destinationServiceName=App One cn1Label=riskScore cn1= cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2=APPID_BOX,APPID_33626 cs3Label=relatedAudits cs3= cs4Label=policyIDs cs4= src=10.1.2.3 c6a1=2001:db8::1 rt= cat=a\\=b act=resolved cs5Label=incidentId cs5=7 cs6Label=mitreTechniques cs6=T1",
    ),
    // A first user evidence without an account leaves suser empty.
    (
        r##"{"id":"a3","title":"T\nU","severity":"informational","evidence":[
              {"@odata.type":"#microsoft.graph.security.userEvidence"},
              {"@odata.type":"#microsoft.graph.security.userEvidence","userAccount":{"userPrincipalName":"u@x"}}]}"##,
        "CEF:0|MCAS|SIEM_Agent|1.0|ALERT_GENERIC|T U|1|externalId=a3 start= end= msg= suser= destinationServiceName= cn1Label=riskScore cn1= cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2= cs3Label=relatedAudits cs3= cs4Label=policyIDs cs4= rt= cat= act= cs5Label=incidentId cs5= cs6Label=mitreTechniques cs6=",
    ),
];

/// A hunting row and the line the spec gives it.
const EVENT_CASES: &[(&str, &str)] = &[
    // An empty ActionType with an ObjectName: `msg=: <ObjectName>`, the
    // class and name fall back; an object-id AccountId gives way to the
    // UPN in RawEventData.
    (
        r##"{"ReportId":"r1","ActionType":"","ObjectName":"doc.txt","AccountId":"1b2c3d4e","RawEventData":{"UserId":"u@x.com"},"AccountDisplayName":"U","Timestamp":"2026-01-01T00:00:00.1234567Z"}"##,
        "CEF:0|MCAS|SIEM_Agent|1.0|EVENT_CATEGORY_UNSPECIFIED|EVENT_CATEGORY_UNSPECIFIED|0|externalId=r1 rt=1767225600123 start=1767225600123 end=1767225600123 msg=: doc.txt suser=u@x.com destinationServiceName= dvc= requestClientApplication= cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2= cs3Label=targetObjects cs3= cs4Label=policyIDs cs4= c6a1Label=\"Device IPv6 Address\" c6a1= act= cat= suid= cs5Label=countryCode cs5=",
    ),
    // No principal anywhere: the display name. Wrong types write nothing,
    // numbers their text; an IPv4 address goes to dvc.
    (
        r##"{"ReportId":7,"ActionType":"A=B","AccountId":"guid","RawEventData":"not an object","AccountDisplayName":"Jane Doe",
            "IPAddress":"192.0.2.1","ApplicationId":99999,"ActivityObjects":[{"Name":"a,b"},{"Type":"x"},{"Name":3}],
            "ActivityType":null,"AccountObjectId":["x"],"CountryCode":true,"Timestamp":"2026-01-01T00:00:00"}"##,
        "CEF:0|MCAS|SIEM_Agent|1.0|A=B|A=B|0|externalId=7 rt= start= end= msg=A\\=B suser=Jane Doe destinationServiceName= dvc=192.0.2.1 requestClientApplication= cs1Label=portalURL cs1= cs2Label=uniqueServiceAppIds cs2=APPID_99999 cs3Label=targetObjects cs3=a,b,,3 cs4Label=policyIDs cs4= c6a1Label=\"Device IPv6 Address\" c6a1= act=A\\=B cat= suid= cs5Label=countryCode cs5=true",
    ),
];

#[test]
fn the_spec_edge_cases_give_the_lines_it_implies() {
    for (data_type, cases) in [
        ("graph-alerts", ALERT_CASES),
        ("cloud-app-events", EVENT_CASES),
    ] {
        for (record, line) in cases {
            // Each record is one JSON line; its pretty-printing here is for
            // reading only.
            let record: String = record.lines().map(str::trim).collect();
            let expected = vec![(*line).to_owned()];
            for extra in [&["--data-type", data_type][..], &[]] {
                let got = lines(extra, None, Some(record.as_bytes()));
                assert_lines_eq(&expected, &got);
                if let Err(why) = siem_agent::cef::cases::check_one_line(&got[0]) {
                    panic!("{why}");
                }
            }
        }
    }
}
