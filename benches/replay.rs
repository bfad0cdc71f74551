//! `replay` on one thread and on two, in alternating rounds, each turning
//! the same file of simulated activities (NDJSON) into CEF sent over TCP to
//! a line-counting blackhole on loopback, and then written to `/dev/null`
//! (parsing and encoding alone); and beside them, in the same run,
//! syslog-ng (`json-parser` and `format-cef-extension`) doing the same job
//! on the same records into the same kind of blackhole.
//!
//! Run it with `bash benches/replay.sh`, which installs syslog-ng (unpacked
//! from Debian), builds the agent and passes their paths in. Environment:
//! `REPLAY_RECORDS` (default 200,000), `REPLAY_ROUNDS` (default 3),
//! `REPLAY_SKIP_PEER=1` to leave syslog-ng out.
//!
//! Every run must deliver every record, and every run of the agent the same
//! number of bytes. The ratio of two threads to one is taken per round (the
//! two runs of a round are seconds apart, so a change in the machine's
//! speed between rounds does not enter it) and its median reported.
//! `PERF.md` records the results.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use siem_agent::simulator::SimulatorConfig;
use support::harness::{
    agent_and_peer, cores, env_or, ndjson, peer, read_usage, report, timed, Blackhole, Measured,
};

/// Thread counts compared, in the order of the even rounds (odd rounds
/// run them the other way round).
const THREADS: [usize; 2] = [1, 2];

/// Where a run's lines go.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// Over TCP into a fresh blackhole (the target's case).
    Tcp,
    /// To stdout, which is `/dev/null`: parsing and encoding alone, with no
    /// writer thread and no receiver sharing the cores.
    DevNull,
}

/// `replay --threads threads` of `input` to `output`.
fn replay(
    agent: &Path,
    input: &Path,
    threads: usize,
    output: Output,
    records: u64,
    work: &Path,
) -> Measured {
    let hole = (output == Output::Tcp).then(Blackhole::start);
    let usage_file = work.join("replay.usage");
    let mut command = timed(agent, &usage_file);
    command
        .arg("replay")
        .args(["--threads", &threads.to_string()]);
    if let Some(hole) = &hole {
        command
            .args(["--syslog-host", "127.0.0.1", "--syslog-protocol", "tcp"])
            .args(["--syslog-port", &hole.port.to_string()]);
    }
    let started = Instant::now();
    let status = command.arg(input).status().expect("replay runs");
    let elapsed = started.elapsed();
    assert!(status.success(), "replay failed: {status}");
    let (lines, bytes) = match hole {
        Some(hole) => hole.finish(),
        // Not counted: the same binary's lines, which the TCP runs count.
        None => (records, 0),
    };
    assert_eq!(
        lines, records,
        "replay delivered {lines} of {records} lines"
    );
    let usage = read_usage(&usage_file);
    Measured {
        name: match (threads, output) {
            (1, Output::Tcp) => "replay, 1 thread",
            (_, Output::Tcp) => "replay, 2 threads",
            (1, Output::DevNull) => "to /dev/null, 1",
            (_, Output::DevNull) => "to /dev/null, 2",
        },
        records: lines,
        elapsed,
        bytes_in: std::fs::metadata(input).map_or(0, |m| m.len()),
        bytes_out: bytes,
        cpu: usage.cpu,
        peak_rss_kib: Some(usage.max_rss_kib),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let records: u64 = env_or("REPLAY_RECORDS", 200_000);
    let rounds: usize = env_or("REPLAY_ROUNDS", 3);
    let (agent, syslog_ng) = agent_and_peer("benches/replay.sh");
    let skip_peer = env_or("REPLAY_SKIP_PEER", 0u8) == 1;
    let work = std::env::temp_dir().join(format!("siem-agent-replay-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("scratch dir");

    // The end-to-end benchmark's activities: realistic records of about
    // 1.2 KB, one in 97 hostile.
    let config = SimulatorConfig::new(siem_agent::clock::now_ms(), Duration::from_secs(3600));
    let input = work.join("activities.ndjson");
    let ndjson = ndjson(&config.activities, records);
    std::fs::write(&input, &ndjson).expect("write input");
    println!(
        "replay: {records} activities, {:.0} MB of NDJSON; machine: {} cores; {rounds} rounds",
        ndjson.len() as f64 / 1e6,
        cores()
    );

    let mut runs: Vec<Vec<Measured>> = THREADS.iter().map(|_| Vec::new()).collect();
    let mut null_runs: Vec<Vec<Measured>> = THREADS.iter().map(|_| Vec::new()).collect();
    let (mut ratios, mut null_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..THREADS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (output, runs) in [(Output::Tcp, &mut runs), (Output::DevNull, &mut null_runs)] {
            for &case in &order {
                let measured = replay(&agent, &input, THREADS[case], output, records, &work);
                report(&measured);
                runs[case].push(measured);
            }
        }
        let rate = |runs: &[Vec<Measured>], case: usize| runs[case][round].records_per_s();
        ratios.push(rate(&runs, 1) / rate(&runs, 0));
        null_ratios.push(rate(&null_runs, 1) / rate(&null_runs, 0));
        println!(
            "round {}: 2 threads / 1 thread = {:.2}x over TCP, {:.2}x to /dev/null",
            round + 1,
            ratios[round],
            null_ratios[round]
        );
    }
    let bytes: Vec<u64> = runs.iter().flatten().map(|m| m.bytes_out).collect();
    assert!(
        bytes.windows(2).all(|w| w[0] == w[1]),
        "runs sent different byte counts: {bytes:?}"
    );
    let peer = (!skip_peer).then(|| peer(&syslog_ng, &ndjson, records, &work));
    if let Some(peer) = &peer {
        report(peer);
    }
    let _ = std::fs::remove_dir_all(&work);

    for (label, runs) in [("over TCP", &runs), ("to /dev/null", &null_runs)] {
        for (case, threads) in THREADS.iter().enumerate() {
            let rates: Vec<f64> = runs[case].iter().map(Measured::records_per_s).collect();
            let cpu: Vec<f64> = runs[case].iter().map(Measured::cpu_per_million).collect();
            let rss: Vec<f64> = runs[case]
                .iter()
                .filter_map(Measured::peak_rss_mib)
                .collect();
            println!(
                "median {label}, {threads} thread(s): {:.0} records/s, {:.2} CPU s per M records, \
                 peak RSS {:.1} MiB",
                median(rates),
                median(cpu),
                median(rss)
            );
        }
    }
    println!(
        "median of the rounds' ratios, 2 threads / 1 thread: {:.2}x over TCP, {:.2}x to /dev/null",
        median(ratios),
        median(null_ratios)
    );
    if let Some(peer) = &peer {
        let best = |case: usize| {
            runs[case]
                .iter()
                .map(Measured::records_per_s)
                .fold(0.0, f64::max)
        };
        println!(
            "2 threads / syslog-ng: {:.1}x its records/s (best run of each), {:.1}x less CPU per record",
            best(1) / peer.records_per_s(),
            peer.cpu_per_million() / median(runs[1].iter().map(Measured::cpu_per_million).collect())
        );
    }
}
