//! The helper thread that shares a scan page's records with the encode
//! thread. Parsing and encoding were three quarters of the agent's CPU in
//! a backfill, all on one thread: sharing a scan page spreads them over two
//! cores, while the lines still go out in record order.

use std::ops::Range;

use super::encode::{encode_records, writer_stopped, PageFailure, Tally};
use super::writer::SinkHandle;
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

/// One piece of a scan page: its bytes, the page offset they start at, and
/// its records' ranges (page offsets).
struct Piece<'a, 'r> {
    bytes: &'a mut [u8],
    base: usize,
    ranges: &'r [Range<usize>],
}

impl Piece<'_, '_> {
    /// Appends the piece's lines to `out`.
    fn encode(self, parser: &mut Parser, encoder: &mut Encoder, out: &mut Vec<u8>) -> Tally {
        let mut tally = Tally::default();
        encode_records(
            parser,
            encoder,
            self.bytes,
            self.base,
            self.ranges,
            out,
            &mut tally,
            |_| true,
        );
        tally
    }
}

/// Cuts `bytes` into disjoint pieces of [`SCAN_CHUNK_RECORDS`] records.
/// A piece runs to where the next one starts, so the bytes after each
/// record but the piece's last serve as parsing padding.
fn pieces<'a, 'r>(mut bytes: &'a mut [u8], ranges: &'r [Range<usize>]) -> Vec<Piece<'a, 'r>> {
    let mut pieces = Vec::with_capacity(ranges.len().div_ceil(SCAN_CHUNK_RECORDS));
    let mut base = 0;
    let mut chunks = ranges.chunks(SCAN_CHUNK_RECORDS).peekable();
    while let Some(chunk) = chunks.next() {
        let end = chunks
            .peek()
            .map_or(base + bytes.len(), |next| next[0].start);
        let (piece, rest) = bytes.split_at_mut(end - base);
        pieces.push(Piece {
            bytes: piece,
            base,
            ranges: chunk,
        });
        bytes = rest;
        base = end;
    }
    pieces
}

/// Encodes a scan page's records on this thread and a helper thread and
/// sends the batches to the writer in record order; returns the last batch
/// unsent, for the page's ticket. Parsing and encoding were three quarters
/// of the agent's CPU in a backfill, all on one thread: this spreads them
/// over two cores.
///
/// The pieces (of [`SCAN_CHUNK_RECORDS`] records) go into one queue that
/// both threads take from, so neither waits while there is work: with six
/// busy threads on two cores, one of the two is often descheduled, and a
/// strict turn-taking left this thread waiting for the helper 40% of a
/// backfill while the other core had nothing to run. Finished pieces are
/// put back in order in a window of [`SCAN_PIECES_AHEAD`] pieces, which
/// bounds the batches held. If the helper cannot be started, this thread
/// encodes every piece.
pub(super) fn encode_shared(
    parsers: [&mut Parser; 2],
    encoders: [&mut Encoder; 2],
    sink: &mut SinkHandle,
    bytes: &mut [u8],
    ranges: &[Range<usize>],
    tally: &mut Tally,
) -> Result<Batch, PageFailure> {
    let [parser, helper_parser] = parsers;
    let [encoder, helper_encoder] = encoders;
    let mut pieces = pieces(bytes, ranges).into_iter().enumerate();
    let count = pieces.len();
    std::thread::scope(|scope| {
        // Never more than SCAN_PIECES_AHEAD pieces are handed out and not
        // yet sent, so neither channel's send can block.
        let (work_in, work) =
            crossbeam_channel::bounded::<(usize, Piece<'_, '_>, Batch)>(SCAN_PIECES_AHEAD);
        let (done_in, done) =
            crossbeam_channel::bounded::<(usize, Batch, Tally)>(SCAN_PIECES_AHEAD);
        let helper_work = work.clone();
        // If the thread cannot be started, the closure (and its end of both
        // channels) is dropped and this thread takes every piece.
        let _ = std::thread::Builder::new()
            .name(format!(
                "{}+",
                std::thread::current().name().unwrap_or("encode")
            ))
            .spawn_scoped(scope, move || {
                for (index, piece, mut batch) in helper_work {
                    let tally = piece.encode(helper_parser, helper_encoder, &mut batch.bytes);
                    batch.lines = Some(tally.delivered as u64);
                    if done_in.send((index, batch, tally)).is_err() {
                        return;
                    }
                }
            });
        // Finished pieces not yet sent; piece `i` waits in slot
        // `i % SCAN_PIECES_AHEAD`.
        let mut window: [Option<(Batch, Tally)>; SCAN_PIECES_AHEAD] = std::array::from_fn(|_| None);
        let (mut handed, mut sent) = (0, 0);
        let mut last: Option<Batch> = None;
        loop {
            while let Ok((index, batch, counts)) = done.try_recv() {
                window[index % SCAN_PIECES_AHEAD] = Some((batch, counts));
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
            while handed < sent + SCAN_PIECES_AHEAD {
                let Some((index, piece)) = pieces.next() else {
                    break;
                };
                // Cannot fail: this thread holds a receiver.
                let _ = work_in.send((index, piece, sink.batch()));
                handed += 1;
            }
            if let Ok((index, piece, mut batch)) = work.try_recv() {
                let counts = piece.encode(parser, encoder, &mut batch.bytes);
                batch.lines = Some(counts.delivered as u64);
                window[index % SCAN_PIECES_AHEAD] = Some((batch, counts));
            } else {
                // Every piece handed out is the helper's: wait for one. The
                // helper answers every piece short of a panic, which the
                // scope propagates when it ends.
                match done.recv() {
                    Ok((index, batch, counts)) => {
                        window[index % SCAN_PIECES_AHEAD] = Some((batch, counts));
                    }
                    Err(_) => break,
                }
            }
        }
        drop(work_in);
        Ok(last.take().unwrap_or_else(|| sink.batch()))
    })
}
