//! The syslog writer alone: pre-encoded CEF lines to loopback blackholes,
//! next to the machine's ceiling measured in the same run (a plain blocking
//! `writev` loop writing the same bytes to the same kind of blackhole).
//!
//! Run with `cargo bench --bench sink` (`SINK_BENCH_MB` sets the volume per
//! case, default 1024). Every case counts the bytes its blackhole received
//! and checks them against what was sent, so a fast wrong run cannot pass.
//! `PERF.md` records the results and the targets.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod support;

use siem_agent::data_type::DataType;
use siem_agent::parse::Parser;
use siem_agent::pipeline::spawn_sink;
use siem_agent::simulator::data::StreamConfig;
use siem_agent::simulator::tls::TestPki;
use siem_agent::sink::tls::{TlsClient, TlsOptions};
use siem_agent::sink::{Batch, Destination, Protocol, SinkPlan, BATCH_BYTES};
use siem_agent::syslog::Framing;

/// Distinct records encoded for the run; the batches repeat them.
const SAMPLE_RECORDS: u64 = 4000;
/// How many times each case runs; the best run is reported.
const RUNS: usize = 3;

/// Realistic CEF lines (about 1.2 KB each, every 97th with hostile text),
/// cut into batches the way the pipeline cuts them.
fn sample_batches() -> Vec<Batch> {
    let stream = StreamConfig {
        kind: DataType::Activities,
        seed: 7,
        start_ms: 1_763_800_000_000,
        per_minute: 10_000,
        max_index_delay_ms: 0,
        burst_every: 1000,
        burst_size: 40,
        hostile_every: 97,
    };
    let mut encoder = support::default_encoder();
    let mut parser = Parser::new();
    let mut batches = Vec::new();
    let mut batch = Batch::new();
    for index in 0..SAMPLE_RECORDS {
        let mut json = Vec::new();
        stream.write_record(index, &mut json);
        parser
            .parse_document(&mut json, |record| {
                let record = record.expect("simulator records are valid");
                encoder.encode(record, &mut batch.bytes);
                batch.bytes.push(b'\n');
            })
            .expect("valid JSON");
        if batch.bytes.len() >= BATCH_BYTES {
            batches.push(std::mem::replace(&mut batch, Batch::new()));
        }
    }
    batches
}

/// A blackhole: accepts one connection and counts what arrives until EOF.
/// `tls` decrypts first; `relp` answers every frame `rsp 200`.
fn blackhole(tls: Option<Arc<rustls::ServerConfig>>, relp: bool) -> (u16, JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("address").port();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accepts");
        match tls {
            None => drain(stream, relp),
            Some(config) => {
                let connection = rustls::ServerConnection::new(config).expect("TLS server");
                let buffered = Buffered {
                    reader: std::io::BufReader::with_capacity(
                        1 << 20,
                        stream.try_clone().expect("clone"),
                    ),
                    writer: stream,
                };
                if relp {
                    drain(rustls::StreamOwned::new(connection, buffered), relp)
                } else {
                    drain_tls(connection, buffered)
                }
            }
        }
    });
    (port, thread)
}

/// rustls reads a socket 4 KiB at a time; a large buffer in between keeps
/// the blackhole from spending its time in `recv` (a real receiver would
/// do the same), so that it is not what limits the TLS case.
struct Buffered {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Reads to EOF; returns the payload bytes (RELP: the messages' bytes plus
/// one LF each, so the count compares with the lines sent).
fn drain<S: Read + Write>(mut stream: S, relp: bool) -> u64 {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    let mut answers = Vec::new();
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return total,
            Ok(n) => n,
        };
        if !relp {
            total += n as u64;
            continue;
        }
        pending.extend_from_slice(&buffer[..n]);
        let mut at = 0;
        answers.clear();
        while let Some((txnr, command, data_len, used)) = relp_frame(&pending[at..]) {
            answers.extend_from_slice(txnr);
            if command == b"close" {
                answers.extend_from_slice(b" rsp 0\n");
            } else {
                answers.extend_from_slice(b" rsp 6 200 OK\n");
            }
            if command == b"syslog" {
                total += data_len as u64 + 1;
            }
            at += used;
        }
        pending.drain(..at);
        if !answers.is_empty() && stream.write_all(&answers).is_err() {
            return total;
        }
        let _ = stream.flush();
    }
}

