//! Helper threads that share the encoding thread's work: pieces of a scan
//! page in `run`, pieces of an input file in `replay`. Parsing and encoding
//! were three quarters of the agent's CPU in a backfill, all on one thread:
//! sharing pieces spreads them over the cores, while the lines still go out
//! in input order.
//!
//! The helpers live as long as their stage (one set per tenant, one per
//! replay) and start only when there is a second piece to share: starting
//! a thread, and making its channels, for every page cost a dozen
//! allocations a page and a thread start. When a tenant's backfill is
//! over, its helpers rest (see `Helpers::rest_if_idle`): a hundred
//! tailing tenants would otherwise each keep a thread and its buffers.
//!
//! A long-lived thread cannot borrow the page, so each piece is copied
//! into a buffer that goes to whichever thread takes it and comes back for
//! the next piece (a memory copy, small beside parsing it).
//!
//! All pieces go into one queue that the encoding thread takes from too,
//! so no thread waits while there is work: with six busy threads on two
//! cores, one of them is often descheduled, and a strict turn-taking left
//! the encoding thread waiting for its helper 40% of a backfill while the
//! other core had nothing to run. Finished pieces are put back in order in
//! a window of pieces ahead, which bounds the batches held.

use std::ops::Range;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::encode::{encode_records, writer_stopped, PageFailure, Tally};
use super::writer::SinkHandle;
use super::RunError;
use crate::cef::Encoder;
use crate::parse::Parser;
use crate::sink::Batch;

/// Records per piece when a scan page's records are shared between the
/// encoding thread and its helper: about one batch of lines (~800 bytes a
/// line), so each piece becomes one batch.
pub const SCAN_CHUNK_RECORDS: usize = 320;
/// Pieces handed out and not yet passed on in order, at least: bounds the
/// batches a stage holds back while one thread is descheduled in the middle
/// of a piece (about 1 MB). More helpers get two pieces ahead each.
pub const PIECES_AHEAD: usize = 4;
/// Helpers that have had no piece for this long end, and their buffers go.
pub const HELPER_REST: Duration = Duration::from_secs(10);
/// Bytes after a piece's last record, so it too is parsed where it lies
/// (simd-json reads a little past a document's end).
const PIECE_PADDING: usize = 64;

/// Work the encoding thread can share: one piece of input that encodes
/// into one batch of lines.
pub(super) trait Piece: Default + Send + 'static {
    /// What encoding the piece met, passed on with its batch.
    type Outcome: Send + 'static;

    /// Appends the piece's lines to `out`; returns how many lines, and
    /// what it met.
    fn encode(
        &mut self,
        parser: &mut Parser,
        encoder: &mut Encoder,
        out: &mut Vec<u8>,
    ) -> (u64, Self::Outcome);
}

/// A helper is gone (it panicked): its piece is lost, so the stage must
/// stop rather than wait for it.
#[derive(Debug)]
pub(super) struct HelperLost;

impl From<HelperLost> for PageFailure {
    fn from(_: HelperLost) -> Self {
        PageFailure::Fatal(RunError::Panicked("helper"))
    }
}

/// A piece on its way to a thread: its place in the order, the piece, and
/// the batch its lines go into.
struct Job<P> {
    index: usize,
    piece: P,
    batch: Batch,
}

impl<P: Piece> Job<P> {
    /// Encodes the piece into its batch (on whichever thread took it).
    fn run(mut self, parser: &mut Parser, encoder: &mut Encoder) -> Report<P> {
        let (lines, outcome) = self.piece.encode(parser, encoder, &mut self.batch.bytes);
        self.batch.lines = Some(lines);
        Report::Done(self.index, self.piece, self.batch, outcome)
    }
}

/// What a helper sends back.
enum Report<P: Piece> {
    /// A piece encoded: its place, its buffer to reuse, its batch of
    /// lines and what encoding met.
    Done(usize, P, Batch, P::Outcome),
    /// The helper panicked; the piece it held is lost.
    Lost,
}

/// Sends [`Report::Lost`] when a helper unwinds, so that the encoding
/// thread does not wait for a piece that will never come.
struct LostOnPanic<P: Piece>(Sender<Report<P>>);

impl<P: Piece> Drop for LostOnPanic<P> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Room is certain: at most `ahead` pieces are out, and the lost
            // one sent no report.
            let _ = self.0.try_send(Report::Lost);
        }
    }
}

