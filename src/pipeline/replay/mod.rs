//! `replay`: saved API records in, CEF lines out.
//!
//! The same parse and encode stages the agent uses, driven over files, so
//! that a user can check the lines their SIEM will get from records they
//! already have, and so that tests and benchmarks exercise the real path.
//! Output is batched into one reused buffer and written in large chunks, to
//! stdout or through the syslog writer; with a syslog receiver, replay ends
//! only once the writer has confirmed every line.
//!
//! With more than one thread (`--threads`, the cores by default), NDJSON
//! input is shared between this thread and helpers (see `shared.rs`); the
//! output is the same bytes either way.

mod shared;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::Ordering;

use self::shared::{read_shared, LinePiece, Passing};
use super::helper::Helpers;
use super::writer::{spawn_sink, SinkHandle};
use crate::cef::Encoder;
use crate::config::{InputSource, ReplayPlan};
use crate::exit;
use crate::parse::{InputReader, Item, Parser};
use crate::sink::{Batch, Destination, SinkError};

pub use self::shared::PIECE_BYTES;

/// Output is written when the batch grows past this many bytes.
pub const BATCH_BYTES: usize = crate::sink::BATCH_BYTES;
/// Input read buffer size.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Lines written.
    pub records: u64,
    /// Malformed pieces of input skipped.
    pub problems: u64,
    /// Inputs that could not be opened or read.
    pub unreadable: u64,
    /// The output failed (other than the reader going away).
    pub output_failed: bool,
}

impl ReplaySummary {
    /// The process exit status for this outcome (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        if self.output_failed {
            exit::OUTPUT
        } else if self.unreadable > 0 {
            exit::NO_INPUT
        } else if self.problems > 0 {
            exit::DATA_ERROR
        } else {
            exit::OK
        }
    }
}

/// Runs a replay: reads every input of `plan` in order, writes one line per
/// record to `out`, and reports each problem on `diagnostics`.
pub fn run(plan: ReplayPlan, out: &mut dyn Write, diagnostics: &mut dyn Write) -> ReplaySummary {
    run_in_pieces(plan, out, diagnostics, PIECE_BYTES)
}

/// [`run`], with NDJSON shared between threads in pieces of `piece_bytes`
/// (tests use small pieces to make many).
fn run_in_pieces(
    plan: ReplayPlan,
    out: &mut dyn Write,
    diagnostics: &mut dyn Write,
    piece_bytes: usize,
) -> ReplaySummary {
    let ReplayPlan {
        inputs,
        encoder,
        destination,
        threads,
    } = plan;
    let output = match destination {
        Destination::Stdout => Output::Direct {
            out,
            spare: Vec::new(),
        },
        syslog @ Destination::Syslog(_) => match spawn_sink(syslog, "replay") {
            Ok(sink) => Output::Sink(sink),
            Err(error) => {
                let _ = writeln!(diagnostics, "siem-agent: {error}");
                return ReplaySummary {
                    output_failed: true,
                    ..ReplaySummary::default()
                };
            }
        },
    };
    let helpers = (threads > 1).then(|| Helpers::new(encoder.clone(), threads - 1, "replay"));
    let mut replay = Replay {
        encoder,
        reader: InputReader::new(),
        parser: Parser::new(),
        helpers,
        piece_bytes,
        batch: Vec::with_capacity(BATCH_BYTES + crate::sink::BATCH_SLACK_BYTES),
        out: output,
        output_error: None,
        diagnostics,
        summary: ReplaySummary::default(),
    };
    for input in &inputs {
        let (name, result) = match input {
            InputSource::Stdin => (
                STDIN_NAME.to_owned(),
                replay.read(io::stdin().lock(), STDIN_NAME),
            ),
            InputSource::File(path) => {
                let name = path.display().to_string();
                let result = File::open(path).and_then(|file| {
                    replay.read(BufReader::with_capacity(READ_BUFFER_BYTES, file), &name)
                });
                (name, result)
            }
        };
        if let Err(error) = result {
            replay.summary.unreadable += 1;
            let _ = writeln!(
                replay.diagnostics,
                "siem-agent: {name}: cannot read: {error}"
            );
        }
        if replay.output_error.is_some() {
            break;
        }
    }
    replay.finish()
}

