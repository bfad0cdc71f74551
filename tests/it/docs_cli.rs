//! What a packager and a user read: `--version` (with the commit), the shell
//! completions and the manual pages, all made from the clap definitions.

use std::process::Command;

use super::support::bin;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().expect("runs")
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let output = run(&["--version"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let expected_start = format!("siem-agent {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start), "{text}");
    let commit = text
        .trim_end()
        .trim_start_matches(&expected_start)
        .trim_end_matches(')');
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match head {
        // Built in a checkout: the commit checked out.
        Some(head) => assert_eq!(commit, head, "{text}"),
        // Built from a source tarball without git.
        None => assert!(commit == "unknown" || commit.bytes().all(|b| b.is_ascii_hexdigit())),
    }
}

#[test]
fn completions_cover_the_subcommands_and_their_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef siem-agent"),
        ("fish", "complete -c siem-agent"),
    ] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).expect("utf-8");
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // Flags without their dashes: fish names them `-l threads`.
        for word in ["replay", "demo", "threads", "syslog-protocol", "graph-url"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let unknown = run(&["completions", "cmd.exe"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("cmd.exe"));
}

#[test]
fn man_pages_document_every_subcommand_and_option() {
    let dir = std::env::temp_dir().join(format!("siem-agent-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = run(&["man", "--dir", dir.to_str().expect("utf-8")]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let main = page("siem-agent.1");
    assert!(main.contains(".TH siem-agent 1"), "{main}");
    for sub in [
        "run",
        "status",
        "replay",
        "demo",
        "simulate",
        "completions",
        "man",
    ] {
        let sub_page = page(&format!("siem-agent-{sub}.1"));
        assert!(sub_page.contains(&format!(".TH siem-agent-{sub} 1")));
        assert!(
            sub_page.contains(&format!("siem\\-agent {sub}")),
            "usage of {sub}"
        );
    }
    // Options as the flags define them, with their help text.
    assert!(page("siem-agent-replay.1").contains("\\-\\-threads"));
    assert!(main.contains("\\-\\-syslog\\-protocol"));
    assert!(main.contains("SIEM_AGENT_CONFIG"));
    // Without --dir, the main page goes to stdout.
    let stdout = run(&["man"]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8(stdout.stdout).expect("utf-8"), main);
    let _ = std::fs::remove_dir_all(&dir);
}