/// The encoding thread's helpers, the queue of pieces they share with it,
/// the window that puts finished pieces back in order, and the spare piece
/// buffers.
pub(super) struct Helpers<P: Piece> {
    /// Cloned for each helper as it starts.
    encoder: Encoder,
    /// Helper threads to start at most.
    wanted: usize,
    work: Option<Sender<Job<P>>>,
    /// The same queue the helpers take from: the encoding thread takes
    /// pieces too.
    take: Receiver<Job<P>>,
    reports_in: Sender<Report<P>>,
    reports: Receiver<Report<P>>,
    threads: Vec<JoinHandle<()>>,
    /// Names the helpers: the encoding thread's name and `+`.
    name: String,
    spare: Vec<P>,
    /// Finished pieces not yet passed on; piece `i` waits in slot
    /// `i % ahead`.
    window: Vec<Option<(Batch, P::Outcome)>>,
    /// Pieces handed out, and passed on, since the stage started.
    handed: usize,
    passed: usize,
    /// When the last piece was handed out.
    last_piece: Instant,
}

impl<P: Piece> Helpers<P> {
    /// Up to `wanted` helpers encoding with copies of `encoder`, started
    /// as pieces come; `name` is the encoding thread's.
    pub(super) fn new(encoder: Encoder, wanted: usize, name: &str) -> Self {
        let ahead = PIECES_AHEAD.max(2 * (wanted + 1));
        let (work, take) = crossbeam_channel::bounded(ahead);
        let (reports_in, reports) = crossbeam_channel::bounded(ahead);
        Self {
            encoder,
            wanted,
            work: Some(work),
            take,
            reports_in,
            reports,
            threads: Vec::new(),
            name: format!("{name}+"),
            spare: Vec::new(),
            window: (0..ahead).map(|_| None).collect(),
            handed: 0,
            passed: 0,
            last_piece: Instant::now(),
        }
    }

    /// Ends the helpers and drops the spare piece buffers when no piece
    /// was handed out for [`HELPER_REST`] (the stage calls it after a
    /// small page: a tail, not a backfill). The next piece starts a helper
    /// again. Returns whether they were ended.
    pub(super) fn rest_if_idle(&mut self, now: Instant) -> bool {
        let resting = self.threads.is_empty() && self.spare.is_empty();
        if resting || self.busy() || now.saturating_duration_since(self.last_piece) < HELPER_REST {
            return false;
        }
        self.end_threads();
        // Ending the threads closed the queue: a new one for the helpers
        // of the next pieces. The reports channel stays as it is: nothing
        // is out (not busy), so nothing is in it.
        let (work, take) = crossbeam_channel::bounded(self.window.len());
        self.work = Some(work);
        self.take = take;
        self.spare = Vec::new();
        true
    }

    /// Closes the queue, which ends each thread once it has no piece, and
    /// waits for them.
    fn end_threads(&mut self) {
        self.work = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// A piece buffer to fill: a spare one when there is one.
    pub(super) fn piece(&mut self) -> P {
        self.spare.pop().unwrap_or_default()
    }

    /// Whether another piece may be handed out now.
    pub(super) fn has_room(&self) -> bool {
        self.handed - self.passed < self.window.len()
    }

    /// Whether pieces are out that were not passed on yet.
    pub(super) fn busy(&self) -> bool {
        self.handed > self.passed
    }

    /// Hands out a piece whose lines go into `batch`; call only when
    /// [`has_room`](Self::has_room), so that the queue never blocks.
    pub(super) fn hand_out(&mut self, piece: P, batch: Batch) -> Result<(), HelperLost> {
        let job = Job {
            index: self.handed,
            piece,
            batch,
        };
        self.work
            .as_ref()
            .ok_or(HelperLost)?
            .send(job)
            .map_err(|_| HelperLost)?;
        self.handed += 1;
        self.last_piece = Instant::now();
        // One more helper when more pieces wait than threads take them.
        if self.threads.len() < self.wanted && self.handed - self.passed > self.threads.len() + 1 {
            self.start_one();
        }
        Ok(())
    }

    /// Starts one helper with a parser and an encoder of its own. If it
    /// cannot be started, the others (and the encoding thread) take its
    /// share, and no further helper is tried.
    fn start_one(&mut self) {
        let jobs = self.take.clone();
        let reports = self.reports_in.clone();
        let mut encoder = self.encoder.clone();
        let started = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let lost = LostOnPanic(reports);
                let mut parser = Parser::new();
                for job in jobs {
                    if lost.0.send(job.run(&mut parser, &mut encoder)).is_err() {
                        return;
                    }
                }
            });
        match started {
            Ok(thread) => self.threads.push(thread),
            Err(_) => self.wanted = self.threads.len(),
        }
    }

    /// Passes on the pieces that are next in order with `pass`, then, if
    /// pieces are still out, encodes one on this thread or waits for a
    /// helper's, and passes on again.
    pub(super) fn step<E: From<HelperLost>>(
        &mut self,
        parser: &mut Parser,
        encoder: &mut Encoder,
        mut pass: impl FnMut(Batch, P::Outcome) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Ok(report) = self.reports.try_recv() {
            self.file(report)?;
        }
        self.pass_in_order(&mut pass)?;
        if !self.busy() {
            return Ok(());
        }
        let report = match self.take.try_recv() {
            Ok(job) => job.run(parser, encoder),
            // Every piece out is a helper's: wait for one.
            Err(_) => self.reports.recv().map_err(|_| HelperLost)?,
        };
        self.file(report)?;
        self.pass_in_order(&mut pass)
    }

    /// Steps until every piece handed out has been passed on.
    pub(super) fn drain<E: From<HelperLost>>(
        &mut self,
        parser: &mut Parser,
        encoder: &mut Encoder,
        mut pass: impl FnMut(Batch, P::Outcome) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.busy() {
            self.step(parser, encoder, &mut pass)?;
        }
        Ok(())
    }

    /// Files a finished piece in the window and keeps its buffer.
    fn file(&mut self, report: Report<P>) -> Result<(), HelperLost> {
        let Report::Done(index, piece, batch, outcome) = report else {
            return Err(HelperLost);
        };
        self.spare.push(piece);
        let slot = index % self.window.len();
        self.window[slot] = Some((batch, outcome));
        Ok(())
    }

    fn pass_in_order<E>(
        &mut self,
        pass: &mut impl FnMut(Batch, P::Outcome) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let slot = self.passed % self.window.len();
            let Some((batch, outcome)) = self.window[slot].take() else {
                return Ok(());
            };
            self.passed += 1;
            pass(batch, outcome)?;
        }
    }

    /// Helper threads running (for tests).
    #[cfg(test)]
    pub(super) fn started(&self) -> usize {
        self.threads.len()
    }
}