/// How stdin is named in messages.
const STDIN_NAME: &str = "<stdin>";

/// Where replay writes.
enum Output<'a> {
    /// Straight to a writer (stdout), with the batches that pieces' lines
    /// were encoded into, for reuse.
    Direct {
        out: &'a mut dyn Write,
        spare: Vec<Batch>,
    },
    /// Through the syslog writer thread.
    Sink(SinkHandle),
}

impl Output<'_> {
    /// An empty batch for a piece's lines.
    fn batch(&mut self) -> Batch {
        match self {
            Output::Direct { spare, .. } => spare.pop().unwrap_or_else(Batch::new),
            Output::Sink(sink) => sink.batch(),
        }
    }

    /// Writes (or hands over) a batch of a piece's lines.
    fn pass(&mut self, mut batch: Batch) -> io::Result<()> {
        match self {
            Output::Direct { out, spare } => {
                let written = out.write_all(&batch.bytes);
                batch.bytes.clear();
                spare.push(batch);
                written
            }
            Output::Sink(sink) => sink.send(batch).map_err(io::Error::other),
        }
    }

    /// Keeps a batch that is not to be written (after an output error).
    fn keep(&mut self, mut batch: Batch) {
        batch.bytes.clear();
        match self {
            Output::Direct { spare, .. } => spare.push(batch),
            Output::Sink(sink) => sink.recycle(batch),
        }
    }

    /// Writes (or hands over) the lines in `batch`, leaving it empty.
    fn emit(&mut self, batch: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Output::Direct { out, .. } => {
                let written = out.write_all(batch);
                batch.clear();
                written
            }
            Output::Sink(sink) => {
                while let Ok(done) = sink.returned().try_recv() {
                    sink.recycle(done);
                }
                let mut next = sink.batch();
                std::mem::swap(&mut next.bytes, batch);
                sink.send(next).map_err(io::Error::other)
            }
        }
    }
}

/// The state of one replay run.
struct Replay<'a> {
    encoder: Encoder,
    reader: InputReader,
    /// This thread's parser when NDJSON is shared with helpers.
    parser: Parser,
    /// Helper threads, when replay runs on more than one.
    helpers: Option<Helpers<LinePiece>>,
    /// Input bytes per shared piece.
    piece_bytes: usize,
    /// Encoded lines not yet written.
    batch: Vec<u8>,
    out: Output<'a>,
    /// The first output error; once set, nothing more is written.
    output_error: Option<io::Error>,
    diagnostics: &'a mut dyn Write,
    summary: ReplaySummary,
}

