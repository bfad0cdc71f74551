//! End to end, in one run on one machine: the agent pulling a backfill from
//! the simulator and delivering CEF over TCP, next to a peer doing the same
//! job (syslog-ng turning the same records, as NDJSON, into CEF) and next to
//! the machine's ceiling (the agent's own output, pre-encoded, written by a
//! plain `writev` loop). All three write to the same kind of blackhole,
//! which counts lines and bytes on loopback.
//!
//! Run it with `bash benches/e2e.sh`, which installs syslog-ng (unpacked
//! from Debian), builds the agent and passes their paths in. Environment:
//! `E2E_MINUTES` of history (default 120) at `E2E_PER_MINUTE` activities a
//! minute (default 10,000), `E2E_SVG` where the chart goes (default
//! `benches/e2e.svg`), `E2E_SKIP_PEER=1` to leave syslog-ng out,
//! `E2E_AGENT_TIMEOUT_S` (default 600) before a stuck agent fails the run.
//!
//! Every case checks what arrived: the agent must deliver every record of
//! the history, the ceiling writes exactly the agent's byte count, and the
//! peer must deliver every NDJSON line. The ceiling, which takes well
//! under a second, is the best of three runs. `PERF.md` records the results.

mod support;

use std::fmt::Write as _;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siem_agent::parse::Parser;
use siem_agent::simulator::data::StreamConfig;
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::sink::BATCH_BYTES;

/// Runs of the ceiling case; the fastest is reported.
const CEILING_RUNS: usize = 3;
/// How long the peer may take to deliver everything before the run fails.
const PEER_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the agent may take before the run fails (it retries a failing
/// API with backoff for as long as it is let, so a bug in the simulator
/// would otherwise hang the bench); `E2E_AGENT_TIMEOUT_S` overrides it.
const AGENT_TIMEOUT: Duration = Duration::from_secs(600);

/// The cores this process may use (at least one).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A blackhole on loopback: accepts one connection and counts lines and
/// bytes until EOF. `lines` can be watched while it runs.
struct Blackhole {
    port: u16,
    lines: Arc<AtomicU64>,
    thread: JoinHandle<(u64, u64)>,
}

impl Blackhole {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("blackhole binds");
        let port = listener.local_addr().expect("address").port();
        let lines = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&lines);
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("blackhole accepts");
            let mut buffer = vec![0u8; 1 << 20];
            let mut bytes = 0u64;
            loop {
                let n = match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                bytes += n as u64;
                let found = memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
                counter.fetch_add(found, Ordering::Relaxed);
            }
            (counter.load(Ordering::Relaxed), bytes)
        });
        Self {
            port,
            lines,
            thread,
        }
    }

    /// Waits for EOF: (lines, bytes).
    fn finish(self) -> (u64, u64) {
        self.thread.join().expect("blackhole thread")
    }
}

/// What a child process used, as GNU time reports it. The child runs
/// under `/usr/bin/time` because a child spawned straight from this
/// process would report this process's peak RSS as its own: `vfork` shares
/// the memory map until `exec`, and the kernel carries its high-water mark
/// into the new program's `ru_maxrss`.
struct ChildUsage {
    cpu: Duration,
    max_rss_kib: u64,
}

/// The command `program` under `/usr/bin/time`, which writes its usage to
/// `usage_file` (read it with [`read_usage`] once the child has exited).
fn timed(program: &Path, usage_file: &Path) -> Command {
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%U %S %M", "-o"])
        .arg(usage_file)
        .arg(program)
        .stdout(Stdio::null());
    command
}

fn read_usage(usage_file: &Path) -> ChildUsage {
    let text = std::fs::read_to_string(usage_file).expect("GNU time's output");
    // The last line holds the figures (a line before it may say the
    // command was killed by a signal, as syslog-ng is).
    let fields: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [user, system, max_rss_kib] = fields[..] else {
        panic!("unexpected GNU time output: {text}");
    };
    ChildUsage {
        cpu: Duration::from_secs_f64(user + system),
        max_rss_kib: max_rss_kib as u64,
    }
}