impl<P: Piece> Drop for Helpers<P> {
    fn drop(&mut self) {
        self.end_threads();
    }
}

/// A piece of a scan page, copied: its records' bytes and their ranges
/// within them.
#[derive(Default)]
pub(super) struct RecordPiece {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl RecordPiece {
    /// Copies the records at `ranges` of `bytes` (from `start` to `end`)
    /// into this buffer.
    fn fill(&mut self, bytes: &[u8], ranges: &[Range<usize>], start: usize, end: usize) {
        self.bytes.clear();
        self.bytes.extend_from_slice(&bytes[start..end]);
        self.bytes.resize(end - start + PIECE_PADDING, b' ');
        self.ranges.clear();
        self.ranges
            .extend(ranges.iter().map(|r| r.start - start..r.end - start));
    }
}

impl Piece for RecordPiece {
    type Outcome = Tally;

    fn encode(
        &mut self,
        parser: &mut Parser,
        encoder: &mut Encoder,
        out: &mut Vec<u8>,
    ) -> (u64, Tally) {
        let mut tally = Tally::default();
        encode_records(
            parser,
            encoder,
            &mut self.bytes,
            0,
            &self.ranges,
            out,
            &mut tally,
            |_| true,
        );
        (tally.delivered as u64, tally)
    }
}

/// Encodes a scan page's records on this thread and the helper and sends
/// the batches to the writer in record order; returns the last batch
/// unsent, for the page's ticket. Pieces are [`SCAN_CHUNK_RECORDS`]
/// records each.
pub(super) fn encode_shared(
    parser: &mut Parser,
    encoder: &mut Encoder,
    helpers: &mut Helpers<RecordPiece>,
    sink: &mut SinkHandle,
    bytes: &[u8],
    ranges: &[Range<usize>],
    tally: &mut Tally,
) -> Result<Batch, PageFailure> {
    let count = ranges.len().div_ceil(SCAN_CHUNK_RECORDS);
    let chunk = |index: usize| {
        let from = index * SCAN_CHUNK_RECORDS;
        &ranges[from..(from + SCAN_CHUNK_RECORDS).min(ranges.len())]
    };
    let mut last: Option<Batch> = None;
    // Passes a finished piece on: the batch before it goes to the writer.
    let mut pass = |sink: &mut SinkHandle, batch: Batch, counts: Tally| {
        tally.add(counts);
        match last.replace(batch) {
            Some(previous) => sink.send(previous).map_err(|_| writer_stopped(sink)),
            None => Ok(()),
        }
    };
    for index in 0..count {
        while !helpers.has_room() {
            helpers.step(parser, encoder, |batch, counts| pass(sink, batch, counts))?;
        }
        let records = chunk(index);
        let start = records[0].start;
        // A piece runs to where the next one starts.
        let end = if index + 1 < count {
            chunk(index + 1)[0].start
        } else {
            records[records.len() - 1].end
        };
        let mut piece = helpers.piece();
        piece.fill(bytes, records, start, end);
        helpers.hand_out(piece, sink.batch())?;
    }
    helpers.drain(parser, encoder, |batch, counts| pass(sink, batch, counts))?;
    Ok(last.take().unwrap_or_else(|| sink.batch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cef::Mapping;
    use crate::syslog::{HeaderStyle, SyslogHeader};

    fn encoder() -> Encoder {
        let header = SyslogHeader::new(HeaderStyle::None, None, 16).expect("header");
        Encoder::new("1.0", "https://portal.example", header, Mapping::Auto)
    }

    /// A piece that writes its number, or panics when it is `PANIC` and a
    /// helper (named with `+`) encodes it.
    #[derive(Default)]
    struct Numbered(u64);

    const PANIC: u64 = u64::MAX;

    impl Piece for Numbered {
        type Outcome = u64;

        fn encode(&mut self, _: &mut Parser, _: &mut Encoder, out: &mut Vec<u8>) -> (u64, u64) {
            let helper = std::thread::current()
                .name()
                .is_some_and(|n| n.ends_with('+'));
            assert!(!(helper && self.0 == PANIC), "a piece that panics");
            // Uneven work, so that pieces finish out of order.
            std::thread::sleep(std::time::Duration::from_micros(
                self.0.wrapping_mul(7919) % 300,
            ));
            out.extend_from_slice(self.0.to_string().as_bytes());
            out.push(b'\n');
            (1, self.0)
        }
    }

    /// Hands out `numbers` and returns what was passed on, in order.
    fn run(helpers: &mut Helpers<Numbered>, numbers: &[u64]) -> Result<Vec<u64>, HelperLost> {
        let (mut parser, mut encoder) = (Parser::new(), encoder());
        let mut passed = Vec::new();
        let mut pass = |batch: Batch, number: u64| {
            assert_eq!(batch.bytes, format!("{number}\n").into_bytes());
            assert_eq!(batch.lines, Some(1));
            passed.push(number);
            Ok::<(), HelperLost>(())
        };
        for &number in numbers {
            while !helpers.has_room() {
                helpers.step(&mut parser, &mut encoder, &mut pass)?;
            }
            let mut piece = helpers.piece();
            piece.0 = number;
            helpers.hand_out(piece, Batch::new())?;
        }
        helpers.drain(&mut parser, &mut encoder, &mut pass)?;
        Ok(passed)
    }

    #[test]
    fn pieces_are_passed_on_in_order_and_helpers_start_only_for_pieces() {
        let mut helpers = Helpers::<Numbered>::new(encoder(), 3, "test");
        assert_eq!(run(&mut helpers, &[1]).ok(), Some(vec![1]));
        assert_eq!(helpers.started(), 0, "one piece needs no helper");
        let numbers: Vec<u64> = (2..400).collect();
        assert_eq!(run(&mut helpers, &numbers).ok(), Some(numbers));
        assert_eq!(helpers.started(), 3);
        assert!(!helpers.busy());
    }

    #[test]
    fn idle_helpers_rest_and_start_again_for_the_next_pieces() {
        let mut helpers = Helpers::<Numbered>::new(encoder(), 2, "test");
        let numbers: Vec<u64> = (1..100).collect();
        assert_eq!(run(&mut helpers, &numbers).ok(), Some(numbers.clone()));
        assert_eq!(helpers.started(), 2);
        let now = Instant::now();
        assert!(!helpers.rest_if_idle(now), "not idle for long yet");
        assert_eq!(helpers.started(), 2);
        let later = now + HELPER_REST + Duration::from_secs(1);
        assert!(helpers.rest_if_idle(later));
        assert_eq!(helpers.started(), 0);
        assert!(helpers.spare.is_empty(), "the piece buffers are gone");
        assert!(!helpers.rest_if_idle(later), "resting already");
        // The next pieces are shared again, in order.
        assert_eq!(run(&mut helpers, &numbers).ok(), Some(numbers));
        assert_eq!(helpers.started(), 2);
    }

    #[test]
    fn a_helper_that_panics_stops_the_stage_instead_of_hanging_it() {
        let mut helpers = Helpers::<Numbered>::new(encoder(), 1, "test");
        let mut numbers: Vec<u64> = (1..50).collect();
        // The helper is waiting for pieces and takes most of them.
        numbers.extend([PANIC; 40]);
        numbers.extend(50..60);
        let passed = run(&mut helpers, &numbers);
        assert!(passed.is_err(), "passed on {passed:?}");
        assert_eq!(helpers.started(), 1);
    }
}
