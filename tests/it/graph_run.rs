//! The Graph data types through the whole agent: the binary's `run`
//! pulling `graph-alerts` and `cloud-app-events` from the simulator over
//! real HTTP on loopback, checked line by line with the strict CEF parser.
//!
//! Every test is bounded in time and asserts what was delivered: each
//! record once, or the record a documented limit gives up, or the clear
//! error and exit code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siem_agent::cef::cases::check_one_line;
use siem_agent::clock::now_ms;
use siem_agent::exit;
use siem_agent::simulator::data::{mix, StreamConfig};
use siem_agent::simulator::graph::{alert_id, report_id, update_count};
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::status::{read_reports, StatusReport};

use super::pull::{delivered, run_to_end, scratch, spawn};

/// A simulated tenant with `history` of events at `events_per_minute`
/// and 30 alerts a minute, every record visible at once, no request limit.
fn graph_simulator(history: Duration, events_per_minute: u64) -> SimulatorConfig {
    let mut config = SimulatorConfig::new(now_ms(), history);
    config.requests_per_minute = None;
    config.activities.per_minute = events_per_minute;
    config.activities.max_index_delay_ms = 0;
    config.alerts.per_minute = 30;
    config.alerts.max_index_delay_ms = 0;
    config
}

/// `run` arguments pulling `kinds` from the simulator's Graph endpoints
/// with its mock Entra application (the secret in a file under `dir`):
/// windows settle at once, a one-minute late window, 200 ms polls.
fn graph_args(sim: &Simulator, config: &SimulatorConfig, dir: &Path, kinds: &str) -> Vec<String> {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{}\n", config.client_secret)).expect("secret file");
    [
        "run",
        "--tenant",
        "graph",
        "--data-types",
        kinds,
        "--graph-url",
        &sim.url(),
        "--login-url",
        &sim.url(),
        "--tenant-id",
        "contoso-tenant",
        "--client-id",
        &config.client_id,
        "--client-secret-file",
        secret_file.to_str().expect("utf-8"),
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--requests-per-minute",
        "0",
        "--backfill",
        "1h",
        "--poll-interval",
        "200ms",
        "--graph-settle",
        "0s",
        "--graph-late-window",
        "1m",
        "--retry-max-delay",
        "2s",
        "--header",
        "none",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Ids (`ReportId`) of the hunting rows with times in `[from, to)`.
fn event_ids(stream: &StreamConfig, from: i64, to: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut index = stream.first_index_at_or_after(from);
    while stream.timestamp(index) < to {
        ids.push(report_id(stream, index));
        index += 1;
    }
    ids
}

/// Ids of the alerts created in `[from, to)`.
fn alert_ids(stream: &StreamConfig, from: i64, to: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut index = stream.first_index_at_or_after(from);
    while stream.timestamp(index) < to {
        ids.push(alert_id(stream, index));
        index += 1;
    }
    ids
}

/// Every id in `expected` delivered exactly once.
fn assert_once(ids: &HashMap<String, u32>, expected: &[String], what: &str) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    let repeated: Vec<(&String, &u32)> = expected
        .iter()
        .filter_map(|id| ids.get_key_value(id))
        .filter(|(_, n)| **n > 1)
        .collect();
    assert!(repeated.is_empty(), "{what}: delivered twice: {repeated:?}");
}

fn success(args: &[String], out: &Path, limit: Duration) {
    let output = run_to_end(args, out, limit);
    assert!(
        output.status.success(),
        "exit {:?}; log:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for `child` to exit after SIGTERM, at most a minute.
fn stop(mut child: Child, log: &Path) {
    sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "exit {:?}; log:\n{}",
                status.code(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent ignored SIGTERM for a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `done` every 50 ms until it holds, at most `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tenant's status file, once written.
fn status_report(dir: &Path) -> Option<StatusReport> {
    read_reports(&dir.join("state"))
        .ok()?
        .reports
        .into_iter()
        .find(|report| report.tenant == "graph")
}

#[test]
fn a_backfill_of_both_types_splits_full_answers_and_delivers_every_record_once() {
    // 30 minutes of events at 600 a minute: 18,000 rows, 1,000 an answer,
    // cut at 1,000 by the service too. Alerts come 25 a page: windows
    // split, and the stream's 40-alert bursts in one millisecond are paged
    // through with nextLinks.
    let mut config = graph_simulator(Duration::from_secs(1800), 600);
    config.graph.row_cap = 1_000;
    config.graph.alerts_page_cap = 25;
    let (events, alerts) = (config.activities.clone(), config.alerts.clone());
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-backfill");
    let args = with(
        graph_args(&sim, &config, &dir, "graph-alerts,cloud-app-events"),
        &["--cloud-app-events-page-size", "1000", "--once"],
    );
    let from = now_ms() - 3_600_000;
    let before = now_ms();
    let out = dir.join("out.cef");
    success(&args, &out, Duration::from_secs(240));
    let ids = delivered(&[out]);
    let expected_events = event_ids(&events, from, before);
    assert!(expected_events.len() > 17_000, "{}", expected_events.len());
    assert_once(&ids, &expected_events, "cloud-app-events");
    assert_once(&ids, &alert_ids(&alerts, from, before), "graph-alerts");
    // 18,000 rows cannot come in fewer than 18 answers of 1,000.
    let answers = sim.stats().pages.load(Ordering::Relaxed);
    assert!(answers > 18, "only {answers} answers");
}

#[test]
fn kill_9_mid_backfill_repeats_at_most_the_unconfirmed_answers_and_loses_nothing() {
    let mut config = graph_simulator(Duration::from_secs(1800), 1_200);
    config.graph.alerts_page_cap = 50;
    let (events, alerts) = (config.activities.clone(), config.alerts.clone());
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-kill");
    let page = 2_000;
    let args = with(
        graph_args(&sim, &config, &dir, "cloud-app-events,graph-alerts"),
        &["--cloud-app-events-page-size", &page.to_string()],
    );
    let from = now_ms() - 3_600_000;
    let before = now_ms();
    let mut outputs: Vec<PathBuf> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(16);
    let kills = 6;
    for round in 0..kills {
        let out = dir.join(format!("run{round}.cef"));
        let mut child = spawn(&args, &out);
        std::thread::sleep(Duration::from_millis(rng.u64(100..1_500)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        outputs.push(out);
    }
    let out = dir.join("final.cef");
    success(&with(args, &["--once"]), &out, Duration::from_secs(240));
    outputs.push(out);
    let ids = delivered(&outputs);
    let expected_events = event_ids(&events, from, before);
    let expected_alerts = alert_ids(&alerts, from, before);
    for (expected, what) in [
        (&expected_events, "cloud-app-events"),
        (&expected_alerts, "graph-alerts"),
    ] {
        let missing = expected.iter().filter(|id| !ids.contains_key(*id)).count();
        assert_eq!(missing, 0, "{what}: {missing} lost");
    }
    let duplicates: u32 = ids.values().map(|n| n - 1).sum();
    // A kill repeats at most what was sent but not confirmed: the answers
    // in flight, one of each type.
    let bound = kills * (page + 50);
    assert!(duplicates <= bound, "{duplicates} duplicates > {bound}");
}

#[test]
fn late_rows_within_the_late_window_are_caught_once_and_later_ones_are_missed() {
    // Rows become visible up to 6 s after their time. Windows settle for
    // 1 s and each poll asks the last 2 s again: rows up to 3 s late are
    // caught; rows later than that plus a poll are missed, as documented.
    let mut config = graph_simulator(Duration::from_secs(30), 600);
    config.activities.max_index_delay_ms = 6_000;
    let events = config.activities.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-late");
    let mut args = graph_args(&sim, &config, &dir, "cloud-app-events");
    for (flag, value) in [("--graph-settle", "1s"), ("--graph-late-window", "2s")] {
        let at = args.iter().position(|a| a == flag).expect("flag") + 1;
        args[at] = value.to_owned();
    }
    let start = now_ms();
    let out = dir.join("out.cef");
    let child = spawn(&args, &out);
    // Tail for 20 s of new rows after the start.
    std::thread::sleep(Duration::from_secs(20));
    wait_for(Duration::from_secs(30), "a status file", || {
        status_report(&dir).is_some()
    });
    let report = status_report(&dir).expect("status");
    stop(child, &out.with_extension("err"));
    let ids = delivered(&[out]);
    let (mut caught, mut missed, mut late_caught) = (0, 0, 0);
    let mut index = events.first_index_at_or_after(start + 1_000);
    while events.timestamp(index) < start + 12_000 {
        let delay = events.created(index) - events.timestamp(index);
        let id = report_id(&events, index);
        let count = ids.get(&id).copied().unwrap_or(0);
        assert!(count <= 1, "{id} delivered {count} times");
        if delay <= 3_000 {
            assert_eq!(count, 1, "{id}, visible {delay} ms late, was lost");
            caught += 1;
            if delay > 1_000 {
                late_caught += 1;
            }
        } else if delay > 3_000 + 200 + 1_000 {
            // Past settle + late window + a poll (and a second of slack).
            assert_eq!(count, 0, "{id}, visible {delay} ms late, was delivered");
            missed += 1;
        }
        index += 1;
    }
    assert!(
        caught > 20 && missed > 5 && late_caught > 5,
        "{caught} {missed} {late_caught}"
    );
    let kind = report
        .data_types
        .iter()
        .find(|k| k.data_type == "cloud-app-events")
        .expect("the data type in the status");
    assert!(kind.late > 0, "late catches are counted: {kind:?}");
    assert!(report.graph.is_some() && report.api.is_none(), "{report:?}");
}

#[test]
fn every_alert_update_is_a_line_in_all_mode_and_only_the_first_in_new_mode() {
    // Four alerts a second, each updated 0 to 2 times, 3 s apart.
    let mut config = graph_simulator(Duration::from_secs(10), 60);
    config.alerts.per_minute = 240;
    config.graph.update_every_ms = 3_000;
    let alerts = config.alerts.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let (all_dir, new_dir) = (scratch("graph-versions-all"), scratch("graph-versions-new"));
    let all_args = with(
        graph_args(&sim, &config, &all_dir, "graph-alerts"),
        &["--graph-alerts-versions", "all"],
    );
    let new_args = graph_args(&sim, &config, &new_dir, "graph-alerts");
    let start = now_ms();
    let (all_out, new_out) = (all_dir.join("out.cef"), new_dir.join("out.cef"));
    let all = spawn(&all_args, &all_out);
    let new = spawn(&new_args, &new_out);
    // Alerts created in the first 6 s have had both updates by 14 s.
    std::thread::sleep(Duration::from_secs(15));
    stop(all, &all_out.with_extension("err"));
    stop(new, &new_out.with_extension("err"));
    let lines = |file: &Path| -> HashMap<String, Vec<String>> {
        let mut versions: HashMap<String, Vec<String>> = HashMap::new();
        for line in std::fs::read_to_string(file).expect("output").lines() {
            let cef = check_one_line(line).unwrap_or_else(|e| panic!("{e}"));
            let id = cef.get("externalId").expect("id").to_owned();
            let rt = cef.get("rt").expect("rt").to_owned();
            versions.entry(id).or_default().push(rt);
        }
        versions
    };
    let (all_lines, new_lines) = (lines(&all_out), lines(&new_out));
    let mut updated = 0;
    let mut index = alerts.first_index_at_or_after(start + 500);
    while alerts.timestamp(index) < start + 6_000 {
        let id = alert_id(&alerts, index);
        let versions = 1 + update_count(&alerts, index);
        let mut seen = all_lines.get(&id).cloned().unwrap_or_default();
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(
            (total, seen.len() as i64),
            (versions as usize, versions),
            "{id}: one line per version, each once"
        );
        assert_eq!(
            new_lines.get(&id).map(Vec::len),
            Some(1),
            "{id} in new mode"
        );
        updated += i64::from(versions > 1);
        index += 1;
    }
    assert!(updated > 0, "no alert was updated in the checked span");
}

#[test]
fn throttling_the_cpu_quota_and_too_large_results_are_ridden_out_without_failures() {
    let mut config = graph_simulator(Duration::from_secs(600), 600);
    // One request a second: most first tries get 429 (with the quota
    // message for hunting). Windows of more than 1,500 rows are refused as
    // too heavy: the agent splits them after Graph's 1 s.
    config.requests_per_minute = Some(1);
    config.rate_window = Duration::from_secs(1);
    config.retry_after_seconds = Some(1);
    config.graph.cpu_rows_limit = Some(1_500);
    config.graph.heavy_retry_after = Some(1);
    // And a result over 800 KB (about 1,200 rows) is refused as too large.
    config.graph.result_bytes_limit = Some(800_000);
    let events = config.activities.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-throttled");
    let args = with(
        graph_args(&sim, &config, &dir, "cloud-app-events"),
        &["--max-critical-errors", "1", "--once"],
    );
    let from = now_ms() - 3_600_000;
    let before = now_ms();
    let out = dir.join("out.cef");
    success(&args, &out, Duration::from_secs(240));
    let ids = delivered(&[out]);
    assert_once(&ids, &event_ids(&events, from, before), "cloud-app-events");
    let throttled = sim.stats().throttled.load(Ordering::Relaxed);
    let refused = sim.stats().graph_refused.load(Ordering::Relaxed);
    assert!(throttled >= 2, "only {throttled} 429 answers");
    assert!(
        refused >= 2,
        "only {refused} windows refused as too heavy or too large"
    );
}

#[test]
fn a_missing_permission_stops_the_start_naming_it() {
    let mut config = graph_simulator(Duration::from_secs(60), 60);
    config.graph.denied = vec!["ThreatHunting.Read.All".to_owned()];
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-forbidden");
    let args = with(
        graph_args(&sim, &config, &dir, "graph-alerts,cloud-app-events"),
        &["--once"],
    );
    let output = run_to_end(&args, &dir.join("out.cef"), Duration::from_secs(60));
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::INVALID_TOKEN)),
        "{log}"
    );
    assert!(
        log.contains("ThreatHunting.Read.All") && log.contains("consent"),
        "{log}"
    );
}

#[test]
fn a_secret_that_goes_bad_mid_run_is_reported_and_a_fixed_one_resumes() {
    // Tokens live 2 s, so the secret is used again every few seconds.
    let mut config = graph_simulator(Duration::from_secs(60), 600);
    config.entra_token_seconds = 2;
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-secret");
    let args = with(
        graph_args(&sim, &config, &dir, "cloud-app-events"),
        &["--max-critical-errors", "1000"],
    );
    let out = dir.join("out.cef");
    let child = spawn(&args, &out);
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(60), "the backfill", || lines() > 100);
    std::fs::write(dir.join("secret"), "a-revoked-secret\n").expect("secret file");
    wait_for(Duration::from_secs(60), "the refusal in the status", || {
        status_report(&dir)
            .and_then(|report| report.graph)
            .and_then(|graph| graph.link.last_error)
            .is_some_and(|error| error.contains("invalid_client") && !error.contains("a-revoked"))
    });
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert!(log.contains("Invalid client secret"), "{log}");
    assert!(!log.contains(&config.client_secret) && !log.contains("a-revoked-secret"));
    let refused_at = lines();
    std::fs::write(dir.join("secret"), &config.client_secret).expect("secret file");
    wait_for(Duration::from_secs(60), "rows after the fix", || {
        lines() > refused_at + 5
    });
    stop(child, &out.with_extension("err"));
    // Neither the secrets nor any bearer token the simulator issued reach
    // the log or the status file.
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    let status_file =
        std::fs::read_to_string(siem_agent::status::status_path(&dir.join("state"), "graph"))
            .expect("status file");
    for issued in 0..sim.stats().tokens_issued.load(Ordering::Relaxed) {
        let token = format!(
            "sim.{:016x}.{issued:016x}",
            mix(config.fault_seed, issued, 99)
        );
        assert!(
            !log.contains(&token) && !status_file.contains(&token),
            "{token} leaked"
        );
    }
    for secret in [config.client_secret.as_str(), "a-revoked-secret"] {
        assert!(!log.contains(secret) && !status_file.contains(secret));
    }
    let ids = delivered(&[out]);
    assert!(ids.values().all(|&n| n == 1), "a row delivered twice");
}

#[test]
fn a_millisecond_with_more_rows_than_a_page_is_asked_for_alone_and_lost_nowhere() {
    // Every 200th row starts a burst of 50 rows in one millisecond; a
    // query takes 20 rows: a crowded millisecond is asked for alone with
    // the largest take, and every row arrives once.
    let mut config = graph_simulator(Duration::from_secs(600), 600);
    config.activities.burst_every = 200;
    config.activities.burst_size = 50;
    let events = config.activities.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("graph-burst");
    let args = with(
        graph_args(&sim, &config, &dir, "cloud-app-events"),
        &["--cloud-app-events-page-size", "20", "--once"],
    );
    let from = now_ms() - 3_600_000;
    let before = now_ms();
    let out = dir.join("out.cef");
    success(&args, &out, Duration::from_secs(240));
    let log = std::fs::read_to_string(out.with_extension("err")).expect("log");
    assert!(!log.contains("may be missed"), "{log}");
    let ids = delivered(&[out]);
    let expected = event_ids(&events, from, before);
    assert!(expected.len() > 5_000, "{}", expected.len());
    assert_once(&ids, &expected, "cloud-app-events");
}