/// A TLS blackhole that counts plaintext in place (`BufRead` on the
/// rustls reader) instead of copying it out, as a receiver that parses
/// records straight from the decrypted buffer would.
fn drain_tls(mut connection: rustls::ServerConnection, mut socket: Buffered) -> u64 {
    let mut total = 0u64;
    loop {
        while connection.wants_write() {
            if connection.write_tls(&mut socket).is_err() {
                return total;
            }
        }
        match connection.read_tls(&mut socket) {
            Ok(0) | Err(_) => return total,
            Ok(_) => {}
        }
        let Ok(state) = connection.process_new_packets() else {
            return total;
        };
        let mut reader = connection.reader();
        while let Ok(plain) = std::io::BufRead::fill_buf(&mut reader) {
            if plain.is_empty() {
                return total;
            }
            let n = plain.len();
            total += n as u64;
            std::io::BufRead::consume(&mut reader, n);
        }
        if state.peer_has_closed() {
            return total;
        }
    }
}

/// One complete RELP frame at the start of `bytes`: (txnr, command, data
/// length, bytes used).
fn relp_frame(bytes: &[u8]) -> Option<(&[u8], &[u8], usize, usize)> {
    let first = bytes.iter().position(|&b| b == b' ')?;
    let second = first + 1 + bytes[first + 1..].iter().position(|&b| b == b' ')?;
    let rest = &bytes[second + 1..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let length: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let header = second + 1 + digits;
    let end = if length == 0 {
        header + 1
    } else {
        header + 1 + length + 1
    };
    if bytes.len() < end {
        return None;
    }
    Some((&bytes[..first], &bytes[first + 1..second], length, end))
}

/// The ceiling: the same bytes through a blocking `writev` loop.
fn ceiling(batches: &[Batch], total_batches: usize) -> (Duration, u64, u64) {
    let (port, sink) = blackhole(None, false);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let started = Instant::now();
    let mut sent = 0u64;
    let mut lines = 0u64;
    let per_call = support::SLICES_PER_CALL;
    let mut index = 0;
    while index < total_batches {
        let slices: Vec<IoSlice<'_>> = (index..(index + per_call).min(total_batches))
            .map(|i| IoSlice::new(&batches[i % batches.len()].bytes))
            .collect();
        let want: usize = slices.iter().map(|s| s.len()).sum();
        let done = support::write_all_vectored(&mut stream, &slices).expect("writev");
        assert_eq!(done, want);
        sent += want as u64;
        lines += (index..(index + per_call).min(total_batches))
            .map(|i| batches[i % batches.len()].lines())
            .sum::<u64>();
        index += per_call;
    }
    drop(stream);
    let received = sink.join().expect("blackhole");
    let elapsed = started.elapsed();
    assert_eq!(received, sent, "ceiling: bytes lost");
    (elapsed, sent, lines)
}

/// The TLS ceiling: octet-framed bytes through a blocking rustls stream
/// (`write_all`), into the same TLS blackhole.
fn tls_ceiling(
    batches: &[Batch],
    total_batches: usize,
    client: &TlsClient,
) -> (Duration, u64, u64) {
    let framed: Vec<Vec<u8>> = batches
        .iter()
        .map(|batch| {
            let mut out = Vec::with_capacity(batch.bytes.len() + 8192);
            for line in batch.bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                siem_agent::syslog::write_octet_counted(&mut out, line);
            }
            out
        })
        .collect();
    let config = PKI.with(|pki| pki.server_config().expect("server config"));
    let (port, sink) = blackhole(Some(config), false);
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let connection =
        rustls::ClientConnection::new(client.config.clone(), client.server_name.clone())
            .expect("TLS client");
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut lines = 0u64;
    for index in 0..total_batches {
        let bytes = &framed[index % framed.len()];
        tls.write_all(bytes).expect("write");
        sent += bytes.len() as u64;
        lines += batches[index % batches.len()].lines();
    }
    tls.conn.send_close_notify();
    tls.flush().expect("flush");
    // Read to EOF before closing: unread session tickets would make the
    // close a reset, and the blackhole could lose the end of the stream.
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let _ = std::io::copy(&mut tls.sock, &mut std::io::sink());
    drop(tls);
    let received = sink.join().expect("blackhole");
    let elapsed = started.elapsed();
    assert_eq!(received, sent, "tls ceiling: bytes lost");
    (elapsed, sent, lines)
}

/// Bytes `batch` takes on the wire with octet counting.
fn octet_counted_len(batch: &Batch) -> u64 {
    batch
        .bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| (line.len() + line.len().to_string().len() + 1) as u64)
        .sum()
}

