//! Replay on more than one core: an NDJSON input is cut into pieces of
//! whole lines, which this thread and its helpers parse and encode, and the
//! lines (and the problems found) go out in input order, the same bytes as
//! one thread writes. This thread only reads and cuts: the cut is one
//! search for the last line break in each piece.
//!
//! A pretty-printed document is one parse and stays on one thread.

use std::io::{self, BufRead, Write};

use super::{Output, ReplaySummary};
use crate::cef::Encoder;
use crate::parse::{InputStats, Item, Parser, Problem};
use crate::pipeline::helper::{HelperLost, Helpers, Piece};
use crate::sink::Batch;

/// Input bytes per piece (at least; a piece ends at a line break): about
/// 200 activities, whose lines fill most of a batch.
pub const PIECE_BYTES: usize = 256 * 1024;

/// A piece of an NDJSON input: whole lines.
#[derive(Default)]
pub(in crate::pipeline) struct LinePiece {
    bytes: Vec<u8>,
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
        let lines = parser.parse_lines(&mut self.bytes, 1, &mut stats, |item| match item {
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
pub(super) fn read_shared<R: BufRead>(
    mut source: R,
    helpers: &mut Helpers<LinePiece>,
    parser: &mut Parser,
    encoder: &mut Encoder,
    passing: &mut Passing<'_, '_>,
    piece_bytes: usize,
) -> io::Result<()> {
    let mut piece = helpers.piece();
    piece.bytes.clear();
    let read = loop {
        if passing.output_error.is_some() {
            break Ok(());
        }
        let available = match source.fill_buf() {
            Ok([]) => break Ok(()),
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break Err(error),
        };
        // Up to the piece's size; past it only while no line has ended.
        let take = match piece_bytes.checked_sub(piece.bytes.len()) {
            Some(room) if room > 0 => room.min(available.len()),
            _ => available.len(),
        };
        piece.bytes.extend_from_slice(&available[..take]);
        source.consume(take);
        if piece.bytes.len() < piece_bytes {
            continue;
        }
        let Some(cut) = memchr::memrchr(b'\n', &piece.bytes) else {
            continue;
        };
        let mut next = helpers.piece();
        next.bytes.clear();
        next.bytes.extend_from_slice(&piece.bytes[cut + 1..]);
        piece.bytes.truncate(cut + 1);
        let full = std::mem::replace(&mut piece, next);
        if let Err(lost) = hand_out(helpers, parser, encoder, passing, full) {
            passing.output_error.get_or_insert(lost.into());
            break Ok(());
        }
    };
    if read.is_err() {
        // The lines before the failure are read; a line it cut is not.
        let whole = memchr::memrchr(b'\n', &piece.bytes).map_or(0, |cut| cut + 1);
        piece.bytes.truncate(whole);
    }
    let last = if piece.bytes.is_empty() || passing.output_error.is_some() {
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
