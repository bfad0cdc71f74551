//! What hostile configurations and surroundings do to the agent (issue
//! 17): each case here crashed or misbehaved before its fix, and must now
//! end with a clear error and the documented exit status, or not at all.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use siem_agent::simulator::Simulator;

use super::pull::{run_args, scratch, simulator};
use super::support::bin;

/// Runs the binary with `args` to the end, within `limit`; the status code
/// and stderr.
fn run(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch(&format!(
        "hostile-run-{}",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let err = dir.join("stderr");
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn durations_the_clock_cannot_hold_are_refused_at_start_up() {
    let dir = scratch("hostile-durations");
    let state = dir.join("state");
    let state = state.to_str().expect("utf-8");
    for (flag, value) in [
        ("--poll-interval", "500000000000 years"),
        ("--shutdown-timeout", "500000000000 years"),
        ("--backfill", "11 years"),
        ("--retry-max-delay", "500000000000 years"),
    ] {
        let (code, stderr) = run(
            &[
                "run",
                "--api-url",
                "http://127.0.0.1:9",
                "--token",
                "t",
                "--state-dir",
                state,
                "--once",
                flag,
                value,
            ],
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("at most 10 years"),
            "{flag}: {stderr}"
        );
    }
    // In the config file, the error points at the key.
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[[tenant]]\napi_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\npoll_interval = \"500000000000 years\"\n",
    )
    .expect("config");
    let (code, stderr) = run(
        &[
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--state-dir",
            state,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.toml:4") && stderr.contains("poll_interval"),
        "{stderr}"
    );
}

#[test]
fn tenants_whose_state_files_would_collide_are_refused() {
    let dir = scratch("hostile-collide");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[defaults]\napi_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\n\
         [[tenant]]\nname = \"acme corp\"\n[[tenant]]\nname = \"acme_corp\"\n",
    )
    .expect("config");
    let state = dir.join("state");
    let (code, stderr) = run(
        &[
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"acme corp\"")
            && stderr.contains("\"acme_corp\"")
            && stderr.contains(":7"),
        "{stderr}"
    );
    assert!(!state.exists(), "nothing was started");
}

#[test]
fn a_closed_stderr_does_not_take_the_agent_down() {
    let sim = Simulator::start(simulator(Duration::from_secs(600), 60)).expect("starts");
    let dir = scratch("hostile-stderr");
    let mut args = run_args(&sim, &dir);
    args.push("--once".into());
    let mut child = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // The reader goes away before the agent writes its first log line.
    drop(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?} (101 is a panic)");
}
