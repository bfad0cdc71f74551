//! Delivery to a real rsyslog on loopback: every transport byte for byte,
//! message size limits, TLS verification, and the delivery guarantee when
//! the receiver or the agent is killed, or the receiver stalls.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siem_agent::clock::now_ms;
use siem_agent::data_type::DataType;
use siem_agent::simulator::data::StreamConfig;
use siem_agent::simulator::tls::TestPki;
use siem_agent::simulator::Simulator;
use siem_agent::syslog::truncate_message;

use super::pull::{assert_all_delivered, run_args, simulator};
use super::support::bin;
use super::support::rsyslog::{Input, Rsyslog};
use siem_agent::cef::cases::check_one_line;

/// A scratch directory unique to one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("siem-agent-syslog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `count` simulated activities (every 7th with hostile Unicode text) as
/// NDJSON.
fn records_file(dir: &Path, count: u64) -> PathBuf {
    let stream = StreamConfig {
        kind: DataType::Activities,
        seed: 42,
        start_ms: 1_700_000_000_000,
        per_minute: 6000,
        max_index_delay_ms: 0,
        burst_every: 500,
        burst_size: 20,
        hostile_every: 7,
    };
    let mut out = Vec::new();
    for index in 0..count {
        stream.write_record(index, &mut out);
        out.push(b'\n');
    }
    let path = dir.join("records.ndjson");
    std::fs::write(&path, out).expect("write records");
    path
}

