//! `siem-agent run` against the simulator over real HTTP(S) on loopback:
//! backfill and tail under faults, crashes, 429 storms, bad credentials,
//! Entra credentials and a proxy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siem_agent::clock::now_ms;
use siem_agent::data_type::{DataType, Family};
use siem_agent::simulator::data::StreamConfig;
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Faults, Simulator, SimulatorConfig};

use super::support::bin;
use siem_agent::cef::cases::check_one_line;

/// A scratch directory unique to one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("siem-agent-pull-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub(crate) fn simulator(history: Duration, activities_per_minute: u64) -> SimulatorConfig {
    let mut config = SimulatorConfig::new(now_ms(), history);
    config.requests_per_minute = None;
    config.activities.per_minute = activities_per_minute;
    config.alerts.per_minute = 10;
    config
}

/// `run` arguments for a simulator, checkpointing under `dir`.
pub(crate) fn run_args(sim: &Simulator, dir: &Path) -> Vec<String> {
    [
        "run",
        "--api-url",
        &sim.url(),
        "--token",
        DEFAULT_TOKEN,
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--requests-per-minute",
        "0",
        "--backfill",
        "1h",
        "--poll-interval",
        "200ms",
        "--header",
        "none",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Starts the agent with stdout to `out` and stderr to `out` + ".err".
pub(crate) fn spawn(args: &[String], out: &Path) -> Child {
    let stdout = std::fs::File::create(out).expect("output file");
    let stderr = std::fs::File::create(out.with_extension("err")).expect("log file");
    Command::new(bin())
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("the agent starts")
}

/// Runs to completion with a time bound; returns the process output.
pub(crate) fn run_to_end(args: &[String], out: &Path, limit: Duration) -> Output {
    let mut child = spawn(args, out);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Output {
                status,
                stdout: std::fs::read(out).unwrap_or_default(),
                stderr: std::fs::read(out.with_extension("err")).unwrap_or_default(),
            };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the agent did not finish within {limit:?}; log:\n{}",
                std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs to completion, requires success, and returns the delivered ids.
fn run_ok(args: &[String], out: &Path, limit: Duration) -> HashMap<String, u32> {
    let output = run_to_end(args, out, limit);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    delivered(&[out.to_owned()])
}

/// `externalId` of every complete, strictly valid line in the files,
/// counted.
pub(crate) fn delivered(files: &[PathBuf]) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // A killed run may end with a partial line: only complete lines count.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        for line in complete.lines() {
            let cef = check_one_line(line).unwrap_or_else(|e| panic!("{e}"));
            let id = cef.get("externalId").expect("an id").to_owned();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// Ids of every record of `stream` indexed by `until_ms`.
pub(crate) fn expected_ids(stream: &StreamConfig, until_ms: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut index = 0;
    while stream.timestamp(index) <= until_ms {
        let visible = match stream.kind.family() {
            Family::Activity => stream.created(index) <= until_ms,
            Family::Alert => true,
        };
        if visible {
            ids.push(stream.id(index));
        }
        index += 1;
    }
    ids
}

pub(crate) fn assert_all_delivered(
    ids: &HashMap<String, u32>,
    stream: &StreamConfig,
    until_ms: i64,
) {
    let expected = expected_ids(stream, until_ms);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} {:?} records missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        stream.kind,
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn backfill_and_tail_of_100k_records_under_faults() {
    // 11 minutes at 10,000 a minute, indexed within a minute: over 100,000
    // records are visible when the agent starts.
    let mut config = simulator(Duration::from_secs(660), 10_000);
    config.activities.max_index_delay_ms = 60_000;
    config.faults = Faults {
        server_error: 0.1,
        slow: 0.05,
        slow_ms: 100,
        drop: 0.05,
        truncate: 0.05,
        malformed: 0.05,
    };
    let (activities, alerts) = (config.activities.clone(), config.alerts.clone());
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("faults");
    let mut args = run_args(&sim, &dir);
    args.push("--once".into());
    let before = now_ms();
    let ids = run_ok(&args, &dir.join("out.cef"), Duration::from_secs(300));
    assert!(ids.len() >= 100_000, "only {} records", ids.len());
    assert_all_delivered(&ids, &activities, before);
    assert_all_delivered(&ids, &alerts, before);
    let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "repeated without a crash: {repeated:?}"
    );
    assert!(
        sim.stats().faults.load(Ordering::Relaxed) > 0,
        "no fault was injected"
    );
}

#[test]
fn repeated_kill_9_loses_nothing() {
    let config = simulator(Duration::from_secs(600), 5_000);
    let activities = config.activities.clone();
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("kill");
    let args = run_args(&sim, &dir);
    let before = now_ms();
    let mut outputs = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let kills = 6;
    for round in 0..kills {
        let out = dir.join(format!("run{round}.cef"));
        let mut child = spawn(&args, &out);
        std::thread::sleep(Duration::from_millis(rng.u64(50..600)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        outputs.push(out);
    }
    let mut last = args;
    last.push("--once".into());
    let out = dir.join("final.cef");
    let output = run_to_end(&last, &out, Duration::from_secs(300));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    outputs.push(out);
    let ids = delivered(&outputs);
    assert_all_delivered(&ids, &activities, before);
    let duplicates: u32 = ids.values().map(|n| n - 1).sum();
    // Each kill can repeat at most the page in flight: one scan batch.
    let bound = kills * siem_agent::source::cas::cursor::SCAN_PAGE as u32;
    assert!(duplicates <= bound, "{duplicates} duplicates > {bound}");
    eprintln!(
        "kill -9 x{kills}: {} records, {duplicates} duplicates",
        ids.len()
    );
}

#[test]
fn a_429_storm_is_ridden_out() {
    // Several requests back to back (scan pages, alerts, the tail) against
    // one allowed per second: most first tries get 429.
    let mut config = simulator(Duration::from_secs(600), 1_000);
    config.requests_per_minute = Some(1);
    config.rate_window = Duration::from_secs(1);
    config.retry_after_seconds = Some(1);
    let activities = config.activities.clone();
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("storm");
    let mut args = run_args(&sim, &dir);
    args.push("--once".into());
    let before = now_ms();
    let ids = run_ok(&args, &dir.join("out.cef"), Duration::from_secs(300));
    let throttled = sim.stats().throttled.load(Ordering::Relaxed);
    assert!(throttled >= 2, "only {throttled} 429 answers");
    assert_all_delivered(&ids, &activities, before);
}

#[test]
fn a_rejected_token_stops_with_a_clear_error() {
    let sim = Simulator::start(simulator(Duration::from_secs(60), 100)).expect("starts");
    let dir = scratch("token");
    let mut args = run_args(&sim, &dir);
    let at = args
        .iter()
        .position(|a| a == DEFAULT_TOKEN)
        .expect("token arg");
    args[at] = "not-the-token".into();
    let output = run_to_end(&args, &dir.join("out.cef"), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(77));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("Invalid token"), "{log}");
    assert!(log.contains(&sim.url()), "names the URL: {log}");
    assert!(
        !log.contains("not-the-token"),
        "the token must not be logged: {log}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn too_many_critical_errors_exit_non_zero() {
    let mut config = simulator(Duration::from_secs(60), 100);
    config.faults.server_error = 1.0;
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("critical");
    let mut args = run_args(&sim, &dir);
    args.extend(
        [
            "--max-critical-errors",
            "2",
            "--retry-attempts",
            "2",
            "--retry-max-delay",
            "100ms",
            "--data-types",
            "alerts",
        ]
        .map(str::to_owned),
    );
    let output = run_to_end(&args, &dir.join("out.cef"), Duration::from_secs(180));
    assert_eq!(output.status.code(), Some(75));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("Too many critical errors"), "{log}");
}

/// `run` arguments that authenticate with the simulator's mock Entra
/// endpoint (the secret in a file) instead of an API token.
pub(crate) fn entra_args(sim: &Simulator, config: &SimulatorConfig, dir: &Path) -> Vec<String> {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{}\n", config.client_secret)).expect("secret file");
    let mut args: Vec<String> = run_args(sim, dir)
        .into_iter()
        .filter(|a| a != "--token" && a != DEFAULT_TOKEN)
        .collect();
    args.extend(
        [
            "--tenant-id",
            "contoso-tenant",
            "--client-id",
            &config.client_id,
            "--client-secret-file",
            secret_file.to_str().expect("utf-8"),
            "--login-url",
            &sim.url(),
        ]
        .map(str::to_owned),
    );
    args
}

#[test]
fn entra_client_credentials_fetch_one_token() {
    let config = simulator(Duration::from_secs(120), 500);
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("entra");
    let mut args = entra_args(&sim, &config, &dir);
    args.push("--once".to_owned());
    let ids = run_ok(&args, &dir.join("out.cef"), Duration::from_secs(120));
    assert!(!ids.is_empty());
    assert_eq!(
        sim.stats().tokens_issued.load(Ordering::Relaxed),
        1,
        "cached, not per request"
    );
}

#[test]
fn an_entra_token_is_replaced_before_it_expires() {
    // Tokens live 4 s and the simulator refuses them after that; the agent
    // must swap its token at half that lifetime, before any request fails.
    let mut config = simulator(Duration::from_secs(120), 500);
    config.entra_token_seconds = 4;
    let sim = Simulator::start(config.clone()).expect("starts");
    let dir = scratch("entra-refresh");
    let args = entra_args(&sim, &config, &dir);
    let out = dir.join("out.cef");
    let mut agent = spawn(&args, &out);
    // Three replacements, whenever they come (no clock in the assertions).
    let stats = sim.stats();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.tokens_issued.load(Ordering::Relaxed) < 4 {
        assert!(
            agent.try_wait().expect("wait").is_none(),
            "the agent stopped early:\n{}",
            std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "tokens were never replaced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let log = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    let requests = stats.list_requests.load(Ordering::Relaxed);
    let tokens = stats.tokens_issued.load(Ordering::Relaxed);
    // Replaced before expiry: no request was refused for an old token.
    assert_eq!(stats.unauthorized.load(Ordering::Relaxed), 0, "{log}");
    // Cached between replacements: fewer tokens than requests.
    assert!(tokens < requests, "{tokens} tokens for {requests} requests");
    assert!(!delivered(&[out]).is_empty(), "{log}");
}

/// A minimal HTTP CONNECT proxy on loopback that counts tunnels.
pub(crate) fn connect_proxy() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let address = listener.local_addr().expect("address").to_string();
    let tunnels = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&tunnels);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || tunnel(client, &counter));
        }
    });
    (address, tunnels)
}