/// One case's measurements.
struct Measured {
    name: &'static str,
    records: u64,
    elapsed: Duration,
    bytes_in: u64,
    bytes_out: u64,
    cpu: Duration,
    /// `None` where the figure would not mean anything (the ceiling holds
    /// every line in memory by design).
    peak_rss_kib: Option<u64>,
}

impl Measured {
    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.records as f64 / 1e6)
    }
    fn megabytes_per_s(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    fn peak_rss_mib(&self) -> Option<f64> {
        self.peak_rss_kib.map(|kib| kib as f64 / 1024.0)
    }
}

/// The main case: the agent backfills the simulator's whole history
/// (`run --once`, rate limits off) into a blackhole.
fn ours(agent: &Path, simulator: &Simulator, expected: u64, work: &Path) -> Measured {
    let hole = Blackhole::start();
    let harness_before = support::cpu_time("/proc/self/stat");
    let started = Instant::now();
    let usage_file = work.join("agent.usage");
    let mut child = timed(agent, &usage_file)
        .args(["run", "--once", "--data-types", "activities"])
        .args(["--api-url", &simulator.url(), "--token", DEFAULT_TOKEN])
        .arg("--state-dir")
        .arg(work.join("state"))
        // Reaches past the history's start; the simulator has nothing older.
        .args(["--backfill", "30d", "--requests-per-minute", "0"])
        .args(["--syslog-host", "127.0.0.1", "--syslog-protocol", "tcp"])
        .args(["--syslog-port", &hole.port.to_string()])
        .args(["--log-level", "warn"])
        .spawn()
        .expect("agent starts");
    // A watchdog instead of polling, so the wait costs the harness nothing.
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let timeout = Duration::from_secs(env_or("E2E_AGENT_TIMEOUT_S", AGENT_TIMEOUT.as_secs()));
    let watchdog = std::thread::spawn(move || {
        let timed_out = watched.recv_timeout(timeout).is_err();
        if timed_out {
            // The child is GNU time: stop the agent under it, then it.
            let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        timed_out
    });
    let status = child.wait().expect("agent's status");
    let elapsed = started.elapsed();
    let _ = finished.send(());
    assert!(
        !watchdog.join().expect("watchdog"),
        "the agent had not finished after {timeout:?} (its warnings are above)"
    );
    let (lines, bytes) = hole.finish();
    let harness = support::cpu_time("/proc/self/stat").saturating_sub(harness_before);
    assert!(status.success(), "the agent failed: {status}");
    let usage = read_usage(&usage_file);
    println!(
        "the simulator serving and the blackhole (this process) used {:.2} CPU s per M records \
         beside the agent, {:.0}% of the machine's {} cores over the run together with it",
        harness.as_secs_f64() / (lines as f64 / 1e6),
        (harness + usage.cpu).as_secs_f64() / elapsed.as_secs_f64() / cores() as f64 * 100.0,
        cores(),
    );
    assert!(
        lines >= expected,
        "the agent delivered {lines} lines of {expected}"
    );
    Measured {
        name: "siem-agent",
        records: lines,
        elapsed,
        bytes_in: simulator.stats().body_bytes.load(Ordering::Relaxed),
        bytes_out: bytes,
        cpu: usage.cpu,
        peak_rss_kib: Some(usage.max_rss_kib),
    }
}

/// Records `0..count` as NDJSON, the way the API serves them.
fn ndjson(stream: &StreamConfig, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 1400);
    for index in 0..count {
        stream.write_record(index, &mut out);
        out.push(b'\n');
    }
    out
}

/// The agent's lines for the same records (same encoder settings), cut
/// into batches the way the pipeline cuts them.
fn encode_lines(ndjson: &[u8]) -> Vec<Vec<u8>> {
    let mut encoder = support::default_encoder();
    let mut parser = Parser::new();
    let mut scratch = Vec::new();
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_BYTES + 4096);
    for line in ndjson.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        scratch.clear();
        scratch.extend_from_slice(line);
        parser
            .parse_document(&mut scratch, |record| {
                let record = record.expect("simulator records are valid");
                encoder.encode(record, &mut batch);
                batch.push(b'\n');
            })
            .expect("valid JSON");
        if batch.len() >= BATCH_BYTES {
            batches.push(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH_BYTES + 4096),
            ));
        }
    }
    batches.push(batch);
    batches
}