/// What `replay` prints for `file` with `args`: the lines every transport
/// must deliver unchanged.
fn expected_lines(file: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new(bin())
        .arg("replay")
        .arg(file)
        .args(args)
        .output()
        .expect("replay runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `replay FILE ARGS` to completion within `limit`.
fn replay_within(file: &Path, args: &[String], limit: Duration) -> Output {
    let child = Command::new(bin())
        .arg("replay")
        .arg(file)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay starts");
    wait_within(child, limit)
}

fn wait_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn syslog_args(host: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--syslog-host".to_owned(),
        host.to_owned(),
        "--syslog-port".to_owned(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Replays `count` records to `daemon` and requires the lines to arrive
/// exactly as `replay` prints them, in order.
fn assert_byte_exact(daemon: &Rsyslog, host: &str, extra: &[&str], count: u64, name: &str) {
    let dir = scratch(name);
    let file = records_file(&dir, count);
    let expected = expected_lines(&file, &[]);
    let output = replay_within(
        &file,
        &syslog_args(host, daemon.port, extra),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let received = daemon.wait_for_lines(expected.len(), Duration::from_secs(30));
    assert_eq!(
        received.len(),
        expected.len(),
        "{name}: line count; rsyslog said:\n{}",
        daemon.own_log()
    );
    for (index, (got, want)) in received.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "{name}: line {index} differs");
    }
}

#[test]
fn tcp_with_lf_framing_arrives_byte_exact_over_ipv4_and_ipv6() {
    let daemon = Rsyslog::start("tcp-lf", Input::TcpLf, None);
    assert_byte_exact(&daemon, "127.0.0.1", &[], 3000, "tcp-lf");
    let daemon = Rsyslog::start("tcp-ipv6", Input::TcpIpv6, None);
    assert_byte_exact(&daemon, "::1", &[], 300, "tcp-ipv6");
}

#[test]
fn tcp_with_octet_counting_arrives_byte_exact() {
    let daemon = Rsyslog::start("tcp-octet", Input::TcpOctetCounted, None);
    assert_byte_exact(
        &daemon,
        "localhost",
        &["--syslog-framing", "octet-counting"],
        3000,
        "tcp-octet",
    );
}

#[test]
fn udp_sends_one_datagram_per_line_and_cuts_long_ones() {
    let daemon = Rsyslog::start("udp", Input::Udp, None);
    // Few enough that the daemon's socket buffer cannot overflow (the
    // kernel charges about 2 KiB per small datagram against the default
    // 208 KiB): UDP has no flow control, and this test is about content.
    let dir = scratch("udp");
    let file = records_file(&dir, 60);
    let expected = expected_lines(&file, &[]);
    let max = 700;
    let output = replay_within(
        &file,
        &syslog_args(
            "127.0.0.1",
            daemon.port,
            &[
                "--syslog-protocol",
                "udp",
                "--syslog-max-message",
                &max.to_string(),
            ],
        ),
        Duration::from_secs(30),
    );
    assert!(output.status.success());
    let received = daemon.wait_for_lines(expected.len(), Duration::from_secs(20));
    let cut: Vec<String> = expected
        .iter()
        .map(|line| {
            String::from_utf8(truncate_message(line.as_bytes(), max).to_vec()).expect("utf-8")
        })
        .collect();
    assert_eq!(received.len(), cut.len(), "datagrams received");
    for (index, (got, want)) in received.iter().zip(&cut).enumerate() {
        assert_eq!(
            got, want,
            "datagram {index} is not its line cut to {max} bytes"
        );
    }
    let long = expected.iter().filter(|l| l.len() > max).count();
    assert!(long > 10, "the test data must include long lines ({long})");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!("{long} line(s) cut to the maximum message size")),
        "{log}"
    );
}

#[test]
fn relp_arrives_byte_exact() {
    let daemon = Rsyslog::start("relp", Input::Relp, None);
    assert_byte_exact(
        &daemon,
        "127.0.0.1",
        &["--syslog-protocol", "relp"],
        3000,
        "relp",
    );
}

/// Writes the test CA and a client certificate and key it signed into
/// `dir`; returns their paths (CA, certificate, key).
fn client_tls_files(pki: &TestPki, dir: &Path) -> (String, String, String) {
    let client = pki.client_identity("siem-agent").expect("client identity");
    for (name, text) in [
        ("ca.pem", pki.ca_pem().to_owned()),
        ("client.pem", client.cert_pem),
        ("client.key", client.key_pem),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
    (path("ca.pem"), path("client.pem"), path("client.key"))
}

#[test]
fn relp_over_mutual_tls_arrives_byte_exact() {
    let pki = TestPki::generate().expect("test PKI");
    let dir = scratch("relp-tls-files");
    let (ca, cert, key) = client_tls_files(&pki, &dir);
    let daemon = Rsyslog::start("relp-tls", Input::RelpTls, Some(&pki));
    assert_byte_exact(
        &daemon,
        "localhost",
        &[
            "--syslog-protocol",
            "relp-tls",
            "--syslog-ca",
            &ca,
            "--syslog-client-cert",
            &cert,
            "--syslog-client-key",
            &key,
        ],
        1000,
        "relp-tls",
    );
}

#[test]
fn tls_arrives_byte_exact_and_verifies_the_server() {
    let pki = TestPki::generate().expect("test PKI");
    let dir = scratch("tls-files");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).expect("write CA");
    let ca = ca.to_str().expect("utf-8");
    let daemon = Rsyslog::start("tls", Input::Tls { client_auth: false }, Some(&pki));
    assert_byte_exact(
        &daemon,
        "localhost",
        &["--syslog-protocol", "tls", "--syslog-ca", ca],
        2000,
        "tls",
    );
    // A CA that did not sign the server's certificate: no connection, and
    // the status says why; nothing is sent in the clear.
    let other = TestPki::generate().expect("test PKI");
    let wrong_ca = dir.join("other-ca.pem");
    std::fs::write(&wrong_ca, other.ca_pem()).expect("write CA");
    let before = daemon.lines().len();
    let mut child = Command::new(bin())
        .arg("replay")
        .arg(records_file(&dir, 5))
        .args(syslog_args(
            "localhost",
            daemon.port,
            &[
                "--syslog-protocol",
                "tls",
                "--syslog-ca",
                wrong_ca.to_str().expect("utf-8"),
            ],
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("wrong-ca.err")).expect("log file"))
        .spawn()
        .expect("replay starts");
    // The refusal is logged; replay keeps waiting to deliver after it.
    let read_log = || std::fs::read_to_string(dir.join("wrong-ca.err")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read_log().contains("Data server connection error") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "replay waits for delivery"
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = read_log();
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert_eq!(daemon.lines().len(), before);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let pki = TestPki::generate().expect("test PKI");
    let dir = scratch("mtls-files");
    let daemon = Rsyslog::start("mtls", Input::Tls { client_auth: true }, Some(&pki));
    let (ca, cert, key) = client_tls_files(&pki, &dir);
    assert_byte_exact(
        &daemon,
        "localhost",
        &[
            "--syslog-protocol",
            "tls",
            "--syslog-ca",
            &ca,
            "--syslog-client-cert",
            &cert,
            "--syslog-client-key",
            &key,
        ],
        500,
        "mtls",
    );
}

/// Record ids in the daemon's output (complete, strict lines only).
fn received_ids(daemon: &Rsyslog) -> HashSet<String> {
    received_ids_after_kills(daemon, 0)
}

/// [`received_ids`] when `kills` agents were killed (`kill -9`) while
/// writing: each may have cut the line it was writing, which the daemon
/// then stores as it got it. Up to that many lines may be cut, and each
/// must be the start of a line that arrived whole (the record was sent
/// again, because it was never confirmed).
fn received_ids_after_kills(daemon: &Rsyslog, kills: usize) -> HashSet<String> {
    let lines = daemon.lines();
    let mut ids = HashSet::new();
    let mut cut = Vec::new();
    for line in &lines {
        match check_one_line(line) {
            Ok(cef) => {
                ids.insert(cef.get("externalId").expect("an id").to_owned());
            }
            Err(error) if cut.len() < kills => cut.push((line, error)),
            Err(error) => panic!("{error}"),
        }
    }
    for (line, error) in cut {
        assert!(
            lines
                .iter()
                .any(|whole| whole.len() > line.len() && whole.starts_with(line.as_str())),
            "{error}, and not the start of a line that arrived whole"
        );
    }
    ids
}

/// Starts `siem-agent run` with its stdout and stderr in files under `dir`.
fn spawn_agent(args: &[String], dir: &Path, name: &str) -> Child {
    Command::new(bin())
        .args(args)
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("file"))
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).expect("file"))
        .spawn()
        .expect("the agent starts")
}

