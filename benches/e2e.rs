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

use support::harness::{
    agent_and_peer, cores, env_or, ndjson, peer, read_usage, report, timed, Blackhole, Measured,
};

use std::fmt::Write as _;
use std::io::IoSlice;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siem_agent::parse::Parser;
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::sink::BATCH_BYTES;

/// Runs of the ceiling case; the fastest is reported.
const CEILING_RUNS: usize = 3;
/// How long the agent may take before the run fails (it retries a failing
/// API with backoff for as long as it is let, so a bug in the simulator
/// would otherwise hang the bench); `E2E_AGENT_TIMEOUT_S` overrides it.
const AGENT_TIMEOUT: Duration = Duration::from_secs(600);

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

fn main() {
    let minutes: u64 = env_or("E2E_MINUTES", 120);
    let per_minute: u64 = env_or("E2E_PER_MINUTE", 10_000);
    let (agent, syslog_ng) = agent_and_peer("benches/e2e.sh");
    let svg = PathBuf::from(env_or("E2E_SVG", "benches/e2e.svg".to_owned()));
    let skip_peer = env_or("E2E_SKIP_PEER", 0u8) == 1;
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
