//! The helper thread that shares scan pages' records with the encode
//! thread. Parsing and encoding were three quarters of the agent's CPU in
//! a backfill, all on one thread: sharing a scan page spreads them over two
//! cores, while the lines still go out in record order.
//!
//! The helper lives as long as the encode stage (one per tenant): starting
//! a thread, and making its two channels, for every scan page cost a dozen
//! allocations a page and a thread start. A long-lived thread cannot
//! borrow the page, so each piece of records is copied into a buffer that
//! goes to whichever thread takes the piece and comes back for the next
//! page (a memory copy of the page, small beside parsing it).

use std::ops::Range;
use std::thread::JoinHandle;

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
/// Pieces of a scan page handed out to the two encoding threads and not
/// yet sent to the writer: bounds the batches a page holds back while one
/// thread is descheduled in the middle of a piece (about 1 MB).
pub const SCAN_PIECES_AHEAD: usize = 4;
/// Bytes after a piece's last record, so it too is parsed where it lies
/// (simd-json reads a little past a document's end).
const PIECE_PADDING: usize = 64;

/// One piece of a scan page, copied: its records' bytes and their ranges
/// within them.
#[derive(Default)]
struct PieceBuffer {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl PieceBuffer {
    /// Appends the piece's lines to `out`.
    fn encode(&mut self, parser: &mut Parser, encoder: &mut Encoder, out: &mut Vec<u8>) -> Tally {
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
        tally
    }
}

/// Files a finished piece in the window and keeps its buffer.
fn finish(helper: &mut Helper, done: Done, window: &mut [Option<(Batch, Tally)>]) {
    helper.spare.push(done.piece);
    window[done.index % SCAN_PIECES_AHEAD] = Some((done.batch, done.tally));
}

/// A piece on its way to a thread: its place in the page, its records,
/// and the batch its lines go into.
struct Job {
    index: usize,
    piece: PieceBuffer,
    batch: Batch,
}

/// A piece encoded: its place, its batch of lines, what encoding met, and
/// its buffer to reuse.
struct Done {
    index: usize,
    piece: PieceBuffer,
    batch: Batch,
    tally: Tally,
}

/// The encode stage's helper thread (started with the first page to
/// share, so a tenant that never has one runs no helper), and the buffers
/// pieces are copied into.
pub(super) struct Helper {
    /// The helper's encoder until the thread is started.
    encoder: Option<Encoder>,
    work: Option<Sender<Job>>,
    /// The same queue the helper takes from: this thread takes pieces too.
    take: Receiver<Job>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    spare: Vec<PieceBuffer>,
}

impl Helper {
    /// A helper that will encode with `encoder`; not started yet.
    pub(super) fn new(encoder: Encoder) -> Self {
        let (work, take) = crossbeam_channel::bounded::<Job>(SCAN_PIECES_AHEAD);
        let (_, done) = crossbeam_channel::bounded::<Done>(0);
        Self {
            encoder: Some(encoder),
            work: Some(work),
            take,
            done,
            thread: None,
            spare: Vec::new(),
        }
    }