fn agent_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
}

#[test]
fn relp_receiver_killed_mid_stream_loses_nothing() {
    let mut daemon = Rsyslog::start("relp-crash", Input::Relp, None);
    // Enough records that the stream is still flowing when the receiver is
    // killed (the agent outpaces rsyslog).
    let config = simulator(Duration::from_secs(12 * 60), 10_000);
    let until = now_ms();
    let stream = config.activities.clone();
    let sim = Simulator::start(config).expect("simulator");
    let dir = scratch("relp-crash");
    let mut args = run_args(&sim, &dir);
    args.extend(syslog_args(
        "127.0.0.1",
        daemon.port,
        &[
            "--syslog-protocol",
            "relp",
            "--data-types",
            "activities",
            "--once",
        ],
    ));
    let agent = spawn_agent(&args, &dir, "agent");
    // Kill the receiver once part of the stream has arrived.
    let arrived = daemon.wait_for_lines(5000, Duration::from_secs(60)).len();
    assert!(
        arrived >= 5000,
        "the stream did not start: {}",
        agent_log(&dir, "agent")
    );
    // Stopped first, so that RELP messages are surely in flight (sent,
    // unanswered) when it dies, whatever the two processes' speeds.
    daemon.signal("STOP");
    std::thread::sleep(Duration::from_secs(1));
    daemon.kill();
    let kept_before_restart = daemon.lines().len();
    std::thread::sleep(Duration::from_secs(3));
    daemon.restart();
    let output = wait_within(agent, Duration::from_secs(180));
    let log = agent_log(&dir, "agent");
    assert!(output.status.success(), "{log}");
    assert!(log.contains("Data server send error"), "{log}");
    assert!(
        log.contains("line(s) sent again"),
        "resends are counted: {log}"
    );
    let ids = received_ids(&daemon);
    let mut counted = std::collections::HashMap::new();
    for id in &ids {
        counted.insert(id.clone(), 1);
    }
    assert_all_delivered(&counted, &stream, until);
    assert!(daemon.lines().len() > kept_before_restart);
}

