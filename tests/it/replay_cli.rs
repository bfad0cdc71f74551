//! `siem-agent replay` as a user runs it: inputs, options, exit codes and
//! messages.

use std::fs;

use super::support::{golden, replay, stderr_text, stdout_lines};
use siem_agent::cef::cases::check_one_line;

fn sample(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    path.to_str().expect("UTF-8 path").to_owned()
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("siem-agent-it-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    fs::write(&path, contents).expect("temp file");
    path
}

#[test]
fn example_file_gives_one_strict_line_per_record() {
    let output = replay(&[&sample("records.json")], None);
    assert!(output.status.success(), "{}", stderr_text(&output));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("|EVENT_CATEGORY_DOWNLOAD_FILE|Download file|0|"));
    assert!(lines[1].contains("|ALERT_CABINET_EVENT_MATCH_AUDIT|Mass download by a single user|6|"));
    for line in &lines {
        check_one_line(line).expect("strict CEF");
    }
}

#[test]
fn malformed_input_is_reported_and_the_rest_is_written() {
    let bad = temp_file(
        "mixed.ndjson",
        b"{\"_id\":\"first\"}\n{\"_id\": oops}\n[{\"_id\":\"second\"}, 42]\n{\"_id\":\"\xff\"}\n{\"_id\":\"third\"}\n",
    );
    let good = golden("activity-logout.json");
    let output = replay(
        &[bad.to_str().expect("utf-8"), good.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(output.status.code(), Some(65), "{}", stderr_text(&output));
    let ids: Vec<String> = stdout_lines(&output)
        .iter()
        .map(|l| {
            let cef = check_one_line(l).expect("strict CEF");
            cef.get("externalId").expect("has id").to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        [
            "first",
            "second",
            "third",
            "1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0"
        ]
    );
    let errors = stderr_text(&output);
    let name = bad.display().to_string();
    assert!(
        errors.contains(&format!("{name}: line 2: invalid JSON")),
        "{errors}"
    );
    assert!(
        errors.contains(&format!(
            "{name}: line 3, record 2: not a JSON object (found a number)"
        )),
        "{errors}"
    );
    assert!(
        errors.contains(&format!("{name}: line 4: invalid JSON: invalid UTF-8")),
        "{errors}"
    );
    assert!(
        errors.contains("3 malformed input item(s) skipped; 4 record(s) written"),
        "{errors}"
    );
}

#[test]
fn a_missing_file_does_not_stop_the_others() {
    let good = golden("activity-logout.json");
    let output = replay(
        &["/nonexistent/records.json", good.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(output.status.code(), Some(66));
    assert_eq!(stdout_lines(&output).len(), 1);
    assert!(stderr_text(&output).contains("/nonexistent/records.json: cannot read"));
}

#[test]
fn reads_stdin_by_default_and_for_dash() {
    let input = fs::read(golden("activities-0.112.49.ndjson")).expect("fixture");
    let implicit = replay(&[], Some(&input));
    let explicit = replay(&["-"], Some(&input));
    assert!(implicit.status.success() && explicit.status.success());
    assert_eq!(stdout_lines(&implicit).len(), 2);
    assert_eq!(implicit.stdout, explicit.stdout);
}

#[test]
fn data_type_can_be_forced() {
    let alert = fs::read(golden("alerts-0.102.17.json")).expect("fixture");
    let output = replay(&["--data-type", "activities"], Some(&alert));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 5);
    assert!(lines
        .iter()
        .all(|l| l.contains("|EVENT_CATEGORY_UNSPECIFIED|")));
    let activity = fs::read(golden("activity-logout.json")).expect("fixture");
    let output = replay(&["--data-type", "alerts"], Some(&activity));
    assert!(stdout_lines(&output)[0].contains("|ALERT_GENERIC|"));
}

#[test]
fn header_styles_and_facility() {
    let input = fs::read(golden("activity-logout.json")).expect("fixture");
    let cases = [
        (
            vec!["--header", "rfc5424", "--hostname", "collector1"],
            "<134>1 2017-11-22T17:50:04.000Z collector1 siem-agent - - - CEF:0|",
        ),
        (
            vec![
                "--header",
                "rfc3164",
                "--hostname",
                "collector1",
                "--facility",
                "1",
            ],
            "<14>Nov 22 17:50:04 collector1 CEF:0|",
        ),
        (vec!["--header", "none"], "CEF:0|"),
        (vec!["--hostname", "h"], "2017-11-22T17:50:04.000Z h CEF:0|"),
    ];
    for (args, prefix) in cases {
        let output = replay(&args, Some(&input));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            stderr_text(&output)
        );
        let line = &stdout_lines(&output)[0];
        assert!(line.starts_with(prefix), "{args:?}: {line}");
    }
    // Without --hostname the RFC styles name this machine.
    let output = replay(&["--header", "rfc3164"], Some(&input));
    let line = &stdout_lines(&output)[0];
    let host = line.split(' ').nth(3).expect("a host field");
    assert!(
        !host.is_empty() && host != "CEF:0|MCAS|SIEM_Agent|",
        "{line}"
    );
}

#[test]
fn bad_options_are_rejected_with_the_value() {
    for (args, message) in [
        (vec!["--facility", "30"], "facility 30 is out of range"),
        (
            vec!["--hostname", "has space"],
            "\"has space\" is not valid",
        ),
        (
            vec!["--portal-url", "ftp://x"],
            "\"ftp://x\" is not an http",
        ),
        (vec!["--agent-version", ""], "must be 1 to 31 characters"),
    ] {
        let output = replay(&args, Some(b"{}"));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_text(&output).contains(message),
            "{args:?}: {}",
            stderr_text(&output)
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn many_records_come_out_in_order() {
    let mut input = Vec::new();
    for n in 0..20_000 {
        input.extend_from_slice(
            format!(
                "{{\"_id\":\"id-{n}\",\"timestamp\":{},\"description\":\"d\"}}\n",
                1_500_000_000_000u64 + n
            )
            .as_bytes(),
        );
    }
    let output = replay(&["--header", "none"], Some(&input));
    assert!(output.status.success());
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 20_000);
    for (n, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!("externalId=id-{n} ")),
            "line {n}: {line}"
        );
    }
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // Enough output to fill the pipe several times over.
    let mut input = Vec::new();
    for n in 0..50_000 {
        input.extend_from_slice(format!("{{\"_id\":\"id-{n}\"}}\n").as_bytes());
    }
    let path = temp_file("many.ndjson", &input);
    let mut child = Command::new(super::support::bin())
        .args(["replay", path.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout); // like `| head -c 100`
    let output = child.wait_with_output().expect("finishes");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_text(&output));
    assert_eq!(stderr_text(&output), "");
}