/// Our writer: batches through the channel, until all are confirmed.
fn ours(
    batches: &[Batch],
    total_batches: usize,
    plan: SinkPlan,
    relp: bool,
) -> (Duration, u64, u64) {
    let octets = plan.framing == Framing::OctetCounting && !relp;
    let tls = plan
        .tls
        .is_some()
        .then(|| PKI.with(|pki| pki.server_config().expect("server config")));
    let (port, sink) = blackhole(tls, relp);
    let plan = SinkPlan { port, ..plan };
    let mut handle = spawn_sink(Destination::Syslog(plan), "bench").expect("writer");
    let started = Instant::now();
    let mut sent = 0u64;
    let mut lines = 0u64;
    // A pool of batches carrying the sample's bytes, reused as they return.
    // Each buffer's size on the wire is worked out once, by its address
    // (the writer hands buffers back untouched; over TCP and TLS a
    // batch's ticket comes back first, without its buffer, and the buffer
    // later).
    let mut pool: Vec<Batch> = batches
        .iter()
        .map(|b| Batch {
            lines: b.lines,
            bytes: b.bytes.clone(),
            ticket: 0,
        })
        .collect();
    let size = |b: &Batch| {
        if octets {
            octet_counted_len(b)
        } else {
            b.bytes.len() as u64
        }
    };
    let mut wire: std::collections::HashMap<*const u8, u64> =
        pool.iter().map(|b| (b.bytes.as_ptr(), size(b))).collect();
    for index in 0..total_batches {
        let batch = match pool.pop() {
            Some(batch) => batch,
            // The writer holds every buffer (in flight, or kept to send
            // again): make another, as the pipeline's producer does.
            None => {
                let sample = &batches[index % batches.len()];
                let batch = Batch {
                    lines: sample.lines,
                    bytes: sample.bytes.clone(),
                    ticket: 0,
                };
                wire.insert(batch.bytes.as_ptr(), size(&batch));
                batch
            }
        };
        sent += wire[&batch.bytes.as_ptr()];
        lines += batch.lines();
        handle.send(batch).expect("writer running");
        while let Ok(back) = handle.returned().try_recv() {
            if back.bytes.capacity() > 0 {
                pool.push(back);
            }
        }
    }
    handle.finish().expect("all confirmed");
    let elapsed = started.elapsed();
    let received = sink.join().expect("blackhole");
    assert_eq!(received, sent, "bytes lost");
    (elapsed, sent, lines)
}

thread_local! {
    static PKI: TestPki = TestPki::generate().expect("test PKI");
}

/// One case's best run: elapsed time, bytes, CPU time of the whole
/// process (sender and blackhole) during that run.
struct Measured {
    elapsed: Duration,
    lines: u64,
    line_bytes: u64,
    cpu: Duration,
}

/// One run of one case, measured.
fn measure(batches: &[Batch], run: &mut dyn FnMut() -> (Duration, u64, u64)) -> Measured {
    let bytes: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
    let lines: u64 = batches.iter().map(Batch::lines).sum();
    let cpu_before = support::cpu_time("/proc/self/stat");
    let (elapsed, _wire_bytes, sent_lines) = run();
    Measured {
        elapsed,
        lines: sent_lines,
        line_bytes: sent_lines * bytes / lines,
        cpu: support::cpu_time("/proc/self/stat").saturating_sub(cpu_before),
    }
}

/// A case: its name, what it is compared with, and how to run it once.
type Case<'a> = (
    &'static str,
    Option<&'static str>,
    Box<dyn FnMut() -> (Duration, u64, u64) + 'a>,
);