    /// Starts the thread, once, with a parser and encoder of its own. If
    /// it cannot be started, the encoding thread takes every piece.
    fn start(&mut self) {
        let Some(encoder) = self.encoder.take() else {
            return;
        };
        let (done_in, done) = crossbeam_channel::bounded::<Done>(SCAN_PIECES_AHEAD);
        let jobs = self.take.clone();
        let name = format!("{}+", std::thread::current().name().unwrap_or("encode"));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut parser = Parser::new();
                let mut encoder = encoder;
                for mut job in jobs {
                    let tally = job
                        .piece
                        .encode(&mut parser, &mut encoder, &mut job.batch.bytes);
                    job.batch.lines = Some(tally.delivered as u64);
                    let done = Done {
                        index: job.index,
                        piece: job.piece,
                        batch: job.batch,
                        tally,
                    };
                    if done_in.send(done).is_err() {
                        return;
                    }
                }
            })
            .ok();
        self.done = done;
        self.thread = thread;
    }

    /// Copies the records at `ranges` of `bytes` (from `start` to `end`)
    /// into a spare piece buffer.
    fn copy_piece(
        &mut self,
        bytes: &[u8],
        ranges: &[Range<usize>],
        start: usize,
        end: usize,
    ) -> PieceBuffer {
        let mut piece = self.spare.pop().unwrap_or_default();
        piece.bytes.clear();
        piece.bytes.extend_from_slice(&bytes[start..end]);
        piece.bytes.resize(end - start + PIECE_PADDING, b' ');
        piece.ranges.clear();
        piece
            .ranges
            .extend(ranges.iter().map(|r| r.start - start..r.end - start));
        piece
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has no piece.
        self.work = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Encodes a scan page's records on this thread and the helper thread and
/// sends the batches to the writer in record order; returns the last batch
/// unsent, for the page's ticket.
///
/// The pieces (of [`SCAN_CHUNK_RECORDS`] records) go into one queue that
/// both threads take from, so neither waits while there is work: with six
/// busy threads on two cores, one of the two is often descheduled, and a
/// strict turn-taking left this thread waiting for the helper 40% of a
/// backfill while the other core had nothing to run. Finished pieces are
/// put back in order in a window of [`SCAN_PIECES_AHEAD`] pieces, which
/// bounds the batches held.
pub(super) fn encode_shared(
    parser: &mut Parser,
    encoder: &mut Encoder,
    helper: &mut Helper,
    sink: &mut SinkHandle,
    bytes: &[u8],
    ranges: &[Range<usize>],
    tally: &mut Tally,
) -> Result<Batch, PageFailure> {
    helper.start();
    let count = ranges.len().div_ceil(SCAN_CHUNK_RECORDS);
    let chunk = |index: usize| {
        let from = index * SCAN_CHUNK_RECORDS;
        &ranges[from..(from + SCAN_CHUNK_RECORDS).min(ranges.len())]
    };
    let Some(work) = helper.work.clone() else {
        return Err(PageFailure::Fatal(RunError::Panicked("helper")));
    };
    // Finished pieces not yet sent; piece `i` waits in slot
    // `i % SCAN_PIECES_AHEAD`.
    let mut window: [Option<(Batch, Tally)>; SCAN_PIECES_AHEAD] = std::array::from_fn(|_| None);
    let (mut handed, mut sent) = (0, 0);
    let mut last: Option<Batch> = None;
    loop {
        while let Ok(done) = helper.done.try_recv() {
            finish(helper, done, &mut window);
        }
        while let Some((batch, counts)) = window[sent % SCAN_PIECES_AHEAD].take() {
            tally.add(counts);
            if let Some(previous) = last.replace(batch) {
                sink.send(previous).map_err(|_| writer_stopped(sink))?;
            }
            sent += 1;
        }
        if sent == count {
            break;
        }
        // Never more than SCAN_PIECES_AHEAD pieces are handed out and not
        // yet sent, so the queue's send cannot block.
        while handed < count && handed < sent + SCAN_PIECES_AHEAD {
            let records = chunk(handed);
            let start = records[0].start;
            // A piece runs to where the next one starts.
            let end = if handed + 1 < count {
                chunk(handed + 1)[0].start
            } else {
                records[records.len() - 1].end
            };
            let piece = helper.copy_piece(bytes, records, start, end);
            let job = Job {
                index: handed,
                piece,
                batch: sink.batch(),
            };
            if work.send(job).is_err() {
                return Err(PageFailure::Fatal(RunError::Panicked("helper")));
            }
            handed += 1;
        }
        if let Ok(mut job) = helper.take.try_recv() {
            let counts = job.piece.encode(parser, encoder, &mut job.batch.bytes);
            job.batch.lines = Some(counts.delivered as u64);
            let done = Done {
                index: job.index,
                piece: job.piece,
                batch: job.batch,
                tally: counts,
            };
            finish(helper, done, &mut window);
        } else {
            // Every piece handed out is the helper's: wait for one.
            match helper.done.recv() {
                Ok(done) => finish(helper, done, &mut window),
                Err(_) => return Err(PageFailure::Fatal(RunError::Panicked("helper"))),
            }
        }
    }
    Ok(last.take().unwrap_or_else(|| sink.batch()))
}
