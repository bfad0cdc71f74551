//! Replay on more than one core: an NDJSON input is cut into pieces of
//! whole lines, which this thread and its helpers parse and encode, and the
//! lines (and the problems found) go out in input order, the same bytes as
//! one thread writes. This thread only reads and cuts: the cut is one
//! search for the last line break in each piece.
//!
//! A pretty-printed document is one parse and stays on one thread.

use std::io::{self, Read, Write};

use super::{Output, ReplaySummary};
use crate::cef::Encoder;
use crate::parse::{InputStats, Item, Parser, Problem};
use crate::pipeline::helper::{HelperLost, Helpers, Piece};
use crate::sink::Batch;

/// Input bytes per piece (at least; a piece ends at a line break): about
/// 200 activities, whose lines fill most of a batch.
pub const PIECE_BYTES: usize = 256 * 1024;

/// Bytes asked of the input at once: as much as replay's read buffer holds,
/// so that `BufReader` hands the read straight to the file instead of
/// copying through its buffer.
const READ_BYTES: usize = super::READ_BUFFER_BYTES;
/// Bytes a piece's buffer keeps past its lines: simd-json's padding, so
/// that the last line too is parsed where it lies.
const PIECE_PADDING: usize = simd_json::INPUT_PADDING;

/// A piece of an NDJSON input: whole lines, read straight into the
/// buffer (`bytes[..filled]`), which keeps its length between pieces so
/// that it is zeroed only when it grows.
#[derive(Default)]
pub(in crate::pipeline) struct LinePiece {
    bytes: Vec<u8>,
    filled: usize,
}

impl LinePiece {
    /// Makes room for `more` bytes past what is filled, and the padding.
    fn reserve(&mut self, more: usize) {
        let needed = self.filled + more + PIECE_PADDING;
        if self.bytes.len() < needed {
            self.bytes.resize(needed, b' ');
        }
    }

    /// Starts the piece over with `carried`, the start of a line the last
    /// piece cut.
    fn start_with(&mut self, carried: &[u8]) {
        self.filled = 0;
        self.reserve(carried.len());
        self.bytes[..carried.len()].copy_from_slice(carried);
        self.filled = carried.len();
    }
}

/// What reading a piece met: its lines (to number the next piece's), its
/// counts, and its problems, numbered from the piece's first line.
pub(in crate::pipeline) struct LineOutcome {
    lines: usize,
    stats: InputStats,
    problems: Vec<Problem>,
}

impl Piece for LinePiece {
    type Outcome = LineOutcome;

    fn encode(
        &mut self,
        parser: &mut Parser,
        encoder: &mut Encoder,
        out: &mut Vec<u8>,
    ) -> (u64, LineOutcome) {
        let mut stats = InputStats::default();
        // Allocates only when the piece has a problem.
        let mut problems = Vec::new();
        let filled = self.filled;
        let lines = parser.parse_lines(&mut self.bytes, filled, 1, &mut stats, |item| match item {
            Item::Record(record) => {
                encoder.encode(record, out);
                out.push(b'\n');
            }
            Item::Problem(problem) => problems.push(problem),
        });
        let outcome = LineOutcome {
            lines,
            stats,
            problems,
        };
        (stats.records, outcome)
    }
}

impl From<HelperLost> for io::Error {
    fn from(_: HelperLost) -> Self {
        io::Error::other("a replay helper thread stopped")
    }
}

/// Where finished pieces go, in order: their lines to the output, their
/// problems to the diagnostics, their counts to the summary.
pub(super) struct Passing<'r, 'a> {
    pub(super) out: &'r mut Output<'a>,
    pub(super) diagnostics: &'r mut dyn Write,
    pub(super) summary: &'r mut ReplaySummary,
    /// The first output error; once set, lines are no longer written.
    pub(super) output_error: &'r mut Option<io::Error>,
    /// The input's name in messages.
    pub(super) name: &'r str,
    /// Lines of the input before the next piece to pass on.
    pub(super) lines_before: usize,
}

impl Passing<'_, '_> {
    fn pass(&mut self, batch: Batch, outcome: LineOutcome) -> Result<(), HelperLost> {
        for mut problem in outcome.problems {
            problem.location.line += self.lines_before;
            let _ = writeln!(self.diagnostics, "siem-agent: {}: {problem}", self.name);
        }
        self.lines_before += outcome.lines;
        self.summary.records += outcome.stats.records;
        self.summary.problems += outcome.stats.problems;
        if self.output_error.is_none() {
            if let Err(error) = self.out.pass(batch) {
                *self.output_error = Some(error);
            }
        } else {
            self.out.keep(batch);
        }
        Ok(())
    }
}

/// Reads an NDJSON `source` to its end in pieces of [`PIECE_BYTES`] (or
/// `piece_bytes`, for tests), shared with `helpers`. Stops reading at the
/// first output error; every piece handed out is passed on before it
/// returns, so the next input starts clean.
pub(super) fn read_shared<R: Read>(
    mut source: R,
    helpers: &mut Helpers<LinePiece>,
    parser: &mut Parser,
    encoder: &mut Encoder,
    passing: &mut Passing<'_, '_>,
    piece_bytes: usize,
) -> io::Result<()> {
    let mut piece = helpers.piece();
    piece.start_with(&[]);
    let read = loop {
        if passing.output_error.is_some() {
            break Ok(());
        }
        // Whole read buffers; tests' small pieces take a few pages a read.
        let want = if piece_bytes < READ_BYTES {
            piece_bytes
                .saturating_sub(piece.filled)
                .clamp(4096, READ_BYTES)
        } else {
            READ_BYTES
        };
        piece.reserve(want);
        let end = piece.filled + want;
        match source.read(&mut piece.bytes[piece.filled..end]) {
            Ok(0) => break Ok(()),
            Ok(read) => piece.filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break Err(error),
        }
        if piece.filled < piece_bytes {
            continue;
        }
        let Some(cut) = memchr::memrchr(b'\n', &piece.bytes[..piece.filled]) else {
            continue;
        };
        let mut next = helpers.piece();
        next.start_with(&piece.bytes[cut + 1..piece.filled]);
        piece.filled = cut + 1;
        let full = std::mem::replace(&mut piece, next);
        if let Err(lost) = hand_out(helpers, parser, encoder, passing, full) {
            passing.output_error.get_or_insert(lost.into());
            break Ok(());
        }
    };
    if read.is_err() {
        // The lines before the failure are read; a line it cut is not.
        piece.filled =
            memchr::memrchr(b'\n', &piece.bytes[..piece.filled]).map_or(0, |cut| cut + 1);
    }
    let last = if piece.filled == 0 || passing.output_error.is_some() {
        Ok(())
    } else {
        hand_out(helpers, parser, encoder, passing, piece)
    };
    let drained = helpers.drain(parser, encoder, |batch, outcome| {
        passing.pass(batch, outcome)
    });
    if let Err(lost) = last.and(drained) {
        passing.output_error.get_or_insert(lost.into());
    }
    read
}

/// Hands out one piece, once there is room (passing on finished pieces,
/// or encoding one here, meanwhile).
fn hand_out(
    helpers: &mut Helpers<LinePiece>,
    parser: &mut Parser,
    encoder: &mut Encoder,
    passing: &mut Passing<'_, '_>,
    piece: LinePiece,
) -> Result<(), HelperLost> {
    while !helpers.has_room() {
        helpers.step(parser, encoder, |batch, outcome| {
            passing.pass(batch, outcome)
        })?;
    }
    let batch = passing.out.batch();
    helpers.hand_out(piece, batch)
}