fn main() {
    let megabytes: usize = std::env::var("SINK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let batches = sample_batches();
    let bytes_per_batch = batches.iter().map(|b| b.bytes.len()).sum::<usize>() / batches.len();
    let lines: u64 = batches.iter().map(Batch::lines).sum();
    let line_bytes = batches.iter().map(|b| b.bytes.len() as u64).sum::<u64>() / lines;
    let total_batches = (megabytes << 20) / bytes_per_batch;
    println!(
        "sink bench: {megabytes} MiB per case, {total_batches} batches of ~{} KiB, \
         ~{line_bytes} bytes per line (LF included), best of {RUNS}; CPU is the whole \
         process (sender and blackhole) on {} cores",
        bytes_per_batch / 1024,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ca_dir = std::env::temp_dir().join(format!("siem-agent-sink-bench-{}", std::process::id()));
    std::fs::create_dir_all(&ca_dir).expect("temp dir");
    let ca = ca_dir.join("ca.pem");
    PKI.with(|pki| std::fs::write(&ca, pki.ca_pem()).expect("write CA"));
    let tls = TlsClient::build(
        "localhost",
        &TlsOptions {
            ca_file: Some(ca),
            ..TlsOptions::default()
        },
    )
    .expect("TLS client");
    let plan = |protocol, framing, tls: Option<TlsClient>| SinkPlan {
        host: "127.0.0.1".to_owned(),
        port: 0,
        protocol,
        framing,
        max_message: None,
        tls,
        relp_window: std::env::var("SINK_BENCH_RELP_WINDOW")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(siem_agent::sink::relp::DEFAULT_WINDOW),
        relp_answer_timeout: siem_agent::sink::RELP_ANSWER_TIMEOUT,
        resend_bytes: siem_agent::sink::DEFAULT_RESEND_BYTES,
    };
    // Lines and MiB of lines (LF included), whatever the framing adds.
    let report = |name: &str, m: &Measured, base: Option<(&str, f64)>| {
        let seconds = m.elapsed.as_secs_f64();
        let payload = m.line_bytes as f64;
        let lines_per_s = m.lines as f64 / seconds;
        let mut text = format!(
            "{name:<32} {lines_per_s:>10.0} lines/s {:>7.0} MiB/s  CPU {:>4.0}%",
            payload / seconds / (1 << 20) as f64,
            m.cpu.as_secs_f64() / seconds * 100.0
        );
        if let Some((base_name, base_rate)) = base {
            text.push_str(&format!(
                "  {:>5.1}% of {base_name}",
                lines_per_s / base_rate * 100.0
            ));
        }
        println!("{text}");
        lines_per_s
    };
    let all = std::env::var("SINK_BENCH_CASES").unwrap_or_default();
    let wanted = |case: &str| all.is_empty() || all.split(',').any(|c| c == case);
    let batches = &batches;
    let mut cases: Vec<Case<'_>> = vec![
        (
            "ceiling: blocking writev",
            None,
            Box::new(move || ceiling(batches, total_batches)),
        ),
        (
            "tcp, LF",
            Some("ceiling: blocking writev"),
            Box::new(move || {
                ours(
                    batches,
                    total_batches,
                    plan(Protocol::Tcp, Framing::Lf, None),
                    false,
                )
            }),
        ),
    ];
    if wanted("resend") {
        // What keeping the batches acknowledged last (to send again after
        // a reset) costs the TCP writer.
        cases.push((
            "tcp, LF, nothing kept",
            Some("tcp, LF"),
            Box::new(move || {
                ours(
                    batches,
                    total_batches,
                    SinkPlan {
                        resend_bytes: 0,
                        ..plan(Protocol::Tcp, Framing::Lf, None)
                    },
                    false,
                )
            }),
        ));
    }
    if wanted("octet") {
        cases.push((
            "tcp, octet counting",
            Some("ceiling: blocking writev"),
            Box::new(move || {
                ours(
                    batches,
                    total_batches,
                    plan(Protocol::Tcp, Framing::OctetCounting, None),
                    false,
                )
            }),
        ));
    }
    if wanted("tls") {
        let tls_for_ceiling = tls.clone();
        cases.push((
            "tls ceiling: blocking rustls",
            Some("tcp, LF"),
            Box::new(move || tls_ceiling(batches, total_batches, &tls_for_ceiling)),
        ));
        cases.push((
            "tls, octet counting",
            Some("tcp, LF"),
            Box::new(move || {
                ours(
                    batches,
                    total_batches,
                    plan(Protocol::Tls, Framing::OctetCounting, Some(tls.clone())),
                    false,
                )
            }),
        ));
    }
    if wanted("relp") {
        cases.push((
            "relp",
            Some("tcp, LF"),
            Box::new(move || {
                ours(
                    batches,
                    total_batches / 2,
                    plan(Protocol::Relp, Framing::Lf, None),
                    true,
                )
            }),
        ));
    }
    // Rounds go over every case in turn, so that a slow spell of this
    // shared machine hits all cases alike; each case keeps its best round.
    let mut results: Vec<Option<Measured>> = cases.iter().map(|_| None).collect();
    for _ in 0..RUNS {
        for (index, (_, _, run)) in cases.iter_mut().enumerate() {
            let measured = measure(batches, run.as_mut());
            if results[index]
                .as_ref()
                .is_none_or(|best| measured.elapsed < best.elapsed)
            {
                results[index] = Some(measured);
            }
        }
    }
    let mut rates: Vec<(&str, f64)> = Vec::new();
    for ((name, base, _), measured) in cases.iter().zip(&results) {
        let Some(measured) = measured else { continue };
        let base = base.and_then(|b| rates.iter().find(|(n, _)| *n == b).copied());
        let rate = report(name, measured, base);
        rates.push((name, rate));
    }
    let rate_of = |name: &str| rates.iter().find(|(n, _)| *n == name).map(|(_, r)| *r);
    if let (Some(ours), Some(ceiling)) = (
        rate_of("tls, octet counting"),
        rate_of("tls ceiling: blocking rustls"),
    ) {
        println!(
            "{:<32} {:>5.1}% of the tls ceiling",
            "tls, octet counting",
            ours / ceiling * 100.0
        );
    }
    let _ = std::fs::remove_dir_all(&ca_dir);
}