fn tunnel(mut client: TcpStream, tunnels: &AtomicU64) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let Some(target) = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
    else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    // Loopback only: this proxy is a test fixture.
    if !target.starts_with("127.0.0.1:") {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        return;
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    tunnels.fetch_add(1, Ordering::Relaxed);
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut client_read, mut upstream_write) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let mut upstream_read = upstream;
    let _ = std::io::copy(&mut upstream_read, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = pump.join();
}

#[test]
fn pulls_through_an_http_proxy_over_tls() {
    let mut config = simulator(Duration::from_secs(120), 500);
    config.tls = true;
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("proxy");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().expect("TLS")).expect("CA file");
    let (proxy, tunnels) = connect_proxy();
    let mut args = run_args(&sim, &dir);
    args.extend(
        [
            "--proxy",
            &proxy,
            "--api-ca",
            ca.to_str().expect("utf-8"),
            "--once",
        ]
        .map(str::to_owned),
    );
    let ids = run_ok(&args, &dir.join("out.cef"), Duration::from_secs(120));
    assert!(!ids.is_empty());
    assert!(
        tunnels.load(Ordering::Relaxed) >= 1,
        "the proxy was not used"
    );
}

#[test]
fn a_bad_proxy_is_rejected_at_start_up() {
    let output = Command::new(bin())
        .args([
            "run",
            "--api-url",
            "https://x.example",
            "--token",
            "t",
            "--proxy",
            "bad proxy:1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Invalid proxy address: bad proxy:1"));
}