#[test]
fn replay_keeps_unconfirmed_lines_across_a_receiver_restart() {
    let mut daemon = Rsyslog::start("replay-restart", Input::Relp, None);
    let dir = scratch("replay-restart");
    let file = records_file(&dir, 20_000);
    let expected = expected_lines(&file, &[]);
    let child = Command::new(bin())
        .arg("replay")
        .arg(&file)
        .args(syslog_args(
            "127.0.0.1",
            daemon.port,
            &["--syslog-protocol", "relp"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay starts");
    let arrived = daemon.wait_for_lines(2000, Duration::from_secs(60)).len();
    assert!(arrived >= 2000, "{}", daemon.own_log());
    daemon.kill();
    std::thread::sleep(Duration::from_secs(1));
    daemon.restart();
    let output = wait_within(child, Duration::from_secs(120));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let received: HashSet<String> = daemon.lines().into_iter().collect();
    let missing = expected.iter().filter(|l| !received.contains(*l)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} lines never arrived; {log}",
        expected.len()
    );
}

#[test]
fn a_stalled_receiver_pauses_fetching_and_a_killed_agent_loses_nothing() {
    let daemon = Rsyslog::start("stall", Input::TcpLf, None);
    // About 70,000 records of about 1.3 KB: far more than the socket
    // buffers, the channel and the writer's window hold together.
    let config = simulator(Duration::from_secs(30 * 60), 2500);
    let until = now_ms();
    let stream = config.activities.clone();
    let sim = Simulator::start(config).expect("simulator");
    let dir = scratch("stall");
    let mut args = run_args(&sim, &dir);
    args.extend(syslog_args(
        "127.0.0.1",
        daemon.port,
        &["--data-types", "activities"],
    ));
    daemon.signal("STOP");
    let agent = spawn_agent(&args, &dir, "first");
    // Let it fill every buffer; then it must stop fetching.
    let settle = Instant::now() + Duration::from_secs(60);
    let mut requests = sim.stats().list_requests.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = sim.stats().list_requests.load(Ordering::Relaxed);
        if now == requests && now > 0 {
            break;
        }
        requests = now;
        assert!(Instant::now() < settle, "fetching never paused");
    }
    let records_served = sim.stats().records.load(Ordering::Relaxed);
    let visible = super::pull::expected_ids(&stream, until).len() as u64;
    assert!(
        records_served < visible / 2,
        "the agent fetched {records_served} of {visible} records although nothing could be delivered"
    );
    // Crash the agent while its lines sit in the buffers.
    let mut agent = agent;
    agent.kill().expect("kill -9");
    let _ = agent.wait();
    daemon.signal("CONT");
    args.push("--once".to_owned());
    let second = spawn_agent(&args, &dir, "second");
    let output = wait_within(second, Duration::from_secs(180));
    assert!(output.status.success(), "{}", agent_log(&dir, "second"));
    daemon.wait_for_lines(0, Duration::from_secs(2));
    // Everything arrives at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = received_ids_after_kills(&daemon, 1);
        let counted: std::collections::HashMap<String, u32> =
            ids.into_iter().map(|id| (id, 1)).collect();
        let expected = super::pull::expected_ids(&stream, until);
        if expected.iter().all(|id| counted.contains_key(id)) || Instant::now() > deadline {
            assert_all_delivered(&counted, &stream, until);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn replay_over_tcp_keeps_every_line_across_a_receiver_restart() {
    replay_over_tcp_across_a_restart("tcp-restart", false);
}

#[test]
fn replay_over_tcp_keeps_every_line_across_a_lagging_receiver_restart() {
    replay_over_tcp_across_a_restart("tcp-lag-restart", true);
}

/// The README's promise for TCP: a receiver that is stopped and started
/// again (the ordinary way) loses nothing. What its kernel had not
/// acknowledged is unconfirmed and sent again; what it acknowledged but the
/// receiver had not read yet is thrown away with a reset, and the writer
/// sends the lines acknowledged last again. A `lagging` receiver stops
/// reading first (SIGSTOP), so that its socket is full of such lines when
/// it is stopped.
fn replay_over_tcp_across_a_restart(name: &str, lagging: bool) {
    let mut daemon = Rsyslog::start(name, Input::TcpLf, None);
    let dir = scratch(name);
    let file = records_file(&dir, 20_000);
    let expected = expected_lines(&file, &[]);
    let child = Command::new(bin())
        .arg("replay")
        .arg(&file)
        .args(syslog_args("127.0.0.1", daemon.port, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay starts");
    let arrived = daemon.wait_for_lines(2000, Duration::from_secs(60)).len();
    assert!(arrived >= 2000, "{}", daemon.own_log());
    if lagging {
        daemon.signal("STOP");
        // Time for the writer to fill the receiver's socket (the outcome
        // is checked the same whether it did or not).
        std::thread::sleep(Duration::from_secs(1));
    }
    daemon.stop();
    daemon.restart();
    let output = wait_within(child, Duration::from_secs(120));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let received: HashSet<String> = daemon.lines().into_iter().collect();
    let missing = expected.iter().filter(|l| !received.contains(*l)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} lines never arrived; {log}",
        expected.len()
    );
    if lagging {
        // Its socket was full of acknowledged lines it never read.
        assert!(
            log.contains("line(s) again that the receiver acknowledged"),
            "{log}"
        );
    }
}