impl Replay<'_> {
    /// Reads one input named `name`: NDJSON shared with the helpers, when
    /// there are any; anything else on this thread.
    fn read<R: BufRead>(&mut self, mut source: R, name: &str) -> io::Result<()> {
        let Some(helpers) = &mut self.helpers else {
            return self.read_alone(source, name);
        };
        // The first non-blank line tells the shape; it is read again.
        let mut head = Vec::new();
        let mut ndjson = false;
        loop {
            let start = head.len();
            if source.read_until(b'\n', &mut head)? == 0 {
                break;
            }
            let line = &head[start..];
            if !line.iter().all(u8::is_ascii_whitespace) {
                ndjson = self.parser.starts_ndjson(line);
                break;
            }
        }
        let source = io::Cursor::new(head).chain(source);
        if !ndjson {
            return self.read_alone(source, name);
        }
        let mut passing = Passing {
            out: &mut self.out,
            diagnostics: &mut *self.diagnostics,
            summary: &mut self.summary,
            output_error: &mut self.output_error,
            name,
            lines_before: 0,
        };
        if !self.batch.is_empty() {
            // Lines of an earlier input read on this thread go first.
            if let Err(error) = passing.out.emit(&mut self.batch) {
                passing.output_error.get_or_insert(error);
            }
        }
        read_shared(
            source,
            helpers,
            &mut self.parser,
            &mut self.encoder,
            &mut passing,
            self.piece_bytes,
        )
    }

    /// Reads one input named `name` on this thread, encoding its records
    /// into the batch and writing the batch out whenever it is full.
    fn read_alone<R: BufRead>(&mut self, source: R, name: &str) -> io::Result<()> {
        let Self {
            encoder,
            reader,
            batch,
            out,
            output_error,
            diagnostics,
            summary,
            ..
        } = self;
        let stats = reader.read(source, |item| match item {
            Item::Record(record) => {
                if output_error.is_some() {
                    return;
                }
                encoder.encode(record, batch);
                batch.push(b'\n');
                if batch.len() >= BATCH_BYTES {
                    if let Err(error) = out.emit(batch) {
                        *output_error = Some(error);
                    }
                }
            }
            Item::Problem(problem) => {
                let _ = writeln!(diagnostics, "siem-agent: {name}: {problem}");
            }
        })?;
        summary.records += stats.records;
        summary.problems += stats.problems;
        Ok(())
    }

    /// Writes what is left and reports the outcome.
    fn finish(mut self) -> ReplaySummary {
        if self.output_error.is_none() {
            let flushed = self
                .out
                .emit(&mut self.batch)
                .and_then(|()| match &mut self.out {
                    Output::Direct { out, .. } => out.flush(),
                    Output::Sink(_) => Ok(()),
                });
            if let Err(error) = flushed {
                self.output_error = Some(error);
            }
        }
        if let Output::Sink(sink) = &mut self.out {
            // Waits until the receiver has confirmed every line.
            match sink.finish() {
                Ok(_) => {
                    let counters = &sink.health.counters;
                    let resent = counters.resent.load(Ordering::Relaxed);
                    let truncated = counters.truncated.load(Ordering::Relaxed);
                    if resent > 0 || truncated > 0 {
                        let _ = writeln!(
                            self.diagnostics,
                            "siem-agent: syslog: {resent} line(s) sent again after a connection failed (possible duplicates); {truncated} line(s) cut to the maximum message size"
                        );
                    }
                }
                Err(SinkError::OutputClosed) => {}
                Err(error) => {
                    self.output_error
                        .get_or_insert(io::Error::other(error.to_string()));
                }
            }
        }
        if let Some(error) = self.output_error {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            if error.kind() != io::ErrorKind::BrokenPipe {
                self.summary.output_failed = true;
                let _ = writeln!(self.diagnostics, "siem-agent: cannot write output: {error}");
            }
            return self.summary;
        }
        if self.summary.problems > 0 {
            let _ = writeln!(
                self.diagnostics,
                "siem-agent: {} malformed input item(s) skipped; {} record(s) written",
                self.summary.problems, self.summary.records
            );
        }
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cef::Mapping;
    use crate::data_type::DataType;
    use crate::simulator::data::StreamConfig;
    use crate::syslog::{HeaderStyle, SyslogHeader};
    use crate::test_support::scratch_path;
    use std::path::PathBuf;

    /// `count` simulated records of `kind` as NDJSON.
    fn records(kind: DataType, count: u64) -> Vec<u8> {
        let stream = StreamConfig {
            kind,
            seed: 11,
            start_ms: 1_700_000_000_000,
            per_minute: 10_000,
            max_index_delay_ms: 300_000,
            burst_every: 1000,
            burst_size: 50,
            hostile_every: 7,
        };
        let mut out = Vec::new();
        for index in 0..count {
            stream.write_record(index, &mut out);
            out.push(b'\n');
        }
        out
    }

    /// Input with every kind of NDJSON line: records, blank lines, CRLF,
    /// a page, an array with a non-object, lines that are not JSON, and a
    /// last line without its LF.
    fn mixed_input() -> Vec<u8> {
        let activities = records(DataType::Activities, 300);
        let alerts = records(DataType::Alerts, 40);
        let mut input = b"\n  \n".to_vec();
        for (number, line) in activities.split_inclusive(|&b| b == b'\n').enumerate() {
            input.extend_from_slice(line);
            match number % 37 {
                3 => input.extend_from_slice(b"{\"_id\": broken\n"),
                9 => input.extend_from_slice(b"\r\n\n"),
                17 => input.extend_from_slice(b"[1, {\"_id\": \"x1\", \"timestamp\": 1}]\n"),
                23 => input.extend_from_slice(b"not json at all\n"),
                _ => {}
            }
        }
        input.extend_from_slice(b"{\"data\": [");
        for (n, line) in alerts
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            if n > 0 {
                input.push(b',');
            }
            input.extend_from_slice(line);
        }
        input.extend_from_slice(b"], \"hasNext\": false}\n");
        input.extend_from_slice(&records(DataType::Alerts, 3));
        input.extend_from_slice(b"{\"_id\": \"last\", \"timestamp\": 1700000000000}");
        input
    }

    fn plan(files: &[PathBuf], threads: usize) -> ReplayPlan {
        let header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("header");
        ReplayPlan {
            inputs: files.iter().cloned().map(InputSource::File).collect(),
            encoder: Encoder::new("1.0", "https://portal.example", header, Mapping::Auto),
            destination: Destination::Stdout,
            threads,
        }
    }

    /// stdout, stderr and the summary of a replay of `files`.
    fn replay(
        files: &[PathBuf],
        threads: usize,
        piece_bytes: usize,
    ) -> (Vec<u8>, String, ReplaySummary) {
        let (mut out, mut diagnostics) = (Vec::new(), Vec::new());
        let summary = run_in_pieces(
            plan(files, threads),
            &mut out,
            &mut diagnostics,
            piece_bytes,
        );
        (out, String::from_utf8(diagnostics).expect("utf-8"), summary)
    }

    fn write(test: &str, name: &str, contents: &[u8]) -> PathBuf {
        let dir = scratch_path(test);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("input written");
        path
    }

    #[test]
    fn any_number_of_threads_writes_the_same_bytes_and_problems() {
        let mixed = write("replay-threads", "mixed.ndjson", &mixed_input());
        let (lines, problems, summary) = replay(std::slice::from_ref(&mixed), 1, PIECE_BYTES);
        // The activities, the page's alerts, three alerts, the last line,
        // and the one object in each of the 8 arrays.
        assert_eq!(summary.records, 300 + 40 + 3 + 1 + 8, "{problems}");
        // 8 broken lines, 8 not JSON, 8 arrays' numbers, and the hostile
        // records the encoder still writes are not problems.
        assert_eq!(summary.problems, 3 * 8 + 1, "{problems}");
        assert!(
            problems.contains("mixed.ndjson: line 7: invalid JSON"),
            "line numbers count blank lines: {problems}"
        );
        for threads in [2, 3, 5] {
            for piece_bytes in [1, 700, 4096, 50_000] {
                let (shared, shared_problems, shared_summary) =
                    replay(std::slice::from_ref(&mixed), threads, piece_bytes);
                assert!(
                    shared == lines,
                    "{threads} threads, pieces of {piece_bytes} bytes: output differs"
                );
                assert_eq!(
                    shared_problems, problems,
                    "{threads} threads, {piece_bytes} bytes"
                );
                assert_eq!(shared_summary, summary);
            }
        }
    }

    #[test]
    fn documents_and_ndjson_mix_across_inputs_in_order() {
        let mixed = write("replay-mix", "mixed.ndjson", &mixed_input());
        let pretty =
            b"[\n  {\"_id\": \"p1\", \"timestamp\": 1700000000000},\n  {\"_id\": \"p2\"}\n]\n";
        let document = write("replay-mix", "pretty.json", pretty);
        let broken = write(
            "replay-mix",
            "broken.json",
            b"{\n \"data\": [\n {\"_id\": 1},\n",
        );
        let files = [mixed.clone(), document, broken, mixed];
        let alone = replay(&files, 1, PIECE_BYTES);
        assert!(alone.1.contains("broken.json"), "{}", alone.1);
        for threads in [2, 4] {
            assert!(replay(&files, threads, 2048) == alone, "{threads} threads");
        }
    }

    #[test]
    fn a_missing_input_between_others_is_reported_and_the_rest_written() {
        let mixed = write("replay-missing", "mixed.ndjson", &mixed_input());
        let missing = mixed.with_file_name("missing.ndjson");
        let files = [mixed.clone(), missing, mixed];
        let alone = replay(&files, 1, PIECE_BYTES);
        assert_eq!(alone.2.unreadable, 1);
        assert!(replay(&files, 2, 1000) == alone);
    }
}