#[test]
fn the_demo_prints_strict_cef_and_exits() {
    let output = Command::new(bin())
        .args(["demo", "--history", "2m"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 100, "{} lines; log: {log}", lines.len());
    for line in lines {
        check_one_line(line).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(log.contains("records in"), "{log}");
}

#[test]
fn after_a_long_stop_catch_up_starts_at_the_window_and_logs_the_gap() {
    use siem_agent::source::cas::cursor::Cursor;
    use siem_agent::state::checkpoint::CheckpointStore;
    let sim = Simulator::start(simulator(Duration::from_secs(600), 600)).expect("starts");
    let dir = scratch("downtime");
    let mut args = run_args(&sim, &dir);
    // A checkpoint from three days ago, with a one-hour backfill window.
    let store = CheckpointStore::open(&dir.join("state")).expect("state dir");
    let tenant = sim.address().to_string();
    let three_days_ago = now_ms() - 3 * 86_400_000;
    let old = Cursor::start(DataType::Alerts, three_days_ago, 0);
    store
        .save(&tenant, &siem_agent::source::Position::Cas(old))
        .expect("saves");
    args.extend(["--tenant", &tenant, "--data-types", "alerts", "--once"].map(str::to_owned));
    let output = run_to_end(&args, &dir.join("out.cef"), Duration::from_secs(120));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("older than the backfill window"), "{log}");
    assert!(log.contains("are skipped"), "{log}");
    // The skipped range starts at the old position, in ISO form.
    let mut iso = Vec::new();
    siem_agent::clock::write_iso_time(&mut iso, three_days_ago);
    assert!(
        log.contains(std::str::from_utf8(&iso).expect("ascii")),
        "{log}"
    );
    let saved = store
        .load(&tenant, DataType::Alerts)
        .expect("reads")
        .expect("saved");
    assert!(
        saved.position >= now_ms() - 3_600_000 - 60_000,
        "resumed within the window"
    );
}

#[test]
fn an_unusable_ca_file_is_a_setup_error() {
    let dir = scratch("badca");
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("writes");
    let output = Command::new(bin())
        .args([
            "run",
            "--api-url",
            "https://127.0.0.1:9",
            "--token",
            "t",
            "--once",
        ])
        .args(["--state-dir", dir.join("state").to_str().expect("utf-8")])
        .args(["--api-ca", ca.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{log}");
    assert!(log.contains("cannot set up the API client"), "{log}");
}

#[test]
fn a_scan_page_shared_between_two_threads_keeps_its_order() {
    // 3,000 activities fit in one scan page, which the encoder cuts into
    // pieces of SCAN_CHUNK_RECORDS shared with a helper thread; the lines
    // must come out in the page's order (by event time, one direction).
    let mut config = simulator(Duration::from_secs(180), 1000);
    config.activities.max_index_delay_ms = 0;
    let sim = Simulator::start(config).expect("starts");
    let dir = scratch("scan-order");
    let mut args = run_args(&sim, &dir);
    args.extend(["--once", "--data-types", "activities"].map(str::to_owned));
    let out = dir.join("out.cef");
    let output = run_to_end(&args, &out, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 output");
    let times: Vec<i64> = text
        .lines()
        .map(|line| {
            let cef = check_one_line(line).unwrap_or_else(|e| panic!("{e}"));
            cef.get("rt")
                .and_then(|t| t.parse().ok())
                .expect("a numeric rt")
        })
        .collect();
    let first_page = 2900;
    assert!(times.len() >= first_page, "only {} lines", times.len());
    assert!(first_page > 2 * siem_agent::pipeline::SCAN_CHUNK_RECORDS);
    let page = &times[..first_page];
    let ascending = page.windows(2).all(|w| w[0] <= w[1]);
    let descending = page.windows(2).all(|w| w[0] >= w[1]);
    assert!(
        ascending || descending,
        "the page's lines are out of order: first inversion at line {}",
        page.windows(2)
            .position(|w| (w[0] < w[1]) != (page[0] < page[first_page - 1]) && w[0] != w[1])
            .map_or(0, |i| i + 1)
    );
}
