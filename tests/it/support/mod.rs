//! Helpers shared by the integration tests.

pub(crate) mod rsyslog;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use siem_agent::cef::strict;

/// The built `siem-agent` binary.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_siem-agent")
}

/// A file under `tests/golden/`.
pub(crate) fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Runs `siem-agent replay ARGS`, feeding `stdin` if given.
pub(crate) fn replay(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .arg("replay")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Feed stdin from another thread: the child writes output while it
    // reads, and a full stdout pipe would otherwise block both sides.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input))
    });
    let output = child.wait_with_output().expect("the binary finishes");
    if let Some(feeder) = feeder {
        let fed = feeder.join().expect("the feeder thread does not panic");
        // A binary that rejects its options exits without reading stdin.
        if let Err(error) = fed {
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe,
                "feeding stdin failed: {error}"
            );
            assert!(
                !output.status.success(),
                "stopped reading early, yet succeeded"
            );
        }
    }
    output
}

/// stdout as text, split into lines.
pub(crate) fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone())
        .expect("output is UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// stderr as text.
pub(crate) fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts two lists of CEF lines are identical; on failure says which line,
/// where it first differs, and which fields differ.
pub(crate) fn assert_lines_eq(expected: &[String], actual: &[String]) {
    let mut report = String::new();
    if expected.len() != actual.len() {
        report.push_str(&format!(
            "expected {} lines, got {}\n",
            expected.len(),
            actual.len()
        ));
    }
    for (index, (want, got)) in expected.iter().zip(actual).enumerate() {
        if want != got {
            report.push_str(&describe_difference(index, want, got));
        }
    }
    assert!(report.is_empty(), "CEF lines differ:\n{report}");
}

fn describe_difference(index: usize, want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let context = |s: &str| {
        let mut start = at.saturating_sub(40).min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 40).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        s[start..end].to_owned()
    };
    let mut text = format!(
        "line {}: first difference at byte {at}\n  expected …{}…\n  actual   …{}…\n",
        index + 1,
        context(want),
        context(got)
    );
    let parse = |s: &str| strict::strip_syslog_header(s).and_then(strict::parse);
    match (parse(want), parse(got)) {
        (Ok(w), Ok(g)) => {
            for (field, (a, b)) in w.header.iter().zip(&g.header).enumerate() {
                if a != b {
                    text.push_str(&format!("  header field {field}: {a:?} != {b:?}\n"));
                }
            }
            for (key, value) in &w.extension {
                match g.get(key) {
                    Some(v) if v == value => {}
                    other => text.push_str(&format!("  {key}: {value:?} != {other:?}\n")),
                }
            }
            if w.keys() != g.keys() {
                text.push_str(&format!("  keys: {:?}\n     vs {:?}\n", w.keys(), g.keys()));
            }
        }
        (_, Err(error)) => text.push_str(&format!("  actual line is not strict CEF: {error}\n")),
        (Err(error), _) => text.push_str(&format!("  expected line is not strict CEF: {error}\n")),
    }
    text
}