/// The ceiling: the pre-encoded lines through a blocking `writev` loop on
/// one thread; its CPU is that thread's.
fn ceiling(batches: &[Vec<u8>]) -> Measured {
    let hole = Blackhole::start();
    let port = hole.port;
    let started = Instant::now();
    let writer = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu_before = support::cpu_time("/proc/thread-self/stat");
                let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
                let mut sent = 0u64;
                for group in batches.chunks(support::SLICES_PER_CALL) {
                    let slices: Vec<IoSlice<'_>> = group.iter().map(|b| IoSlice::new(b)).collect();
                    sent +=
                        support::write_all_vectored(&mut stream, &slices).expect("writev") as u64;
                }
                drop(stream);
                (
                    sent,
                    support::cpu_time("/proc/thread-self/stat").saturating_sub(cpu_before),
                )
            })
            .join()
            .expect("writer thread")
    });
    let (lines, bytes) = hole.finish();
    let elapsed = started.elapsed();
    let (sent, cpu) = writer;
    assert_eq!(bytes, sent, "ceiling: bytes lost");
    Measured {
        name: "writev ceiling",
        records: lines,
        elapsed,
        bytes_in: sent,
        bytes_out: bytes,
        cpu,
        peak_rss_kib: None,
    }
}

/// The peer's configuration: a TCP source taking NDJSON, the JSON parser,
/// the agent's activity fields set under `.cef.` and formatted with
/// `format-cef-extension`, and a TCP destination with flow control, so
/// nothing is dropped.
fn peer_config(listen: u16, blackhole: u16) -> String {
    // (CEF key, syslog-ng template) in the agent's order.
    let fields = [
        ("externalId", "${.cas._id}"),
        ("rt", "${.cas.timestamp}"),
        ("start", "${.cas.timestamp}"),
        ("end", "${.cas.timestamp}"),
        ("msg", "${.cas.description}"),
        ("suser", "${.cas.user.userName}"),
        ("destinationServiceName", "${.cas.appName}"),
        ("dvc", "${.cas.device.clientIP}"),
        ("requestClientApplication", "${.cas.device.userAgent}"),
        ("cs1Label", "portalURL"),
        (
            "cs1",
            "https://portal.cloudappsecurity.com/#/audits?activity.id=eq(${.cas._id},)",
        ),
        ("cs2Label", "uniqueServiceAppIds"),
        ("cs2", "APPID_${.cas.appId}"),
        ("cs3Label", "targetObjects"),
        ("cs3", "${.cas.mainInfo.eventObjects}"),
        ("cs4Label", "policyIDs"),
        ("cs4", "${.cas.policies}"),
        ("c6a1Label", "Device IPv6 Address"),
        ("c6a1", ""),
    ];
    let mut sets = String::new();
    for (key, template) in fields {
        let _ = writeln!(sets, "  set(\"{template}\" value(\".cef.{key}\"));");
    }
    format!(
        r#"@version: 3.38
options {{ stats_freq(0); log_msg_size(65536); threaded(yes); }};
source s_ndjson {{
  network(transport("tcp") ip("127.0.0.1") port({listen}) flags(no-parse) log-iw-size(20000));
}};
parser p_json {{ json-parser(prefix(".cas.")); }};
rewrite r_cef {{
{sets}}};
destination d_blackhole {{
  network("127.0.0.1" port({blackhole}) transport("tcp") template("${{.cas.timestamp}} CEF:0|MCAS|SIEM_Agent|{version}|${{.cas.eventTypeName}}|${{.cas.mainInfo.prettyOperationName}}|0|$(format-cef-extension --subkeys .cef.)\n"));
}};
log {{ source(s_ndjson); parser(p_json); rewrite(r_cef); destination(d_blackhole); flags(flow-control); }};
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("address").port()
}

fn wait_for_port(port: u16) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// The peer case: syslog-ng takes the NDJSON over TCP and sends CEF to a
/// blackhole; timed from the first byte sent to the last line received.
fn peer(syslog_ng: &Path, ndjson: &[u8], records: u64, work: &Path) -> Measured {
    let hole = Blackhole::start();
    let listen = free_port();
    let config = work.join("peer.conf");
    std::fs::write(&config, peer_config(listen, hole.port)).expect("write config");
    let usage_file = work.join("peer.usage");
    let pid_file = work.join("peer.pid");
    let mut child = timed(syslog_ng, &usage_file)
        .arg("-F")
        .arg("-f")
        .arg(&config)
        .arg("-R")
        .arg(work.join("peer.persist"))
        .arg("-p")
        .arg(&pid_file)
        .arg("-c")
        .arg(work.join("peer.ctl"))
        .spawn()
        .expect("syslog-ng starts");
    wait_for_port(listen);
    let started = Instant::now();
    let mut input = TcpStream::connect(("127.0.0.1", listen)).expect("connects to syslog-ng");
    input.write_all(ndjson).expect("send NDJSON");
    drop(input);
    while hole.lines.load(Ordering::Relaxed) < records && started.elapsed() < PEER_TIMEOUT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let pid = std::fs::read_to_string(&pid_file).expect("syslog-ng's pid file");
    Command::new("kill")
        .arg(pid.trim())
        .status()
        .expect("kill syslog-ng");
    child.wait().expect("syslog-ng exits");
    let usage = read_usage(&usage_file);
    let (lines, bytes) = hole.finish();
    assert_eq!(
        lines, records,
        "syslog-ng delivered {lines} of {records} lines"
    );
    Measured {
        name: "syslog-ng",
        records: lines,
        elapsed,
        bytes_in: ndjson.len() as u64,
        bytes_out: bytes,
        cpu: usage.cpu,
        peak_rss_kib: Some(usage.max_rss_kib),
    }
}

fn main() {
    let minutes: u64 = env_or("E2E_MINUTES", 120);
    let per_minute: u64 = env_or("E2E_PER_MINUTE", 10_000);
    let agent = PathBuf::from(env_or(
        "SIEM_AGENT_BIN",
        "target/release/siem-agent".to_owned(),
    ));
    let syslog_ng = PathBuf::from(env_or(
        "SYSLOG_NG",
        "target/syslog-ng/run-syslog-ng".to_owned(),
    ));
    let svg = PathBuf::from(env_or("E2E_SVG", "benches/e2e.svg".to_owned()));
    let skip_peer = env_or("E2E_SKIP_PEER", 0u8) == 1;
    assert!(
        agent.exists(),
        "{} missing: run benches/e2e.sh",
        agent.display()
    );
    let work = std::env::temp_dir().join(format!("siem-agent-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("scratch dir");

    let now = siem_agent::clock::now_ms();
    let mut config = SimulatorConfig::new(now, Duration::from_secs(minutes * 60));
    config.requests_per_minute = None;
    config.activities.per_minute = per_minute;
    config.activities.max_index_delay_ms = 0;
    config.alerts.per_minute = 0;
    config.pregenerate = true;
    let expected = config.activities.first_index_at_or_after(now);
    println!(
        "e2e: {expected} activities ({minutes} min at {per_minute}/min); machine: {} cores; \
         rendering them in the simulator...",
        cores()
    );
    let stream = config.activities.clone();
    let simulator = Simulator::start(config).expect("simulator starts");

    let ours = ours(&agent, &simulator, expected, &work);
    drop(simulator);
    report(&ours);

    // The same records the agent delivered, for the ceiling and the peer.
    let ndjson = ndjson(&stream, ours.records);
    let batches = encode_lines(&ndjson);
    let encoded: u64 = batches.iter().map(|b| b.len() as u64).sum();
    assert_eq!(
        encoded, ours.bytes_out,
        "the agent's output differs in size from the same records encoded here"
    );
    // The shortest case and the noisiest on a shared machine: best of
    // three, so the ratio to it is not flattered by one slow run.
    let ceiling = (0..CEILING_RUNS)
        .map(|_| ceiling(&batches))
        .min_by_key(|m| m.elapsed)
        .expect("at least one run");
    drop(batches);
    report(&ceiling);

    let peer = (!skip_peer).then(|| peer(&syslog_ng, &ndjson, ours.records, &work));
    if let Some(peer) = &peer {
        report(peer);
    }
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "ours/ceiling: {:.1}% of the ceiling's lines/s",
        ours.records_per_s() / ceiling.records_per_s() * 100.0
    );
    if let Some(peer) = &peer {
        println!(
            "ours/peer: {:.1}x syslog-ng's records/s, {:.1}x less CPU per record",
            ours.records_per_s() / peer.records_per_s(),
            peer.cpu_per_million() / ours.cpu_per_million()
        );
    }
    let cases: Vec<&Measured> = [Some(&ours), peer.as_ref(), Some(&ceiling)]
        .into_iter()
        .flatten()
        .collect();
    std::fs::write(&svg, chart(&cases)).expect("write chart");
    println!("chart: {}", svg.display());
}

fn report(m: &Measured) {
    println!(
        "{:<18} {:>9} records in {:>7.2} s: {:>9.0} records/s, {:>6.1} MB/s in, {:>6.1} MB/s out, \
         {:>6.2} CPU s per M records, peak RSS {}",
        m.name,
        m.records,
        m.elapsed.as_secs_f64(),
        m.records_per_s(),
        m.megabytes_per_s(m.bytes_in),
        m.megabytes_per_s(m.bytes_out),
        m.cpu_per_million(),
        m.peak_rss_mib()
            .map_or("n/a".to_owned(), |mib| format!("{mib:.1} MiB")),
    );
}

/// Three bar panels (records/s, CPU seconds per million records, peak RSS)
/// with one bar per case.
fn chart(cases: &[&Measured]) -> String {
    const PANEL_WIDTH: f64 = 300.0;
    const BAR_AREA: f64 = 200.0;
    const TOP: f64 = 60.0;
    const COLOURS: [&str; 3] = ["#2b6cb0", "#c05621", "#718096"];
    type Metric = fn(&Measured) -> Option<f64>;
    let panels: [(&str, Metric); 3] = [
        ("records per second", |m| Some(m.records_per_s())),
        ("CPU seconds per million records", |m| {
            Some(m.cpu_per_million())
        }),
        ("peak RSS (MiB)", Measured::peak_rss_mib),
    ];
    let width = PANEL_WIDTH * panels.len() as f64;
    let height = TOP + BAR_AREA + 70.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    for (p, (title, metric)) in panels.iter().enumerate() {
        let left = p as f64 * PANEL_WIDTH;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="14" font-weight="bold">{title}</text>"#,
            left + PANEL_WIDTH / 2.0
        );
        let values: Vec<Option<f64>> = cases.iter().map(|m| metric(m)).collect();
        let max = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
        let bar_width = (PANEL_WIDTH - 40.0) / cases.len() as f64;
        for (i, (case, value)) in cases.iter().zip(&values).enumerate() {
            let x = left + 20.0 + i as f64 * bar_width;
            let centre = x + bar_width / 2.0;
            let label = match value {
                Some(v) if *v >= 100.0 => format!("{v:.0}"),
                Some(v) => format!("{v:.1}"),
                None => "n/a".to_owned(),
            };
            let bar = value.map_or(0.0, |v| if max > 0.0 { v / max * BAR_AREA } else { 0.0 });
            let y = TOP + BAR_AREA - bar;
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{bar:.1}" fill="{}"/>"#,
                x + 8.0,
                bar_width - 16.0,
                COLOURS[i % COLOURS.len()]
            );
            let _ = writeln!(
                svg,
                r#"<text x="{centre:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                y - 6.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{centre:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + BAR_AREA + 18.0,
                case.name
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.1}" fill="grey">{}</text>"#,
        height - 12.0,
        caption(cases)
    );
    svg.push_str("</svg>\n");
    svg
}

/// The chart's footnote: the run's size, the machine and `E2E_LABEL`
/// (the script passes the commit and date).
fn caption(cases: &[&Measured]) -> String {
    let records = cases.first().map_or(0, |m| m.records);
    let label = std::env::var("E2E_LABEL").unwrap_or_default();
    format!(
        "{records} activity records, one run, {} cores, {label}; the ceiling's RSS is n/a (it holds every line in memory)",
        cores()
    )
}
