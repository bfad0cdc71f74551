//! The end-to-end benchmarks' harness: a line-counting blackhole on
//! loopback, a child process's CPU and peak RSS (through GNU time), the
//! measurements of one case, simulated records as NDJSON, and the peer
//! (syslog-ng turning NDJSON into CEF).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siem_agent::simulator::data::StreamConfig;

/// The agent and syslog-ng as the bench scripts pass them in
/// (`SIEM_AGENT_BIN`, `SYSLOG_NG`), with the usual paths as defaults; fails
/// naming `script` when the agent has not been built.
pub(crate) fn agent_and_peer(script: &str) -> (PathBuf, PathBuf) {
    let agent = PathBuf::from(env_or(
        "SIEM_AGENT_BIN",
        "target/release/siem-agent".to_owned(),
    ));
    let syslog_ng = PathBuf::from(env_or(
        "SYSLOG_NG",
        "target/syslog-ng/run-syslog-ng".to_owned(),
    ));
    assert!(agent.exists(), "{} missing: run {script}", agent.display());
    (agent, syslog_ng)
}

/// How long the peer may take to deliver everything before the run fails.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(900);

/// The cores this process may use (at least one).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A blackhole on loopback: accepts one connection and counts lines and
/// bytes until EOF. `lines` can be watched while it runs.
pub(crate) struct Blackhole {
    pub(crate) port: u16,
    pub(crate) lines: Arc<AtomicU64>,
    pub(crate) thread: JoinHandle<(u64, u64)>,
}

impl Blackhole {
    pub(crate) fn start() -> Self {
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
    pub(crate) fn finish(self) -> (u64, u64) {
        self.thread.join().expect("blackhole thread")
    }
}

/// What a child process used, as GNU time reports it. The child runs
/// under `/usr/bin/time` because a child spawned straight from this
/// process would report this process's peak RSS as its own: `vfork` shares
/// the memory map until `exec`, and the kernel carries its high-water mark
/// into the new program's `ru_maxrss`.
pub(crate) struct ChildUsage {
    pub(crate) cpu: Duration,
    pub(crate) max_rss_kib: u64,
}

/// The command `program` under `/usr/bin/time`, which writes its usage to
/// `usage_file` (read it with [`read_usage`] once the child has exited).
pub(crate) fn timed(program: &Path, usage_file: &Path) -> Command {
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%U %S %M", "-o"])
        .arg(usage_file)
        .arg(program)
        .stdout(Stdio::null());
    command
}

pub(crate) fn read_usage(usage_file: &Path) -> ChildUsage {
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
pub(crate) struct Measured {
    pub(crate) name: &'static str,
    pub(crate) records: u64,
    pub(crate) elapsed: Duration,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) cpu: Duration,
    /// `None` where the figure would not mean anything (the ceiling holds
    /// every line in memory by design).
    pub(crate) peak_rss_kib: Option<u64>,
}

impl Measured {
    pub(crate) fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    pub(crate) fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.records as f64 / 1e6)
    }
    pub(crate) fn megabytes_per_s(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        self.peak_rss_kib.map(|kib| kib as f64 / 1024.0)
    }
}

/// Records `0..count` as NDJSON, the way the API serves them.
pub(crate) fn ndjson(stream: &StreamConfig, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 1400);
    for index in 0..count {
        stream.write_record(index, &mut out);
        out.push(b'\n');
    }
    out
}

/// The peer's configuration: a TCP source taking NDJSON, the JSON parser,
/// the agent's activity fields set under `.cef.` and formatted with
/// `format-cef-extension`, and a TCP destination with flow control, so
/// nothing is dropped.
pub(crate) fn peer_config(listen: u16, blackhole: u16) -> String {
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
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("address").port()
}

pub(crate) fn wait_for_port(port: u16) {
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
pub(crate) fn peer(syslog_ng: &Path, ndjson: &[u8], records: u64, work: &Path) -> Measured {
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

pub(crate) fn report(m: &Measured) {
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
