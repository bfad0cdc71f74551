//! `replay`: saved API records in, CEF lines out.
//!
//! The same parse and encode stages the agent uses, driven over files, so
//! that a user can check the lines their SIEM will get from records they
//! already have, and so that tests and benchmarks exercise the real path.
//! Output is batched into one reused buffer and written in large chunks, to
//! stdout or through the syslog writer; with a syslog receiver, replay ends
//! only once the writer has confirmed every line.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::sync::atomic::Ordering;

use super::writer::{spawn_sink, SinkHandle};
use crate::cef::Encoder;
use crate::config::{InputSource, ReplayPlan};
use crate::exit;
use crate::parse::{InputReader, Item};
use crate::sink::{Destination, SinkError};

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
    let ReplayPlan {
        inputs,
        encoder,
        destination,
    } = plan;
    let output = match destination {
        Destination::Stdout => Output::Direct(out),
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
    let mut replay = Replay {
        encoder,
        reader: InputReader::new(),
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
    /// Straight to a writer (stdout).
    Direct(&'a mut dyn Write),
    /// Through the syslog writer thread.
    Sink(SinkHandle),
}

impl Output<'_> {
    /// Writes (or hands over) the lines in `batch`, leaving it empty.
    fn emit(&mut self, batch: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Output::Direct(out) => {
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
    /// Encoded lines not yet written.
    batch: Vec<u8>,
    out: Output<'a>,
    /// The first output error; once set, nothing more is written.
    output_error: Option<io::Error>,
    diagnostics: &'a mut dyn Write,
    summary: ReplaySummary,
}

impl Replay<'_> {
    /// Reads one input named `name`, encoding its records into the batch
    /// and writing the batch out whenever it is full.
    fn read<R: io::BufRead>(&mut self, source: R, name: &str) -> io::Result<()> {
        let Self {
            encoder,
            reader,
            batch,
            out,
            output_error,
            diagnostics,
            summary,
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
                    Output::Direct(out) => out.flush(),
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
