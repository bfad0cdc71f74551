//! The agent as a service: config file reloads, token rotation, SIGTERM and
//! restart, several tenants in one process, status files and the status
//! command, metrics, log files. Real processes, the simulator over HTTP on
//! loopback, and rsyslog as the receiver.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use siem_agent::clock::now_ms;
use siem_agent::simulator::data::StreamConfig;
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Simulator, SimulatorConfig};

use super::pull::{assert_all_delivered, delivered, expected_ids, scratch, simulator};
use super::support::bin;
use super::support::rsyslog::{Input, Rsyslog};

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(agent: &mut Agent, limit: Duration, log: &Path) -> ExitStatus {
    let child = &mut agent.0;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the agent did not exit within {limit:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` every 100 ms until it holds, at most `limit`.
fn wait_until(what: &str, limit: Duration, log: &Path, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigterm(agent: &Agent) {
    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// A running agent, killed if the test ends (or fails) before it exits.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `siem-agent ARGS` with stdout to `out` and stderr to `out.err`.
fn start(args: &[&str], out: &Path) -> Agent {
    start_command(Command::new(bin()).args(args), out)
}

fn start_command(command: &mut Command, out: &Path) -> Agent {
    Agent(
        command
            .stdout(std::fs::File::create(out).expect("out"))
            .stderr(std::fs::File::create(out.with_extension("err")).expect("err"))
            .spawn()
            .expect("the agent starts"),
    )
}

fn log_of(out: &Path) -> String {
    std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
}

/// A one-tenant config against `sim`, with `extra` appended to the tenant
/// table (and the simulator's token unless `extra` names a token file).
fn tenant_config(sim: &Simulator, dir: &Path, extra: &str) -> String {
    let token = if extra.contains("token_file") {
        String::new()
    } else {
        format!("token = \"{DEFAULT_TOKEN}\"")
    };
    format!(
        r#"state_dir = "{state}"
shutdown_timeout = "10s"

[[tenant]]
name = "t1"
api_url = "{url}"
requests_per_minute = 0
backfill = "1h"
poll_interval = "100ms"
max_critical_errors = 1000
data_types = ["activities"]
format = {{ header = "none" }}
{token}
{extra}
"#,
        state = dir.join("state").display(),
        url = sim.url(),
    )
}

/// Ids of `stream` up to `until_ms` whose app is in `apps`.
fn expected_for_apps(stream: &StreamConfig, until_ms: i64, apps: &[u64]) -> HashSet<String> {
    let mut index = 0;
    let mut ids = HashSet::new();
    let wanted: HashSet<String> = expected_ids(stream, until_ms).into_iter().collect();
    while stream.timestamp(index) <= until_ms {
        if apps.contains(&stream.app_id(index)) && wanted.contains(&stream.id(index)) {
            ids.insert(stream.id(index));
        }
        index += 1;
    }
    ids
}

fn live_simulator() -> (SimulatorConfig, Simulator) {
    let mut config = simulator(Duration::from_secs(600), 3000);
    config.activities.max_index_delay_ms = 1000;
    let sim = Simulator::start(config.clone()).expect("simulator");
    (config, sim)
}

fn assert_no_duplicates(ids: &HashMap<String, u32>) {
    let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
}

#[test]
fn a_config_change_applies_without_restart_and_loses_or_repeats_nothing() {
    let dir = scratch("reload");
    let (config, sim) = live_simulator();
    let stream = &config.activities;
    let first_app = stream.app_id(0);
    let second_app = (1..)
        .map(|i| stream.app_id(i))
        .find(|&a| a != first_app)
        .expect("two apps");
    let file = dir.join("agent.toml");
    let filter = |apps: &str| format!("filters.activities = {{ service = {{ eq = [{apps}] }} }}");
    std::fs::write(
        &file,
        tenant_config(&sim, &dir, &filter(&first_app.to_string())),
    )
    .expect("config");
    let out = dir.join("out");
    let mut agent = start(&["--config", file.to_str().expect("utf-8")], &out);
    let log = out.with_extension("err");
    // Backfilled and tailing with the first filter.
    wait_until("backfill", Duration::from_secs(60), &log, || {
        log_of(&out).contains("backfill complete")
    });
    std::thread::sleep(Duration::from_secs(1));
    let changed_at = now_ms();
    std::fs::write(
        &file,
        tenant_config(&sim, &dir, &filter(&format!("{first_app}, {second_app}"))),
    )
    .expect("new config");
    wait_until("reload", Duration::from_secs(30), &log, || {
        log_of(&out).contains("restarting with the new configuration")
    });
    // A broken edit is refused and the running configuration stays.
    std::fs::write(&file, "this is not toml = = =").expect("broken config");
    wait_until("refusal", Duration::from_secs(30), &log, || {
        log_of(&out).contains("the running configuration stays")
    });
    // SIGHUP reloads too (and refuses the broken file the same way).
    let hangup = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hangup.success());
    wait_until("SIGHUP reload", Duration::from_secs(30), &log, || {
        log_of(&out).contains("configuration reload (SIGHUP) failed")
    });
    // Everything of the first app up to now arrives before the stop
    // (waited for, not slept for).
    let end = now_ms();
    let firsts = expected_for_apps(stream, end, &[first_app]);
    wait_until(
        "delivery up to the reloads",
        Duration::from_secs(60),
        &log,
        || {
            let ids = delivered(std::slice::from_ref(&out));
            firsts.iter().all(|id| ids.contains_key(id))
        },
    );
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(30), &log);
    assert!(status.success(), "{}", log_of(&out));

    let ids = delivered(std::slice::from_ref(&out));
    assert_no_duplicates(&ids);
    let missing: Vec<_> = firsts.iter().filter(|id| !ids.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records of the first app missing across the reload, e.g. {:?}",
        missing.len(),
        firsts.len(),
        &missing[..missing.len().min(3)]
    );
    let all_seconds = expected_for_apps(stream, end + 60_000, &[second_app]);
    let seconds: Vec<_> = ids.keys().filter(|id| all_seconds.contains(*id)).collect();
    assert!(!seconds.is_empty(), "the new filter never took effect");
    // The second app's records from before the change were never fetched:
    // the new settings started from the checkpoint, not from a new backfill.
    let before_change = expected_for_apps(stream, changed_at - 2_000, &[second_app]);
    let early: Vec<_> = seconds
        .iter()
        .filter(|id| before_change.contains(**id))
        .collect();
    assert!(
        early.is_empty(),
        "records from before the change: {early:?}"
    );
    let allowed: HashSet<String> =
        expected_for_apps(stream, end + 60_000, &[first_app, second_app]);
    assert!(
        ids.keys().all(|id| allowed.contains(id)),
        "a record of another app"
    );
}

#[test]
fn a_rotated_token_file_is_picked_up_and_logs_stay_bounded_and_secret_free() {
    let dir = scratch("token");
    let (config, sim) = live_simulator();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{DEFAULT_TOKEN}\n")).expect("token");
    let file = dir.join("agent.toml");
    let logs = dir.join("logs");
    let extra = format!("token_file = \"{}\"", token_file.display());
    let mut text = tenant_config(&sim, &dir, &extra);
    text = text.replacen(
        "shutdown_timeout",
        &format!(
            "logs_directory = \"{}\"\nlog_file_bytes = 4096\nlog_files = 2\nshutdown_timeout",
            logs.display()
        ),
        1,
    );
    std::fs::write(&file, text).expect("config");
    let out = dir.join("out");
    let mut agent = start(&["--config", file.to_str().expect("utf-8")], &out);
    let log = out.with_extension("err");
    wait_until("backfill", Duration::from_secs(60), &log, || {
        log_of(&out).contains("backfill complete")
    });
    // The tenant's token is rotated: the old one is refused from now on.
    let new_token = "rotated-token-9876543210fedcba9876543210fedcba9876543210fedcba98";
    sim.set_token(new_token);
    wait_until("refusals", Duration::from_secs(30), &log, || {
        log_of(&out).matches("Invalid token").count() >= 40
    });
    std::fs::write(&token_file, new_token).expect("new token");
    let lines_then = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .count();
    wait_until("recovery", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
            > lines_then + 100
    });
    let end = now_ms();
    let expected = expected_ids(&config.activities, end);
    wait_until("delivery up to now", Duration::from_secs(60), &log, || {
        let ids = delivered(std::slice::from_ref(&out));
        expected.iter().all(|id| ids.contains_key(id))
    });
    sigterm(&agent);
    assert!(wait_exit(&mut agent, Duration::from_secs(30), &log).success());

    let ids = delivered(std::slice::from_ref(&out));
    assert_no_duplicates(&ids);
    assert_all_delivered(&ids, &config.activities, end);

    // Logs: rotated by size, bounded in number, no secrets anywhere.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("logs directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "rotated: {files:?}");
    assert!(files.len() <= 3, "at most log_files + 1: {files:?}");
    let stderr = log_of(&out);
    for path in &files {
        let text = std::fs::read_to_string(path).expect("log file");
        let longest_line = text.lines().map(str::len).max().unwrap_or(0);
        assert!(text.len() <= 4096 + longest_line + 1, "{}", path.display());
        for secret in [DEFAULT_TOKEN, new_token] {
            assert!(!text.contains(secret), "a token in {}", path.display());
        }
    }
    assert!(stderr.contains("Invalid token"));
    for secret in [DEFAULT_TOKEN, new_token] {
        assert!(!stderr.contains(secret), "a token in stderr");
    }
    let current = std::fs::read_to_string(logs.join("siem-agent.log")).expect("current log");
    assert!(current.contains("stopped by signal"), "{current}");
}

#[test]
fn sigterm_mid_backfill_then_restart_delivers_everything_once() {
    let dir = scratch("sigterm");
    let mut config = simulator(Duration::from_secs(3600), 3000);
    config.activities.max_index_delay_ms = 1000;
    let sim = Simulator::start(config.clone()).expect("simulator");
    let file = dir.join("agent.toml");
    // The backfill reaches past the start of the simulated history.
    let text = tenant_config(&sim, &dir, "").replace("backfill = \"1h\"", "backfill = \"2h\"");
    std::fs::write(&file, text).expect("config");
    let first = dir.join("first");
    let mut agent = start(&["--config", file.to_str().expect("utf-8")], &first);
    let log = first.with_extension("err");
    wait_until("some output", Duration::from_secs(60), &log, || {
        std::fs::metadata(&first).map(|m| m.len()).unwrap_or(0) > 1_000_000
    });
    sigterm(&agent);
    assert!(wait_exit(&mut agent, Duration::from_secs(30), &log).success());
    assert!(
        !log_of(&first).contains("backfill complete"),
        "the signal came too late to test a mid-stream stop"
    );
    // The status file written at shutdown counts every line written.
    let lines = std::fs::read_to_string(&first)
        .expect("output")
        .lines()
        .count();
    let mut status = std::fs::read(dir.join("state/t1.status.json")).expect("status file");
    let status: simd_json::OwnedValue = simd_json::to_owned_value(&mut status).expect("JSON");
    use simd_json::prelude::*;
    let sent = status
        .get_array("data_types")
        .and_then(|kinds| kinds.first())
        .and_then(|kind| kind.get_u64("sent"));
    assert_eq!(sent, Some(lines as u64), "{status:?}");
    let second = dir.join("second");
    let mut agent = start(
        &["--config", file.to_str().expect("utf-8"), "--once"],
        &second,
    );
    let end = now_ms();
    assert!(wait_exit(
        &mut agent,
        Duration::from_secs(120),
        &second.with_extension("err")
    )
    .success());
    let ids = delivered(&[first, second]);
    assert_no_duplicates(&ids);
    assert_all_delivered(&ids, &config.activities, end - 2_000);
}

/// GETs `path` from the metrics server; (status line, body).
fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn a_dead_receiver_stalls_only_its_own_tenant() {
    let dir = scratch("tenants");
    // More than the dead tenant's writer holds (8 MiB unconfirmed plus its
    // channel), so that its encoder and fetcher block on full channels.
    let mut config = simulator(Duration::from_secs(600), 3000);
    config.activities.max_index_delay_ms = 1000;
    let sim = Simulator::start(config.clone()).expect("simulator");
    let rsyslog = Rsyslog::start("tenants", Input::TcpLf, None);
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("address").port()
    };
    let file = dir.join("agent.toml");
    let state = dir.join("state");
    std::fs::write(
        &file,
        format!(
            r#"state_dir = "{state}"
shutdown_timeout = "1s"
metrics_listen = "127.0.0.1:0"

[defaults]
api_url = "{url}"
token = "{DEFAULT_TOKEN}"
requests_per_minute = 0
backfill = "1h"
poll_interval = "200ms"
data_types = ["activities"]
format.header = "none"

[[tenant]]
name = "dead"
syslog = {{ host = "127.0.0.1", port = {dead_port} }}

[[tenant]]
name = "alive"
syslog = {{ host = "127.0.0.1", port = {live_port} }}
"#,
            state = state.display(),
            url = sim.url(),
            live_port = rsyslog.port,
        ),
    )
    .expect("config");
    let out = dir.join("out");
    let mut agent = start(&["--config", file.to_str().expect("utf-8")], &out);
    let log = out.with_extension("err");
    let start_ms = now_ms();
    let expected = expected_ids(&config.activities, start_ms - 2_000);
    let received = rsyslog.wait_for_lines(expected.len(), Duration::from_secs(60));
    let ids: HashSet<String> = received
        .iter()
        .filter_map(|l| l.split("externalId=").nth(1))
        .map(|rest| rest.split(' ').next().unwrap_or("").to_owned())
        .collect();
    let missing = expected.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(missing, 0, "the live tenant delivered everything");

    // Status files: one per tenant, the dead one failing on the syslog side.
    let try_status = |format: &[&str]| {
        let mut args = vec!["status", "--state-dir", state.to_str().expect("utf-8")];
        args.extend_from_slice(format);
        let output = Command::new(bin())
            .args(&args)
            .output()
            .expect("status runs");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(stderr)
        }
    };
    let status_of = |format: &[&str]| try_status(format).unwrap_or_else(|e| panic!("{e}"));
    // The first status files are written a moment after start-up, which
    // the live tenant's delivery can beat.
    wait_until("status files", Duration::from_secs(20), &log, || {
        try_status(&[]).is_ok_and(|text| {
            text.contains("Data server connection error")
                && text.matches("api     Connected").count() == 2
        })
    });
    let text = status_of(&[]);
    assert!(text.contains("alive (pid"), "{text}");
    assert!(text.contains("dead (pid"), "{text}");
    let mut json = status_of(&["--json"]).into_bytes();
    let reports: simd_json::OwnedValue = simd_json::to_owned_value(&mut json).expect("JSON");
    use simd_json::prelude::*;
    let reports = reports.as_array().expect("an array");
    assert_eq!(reports.len(), 2);
    let by_name = |name: &str| {
        reports
            .iter()
            .find(|r| r.get_str("tenant") == Some(name))
            .expect("the tenant")
    };
    let dead = by_name("dead");
    let alive = by_name("alive");
    assert_eq!(
        alive.get("syslog").and_then(|s| s.get_str("state")),
        Some("Connected")
    );
    assert_eq!(
        dead.get("syslog").and_then(|s| s.get_str("state")),
        Some("Created")
    );
    assert!(dead
        .get("syslog")
        .and_then(|s| s.get_str("last_error"))
        .is_some_and(|e| e.contains("Data server connection error")));
    assert_eq!(
        dead.get("api").and_then(|s| s.get_str("state")),
        Some("Connected")
    );

    // Metrics and health.
    let address = log_of(&out)
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
        .expect("the metrics address is logged");
    let sent = |metrics: &str, tenant: &str| -> f64 {
        let prefix = format!(
            "siem_agent_records_sent_total{{tenant=\"{tenant}\",data_type=\"activities\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    // Confirmations reach the counters a moment after the lines arrive.
    let mut metrics = String::new();
    wait_until("confirmations", Duration::from_secs(20), &log, || {
        let (status_line, body) = http_get(&address, "/metrics");
        assert!(status_line.contains("200"), "{status_line}");
        metrics = body;
        sent(&metrics, "alive") >= expected.len() as f64
    });
    assert_eq!(sent(&metrics, "dead"), 0.0, "{metrics}");
    for name in [
        "siem_agent_records_fetched_total",
        "siem_agent_api_requests_total",
        "siem_agent_api_throttled_total",
        "siem_agent_api_retries_total",
        "siem_agent_syslog_reconnects_total",
        "siem_agent_syslog_dropped_total",
        "siem_agent_syslog_bytes_total",
        "siem_agent_checkpoint_lag_seconds{tenant=\"alive\"",
        "siem_agent_channel_depth{tenant=\"dead\",channel=\"batches\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let (health, _) = http_get(&address, "/healthz");
    assert!(
        health.contains("200"),
        "failing for less than 2 hours: {health}"
    );

    // Shutdown does not wait forever for the dead receiver.
    sigterm(&agent);
    assert!(wait_exit(&mut agent, Duration::from_secs(30), &log).success());
    let text = log_of(&out);
    assert!(
        text.contains("dead: the receiver did not confirm everything"),
        "{text}"
    );
    // Every transition is logged, per tenant and direction.
    for line in [
        "alive: syslog: Created -> Connected",
        "alive: api: Created -> Connected",
        "dead: api: Created -> Connected",
        "dead: syslog: Data server connection error",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn the_vendor_start_up_line_works_with_the_program_name_swapped() {
    let dir = scratch("vendor");
    let mut config = simulator(Duration::from_secs(300), 600);
    config.tls = true;
    let sim = Simulator::start(config).expect("simulator");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().expect("TLS")).expect("ca");
    let file = dir.join("agent.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = \"{}\"\nonce = true\n[[tenant]]\napi_url = \"{}\"\napi_ca = \"{}\"\nrequests_per_minute = 0\nbackfill = \"10m\"\n",
            dir.join("state").display(),
            sim.url(),
            ca.display()
        ),
    )
    .expect("config");
    let (proxy, tunnels) = super::pull::connect_proxy();
    let logs = dir.join("logs");
    let out = dir.join("out");
    let mut agent = start_command(
        Command::new(bin())
            .args([
                "--logsDirectory",
                logs.to_str().expect("utf-8"),
                "--proxy",
                &proxy,
                "--token",
                DEFAULT_TOKEN,
            ])
            .env("SIEM_AGENT_CONFIG", &file),
        &out,
    );
    let status = wait_exit(
        &mut agent,
        Duration::from_secs(60),
        &out.with_extension("err"),
    );
    assert!(status.success(), "{}", log_of(&out));
    assert!(!delivered(std::slice::from_ref(&out)).is_empty());
    assert!(
        tunnels.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "through the proxy"
    );
    let logged = std::fs::read_to_string(logs.join("siem-agent.log")).expect("log file");
    assert!(logged.contains("backfill complete"), "{logged}");
    assert!(!logged.contains(DEFAULT_TOKEN));

    let help = Command::new(bin()).arg("-h").output().expect("help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--token <TOKEN>",
        "--proxy <ADDRESS[:PORT]>",
        "--logsDirectory <DIRNAME>",
    ] {
        assert!(help.contains(flag), "{flag} in\n{help}");
    }
}

/// A config of tenants by name, all against `sim`, all to stdout.
fn tenants_config(sim: &Simulator, dir: &Path, names: &[&str]) -> String {
    let mut text = format!(
        "state_dir = \"{}\"\nshutdown_timeout = \"10s\"\n",
        dir.join("state").display()
    );
    for name in names {
        text.push_str(&format!(
            r#"
[[tenant]]
name = "{name}"
api_url = "{url}"
token = "{DEFAULT_TOKEN}"
requests_per_minute = 0
backfill = "10m"
poll_interval = "100ms"
data_types = ["alerts"]
format = {{ header = "none" }}
"#,
            url = sim.url()
        ));
    }
    text
}

#[test]
fn a_reload_starts_added_tenants_stops_removed_ones_and_leaves_the_rest_alone() {
    let sim = Simulator::start(simulator(Duration::from_secs(600), 60)).expect("simulator");
    let dir = scratch("reload-tenants");
    let file = dir.join("agent.toml");
    std::fs::write(&file, tenants_config(&sim, &dir, &["kept", "removed"])).expect("config");
    let out = dir.join("out");
    let mut agent = start(&["--config", file.to_str().expect("utf-8")], &out);
    let log = out.with_extension("err");
    wait_until(
        "both tenants running",
        Duration::from_secs(60),
        &log,
        || {
            let text = log_of(&out);
            text.contains("kept: api: Created -> Connected")
                && text.contains("removed: api: Created -> Connected")
        },
    );
    std::fs::write(&file, tenants_config(&sim, &dir, &["kept", "added"])).expect("config");
    wait_until("the reload", Duration::from_secs(60), &log, || {
        let text = log_of(&out);
        text.contains("removed: removed from the configuration; stopped")
            && text.contains("added: api: Created -> Connected")
    });
    sigterm(&agent);
    assert!(wait_exit(&mut agent, Duration::from_secs(30), &log).success());
    let text = log_of(&out);
    assert!(
        text.contains("added: added to the configuration; starting"),
        "{text}"
    );
    assert!(
        !text.contains("kept: restarting"),
        "an unchanged tenant was touched: {text}"
    );
    assert_eq!(
        text.matches("kept: api: Created -> Connected").count(),
        1,
        "started once: {text}"
    );
    let state = dir.join("state");
    for name in ["kept", "removed", "added"] {
        assert!(
            state
                .join(format!("{name}.alerts.checkpoint.json"))
                .exists(),
            "{name} has no checkpoint"
        );
    }
}

#[test]
fn a_second_signal_during_a_long_shutdown_exits_at_once() {
    // A receiver that takes the connection and never reads: the first
    // SIGTERM waits for confirmations (up to the 60 s shutdown timeout);
    // the second ends the process with status 1 (a clean shutdown is 0).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let held = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let config = simulator(Duration::from_secs(1800), 3000);
    let sim = Simulator::start(config).expect("simulator");
    let dir = scratch("second-signal");
    let out = dir.join("out");
    let mut agent = start(
        &[
            "run",
            "--api-url",
            &sim.url(),
            "--token",
            DEFAULT_TOKEN,
            "--state-dir",
            dir.join("state").to_str().expect("utf-8"),
            "--requests-per-minute",
            "0",
            "--data-types",
            "activities",
            "--shutdown-timeout",
            "60s",
            "--syslog-host",
            "127.0.0.1",
            "--syslog-port",
            &port.to_string(),
        ],
        &out,
    );
    let log = out.with_extension("err");
    wait_until("the connection", Duration::from_secs(60), &log, || {
        log_of(&out).contains("syslog: Created -> Connected")
    });
    sigterm(&agent);
    wait_until("the shutdown", Duration::from_secs(60), &log, || {
        log_of(&out).contains("shutting down")
    });
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(50), &log);
    assert_eq!(status.code(), Some(1), "{}", log_of(&out));
    drop(held);
}
