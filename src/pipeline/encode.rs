//! The encode thread: parses each record of a page once (simd-json, in
//! place), moves the cursor, encodes the new records into recycled batches
//! for the writer, and passes a page's cursor to the checkpoint thread once
//! the writer has confirmed the page's last batch.
//!
//! [`EncodeStage`] is the per-page work with no thread of its own, so
//! tests and benchmarks drive the real path with a page and a sink; the
//! thread adds the page channel, the verdicts, the buffer
//! recycling and the checkpoints.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use simd_json::tape::Object;
use tracing::warn;

use super::checkpointer::CheckpointSaver;
use super::fetch::{Page, PageBuffers, PageOrigin, Verdict};
use super::helper::{encode_shared, Helpers, RecordPiece, SCAN_CHUNK_RECORDS};
use super::writer::{SinkHandle, MIN_BUFFER_BYTES};
use super::RunError;
use crate::cef::{Encoder, Mapping};
use crate::data_type::DataType;
use crate::parse::Parser;
use crate::shutdown::StopSignal;
use crate::sink::{Batch, SinkError};
use crate::source::cas::cursor::Cursor;
use crate::source::graph::record::GraphSource;
use crate::source::graph::window::Window;
use crate::source::Position;
use crate::status::TenantStatus;

/// Pages larger than this (backfill pages: 5,000 records are about 6 MB)
/// keep their buffers' capacity for the next page; after a smaller (tail)
/// page, buffers shrink to twice what it used, so a long-running tail does
/// not keep the backfill's peak.
pub const RETAIN_PAGE_BYTES: usize = 1 << 20;

/// Records larger than this are skipped as malformed (counted and
/// reported): the API's are a few kilobytes.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Helper threads sharing a tenant's scan pages: one, so that parsing and
/// encoding take two cores, beside the fetch and writer threads.
const SCAN_HELPERS: usize = 1;

/// A page whose checkpoint waits for its last batch to be confirmed.
struct AwaitedPage {
    ticket: u64,
    position: Position,
    records: usize,
}

/// Why encoding a page stopped.
#[derive(Debug)]
pub enum PageFailure {
    /// The page is not usable; the fetcher retries it.
    Rejected(String),
    /// The run cannot go on.
    Fatal(RunError),
    /// Shutting down without waiting for the receiver (see
    /// [`crate::sink::SinkHealth::abandon`]): stop quietly; what is unconfirmed is sent
    /// again at the next start.
    Abandoned,
}

/// Encoding pages into batches for one writer: the parsers and encoders of
/// both encoding threads, the writer's handle, and the pages whose batches
/// the writer has not confirmed yet.
pub struct EncodeStage {
    status: Arc<TenantStatus>,
    sink: SinkHandle,
    encoder: Encoder,
    parser: Parser,
    /// The helper thread that shares scan pages.
    helper: Helpers<RecordPiece>,
    /// Oldest first.
    awaiting: VecDeque<AwaitedPage>,
    next_ticket: u64,
    /// Id buffers for the cursor's page walk.
    scratch: Vec<String>,
    /// The dedupe key of the Graph record being read, or the stand-in id
    /// of a legacy record without `_id`.
    graph_key: String,
}

impl EncodeStage {
    /// A stage encoding with `encoder` into `sink`, counting into
    /// `status`.
    pub fn new(encoder: Encoder, sink: SinkHandle, status: Arc<TenantStatus>) -> Self {
        let helper = Helpers::new(
            encoder.clone(),
            SCAN_HELPERS,
            &format!("encode-{}", status.tenant),
        );
        Self {
            status,
            sink,
            helper,
            encoder,
            parser: Parser::new(),
            awaiting: VecDeque::new(),
            next_ticket: 1,
            scratch: Vec::new(),
            graph_key: String::new(),
        }
    }

    /// The writer's handle.
    pub fn sink(&self) -> &SinkHandle {
        &self.sink
    }

    /// Parses and encodes a page's records one by one into batches for the
    /// writer (a page is never parsed whole: see [`crate::parse::page`]),
    /// and answers the fetcher about a page that is not a scan page once
    /// its records have moved the cursor.
    pub fn encode_page(
        &mut self,
        page: &mut Page,
        verdicts: &Sender<Verdict>,
    ) -> Result<(), PageFailure> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (kind, mut batch, tally) = match &page.origin {
            PageOrigin::Cas(_) => self.encode_cas_page(page, ticket, verdicts)?,
            PageOrigin::Graph(_) => self.encode_graph_page(page, ticket, verdicts)?,
        };
        let Tally {
            bad, first_problem, ..
        } = tally;
        if let Some(problem) = first_problem {
            self.status
                .counters(kind)
                .dropped
                .fetch_add(bad, Ordering::Relaxed);
            warn!(
                "{}: {}: {bad} malformed record(s) in a page skipped (counted as dropped); the first: {problem}",
                self.status.tenant,
                kind.name()
            );
        }
        batch.ticket = ticket;
        if self.sink.send(batch).is_err() {
            return Err(writer_stopped(&mut self.sink));
        }
        Ok(())
    }

    /// A legacy API page: scan pages are shared with the helper thread;
    /// other pages move the cursor record by record, and the fetcher gets
    /// its verdict.
    fn encode_cas_page(
        &mut self,
        page: &mut Page,
        ticket: u64,
        verdicts: &Sender<Verdict>,
    ) -> Result<(DataType, Batch, Tally), PageFailure> {
        let Self {
            parser,
            encoder,
            sink,
            awaiting,
            scratch,
            helper,
            graph_key,
            ..
        } = self;
        let Page {
            buffers: PageBuffers { bytes, split },
            origin: PageOrigin::Cas(cursor),
            facts,
        } = page
        else {
            return Err(PageFailure::Rejected("not a legacy API page".to_owned()));
        };
        let (has_next, next_upper) = (facts.has_next, facts.next_upper);
        let records = split.records.len();
        let scanning = facts.next.is_some();
        if let Some(next) = facts.next.take() {
            awaiting.push_back(AwaitedPage {
                ticket,
                position: Position::Cas(next),
                records,
            });
        }
        let mut advance = cursor.begin_page(scratch);
        let mut tally = Tally::default();
        let batch = if scanning && records > SCAN_CHUNK_RECORDS {
            // Every record of a scan page is new: no cursor walk, and the
            // records can be shared with the helper thread.
            encode_shared(
                parser,
                encoder,
                helper,
                sink,
                bytes,
                &split.records,
                &mut tally,
            )?
        } else {
            let mut batch = sink.batch();
            encode_records(
                parser,
                encoder,
                bytes,
                0,
                &split.records,
                &mut batch.bytes,
                &mut tally,
                |record| {
                    let (id, key) = cursor.record_facts(record);
                    if id.is_empty() {
                        Cursor::fingerprint(record, graph_key);
                        advance.record(graph_key, key)
                    } else {
                        advance.record(id, key)
                    }
                },
            );
            batch.lines = Some(tally.delivered as u64);
            batch
        };
        if !scanning {
            let next = advance
                .finish(has_next, next_upper)
                .map_err(|e| PageFailure::Rejected(e.to_string()))?;
            let delivered = tally.delivered;
            awaiting.push_back(AwaitedPage {
                ticket,
                position: Position::Cas(next.clone()),
                records: delivered,
            });
            let _ = verdicts.send(Verdict::Accepted {
                has_next,
                next: Position::Cas(next),
                delivered,
            });
        }
        Ok((cursor.kind, batch, tally))
    }

    /// A Graph answer: each record in the window that the cursor has not
    /// delivered before is encoded and remembered; with the window's last
    /// page, the cursor closes over the window. The fetcher gets the
    /// cursor after the page as its verdict.
    fn encode_graph_page(
        &mut self,
        page: &mut Page,
        ticket: u64,
        verdicts: &Sender<Verdict>,
    ) -> Result<(DataType, Batch, Tally), PageFailure> {
        let Self {
            parser,
            encoder,
            sink,
            awaiting,
            status,
            graph_key,
            ..
        } = self;
        let Page {
            buffers: PageBuffers { bytes, split },
            origin: PageOrigin::Graph(answer),
            ..
        } = page
        else {
            return Err(PageFailure::Rejected("not a Graph answer".to_owned()));
        };
        let source = answer.position.source;
        let window = answer.window;
        let until = answer.until;
        let asked_before = answer.position.cursor.position;
        let mut next = answer.position.clone();
        let cursor = Arc::make_mut(&mut next.cursor);
        let mut tally = Tally::default();
        let mut unplaced = 0u64;
        let mut first_unplaced = None;
        let mut late = 0u64;
        let mut batch = sink.batch();
        let mapping = encoder.mapping();
        encoder.set_mapping(match source {
            GraphSource::Alerts(_) => Mapping::GraphAlerts,
            GraphSource::Events => Mapping::CloudAppEvents,
        });
        encode_records(
            parser,
            encoder,
            bytes,
            0,
            &split.records,
            &mut batch.bytes,
            &mut tally,
            |record| match source.record_facts(record, graph_key) {
                // Outside the window (asked for with its own window), or
                // past a cut answer's complete part (asked for again).
                Ok(time) if !window.contains(time) || time >= until => false,
                Ok(time) if cursor.is_new(time, graph_key) => {
                    cursor.remember(time, graph_key);
                    if time < asked_before {
                        late += 1;
                    }
                    true
                }
                Ok(_) => false,
                Err(error) => {
                    unplaced += 1;
                    first_unplaced.get_or_insert(error);
                    false
                }
            },
        );
        encoder.set_mapping(mapping);
        batch.lines = Some(tally.delivered as u64);
        if let Some(error) = first_unplaced {
            tally.bad += unplaced;
            tally.first_problem.get_or_insert_with(|| error.to_string());
        }
        if answer.last {
            let answered = Window {
                from: window.from,
                to: until.min(window.to),
            };
            cursor.close(answered, answer.late_ms);
        }
        let kind = source.kind();
        status
            .counters(kind)
            .late
            .fetch_add(late, Ordering::Relaxed);
        let delivered = tally.delivered;
        awaiting.push_back(AwaitedPage {
            ticket,
            position: Position::Graph(next.clone()),
            records: delivered,
        });
        let _ = verdicts.send(Verdict::Accepted {
            has_next: !answer.last,
            next: Position::Graph(next),
            delivered,
        });
        Ok((kind, batch, tally))
    }

    /// Takes every batch the writer has returned so far, without waiting,
    /// and passes each page they complete to `confirmed` (its cursor and
    /// record count), oldest first.
    pub fn collect<E>(
        &mut self,
        mut confirmed: impl FnMut(Position, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let Self { sink, awaiting, .. } = self;
        sink.settle_taken_back(|ticket| settle(awaiting, ticket, &mut confirmed))?;
        while let Ok(batch) = self.sink.returned().try_recv() {
            settle(&mut self.awaiting, batch.ticket, &mut confirmed)?;
            self.sink.recycle(batch);
        }
        Ok(())
    }

    /// Closes the channel to the writer, waits until it has confirmed
    /// everything (or was abandoned), and passes the pages completed
    /// meanwhile to `confirmed`.
    fn finish(
        &mut self,
        mut confirmed: impl FnMut(Position, usize) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let Self { sink, awaiting, .. } = self;
        sink.settle_taken_back(|ticket| settle(awaiting, ticket, &mut confirmed))?;
        for batch in self.sink.finish().map_err(RunError::Output)? {
            settle(&mut self.awaiting, batch.ticket, &mut confirmed)?;
        }
        Ok(())
    }

    /// Logs what delivery cost beyond the lines themselves, if anything.
    fn report_delivery(&self) {
        let counters = &self.sink.health.counters;
        let resent = counters.resent.load(Ordering::Relaxed);
        let truncated = counters.truncated.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        if resent + truncated + dropped > 0 {
            warn!(
                "{}: syslog: {resent} line(s) sent again after a connection failed \
                 (possible duplicates), {truncated} cut to the maximum message size, \
                 {dropped} UDP datagram(s) refused",
                self.status.tenant
            );
        }
    }
}

/// A batch came back confirmed: every page up to its ticket is complete.
/// A ticket settles every page up to it, so the order in which confirmed
/// tickets are settled does not matter.
fn settle<E>(
    awaiting: &mut VecDeque<AwaitedPage>,
    ticket: u64,
    confirmed: &mut impl FnMut(Position, usize) -> Result<(), E>,
) -> Result<(), E> {
    if ticket == 0 {
        return Ok(());
    }
    while awaiting.front().is_some_and(|p| p.ticket <= ticket) {
        if let Some(page) = awaiting.pop_front() {
            confirmed(page.position, page.records)?;
        }
    }
    Ok(())
}

/// The encode thread's state: the stage, and what connects it to the
/// checkpoint thread and the fetcher.
pub(super) struct EncodeLoop {
    pub(super) stage: EncodeStage,
    /// Saves the checkpoints of confirmed pages off this thread.
    pub(super) checkpoints: CheckpointSaver,
    pub(super) pages_queued: Arc<AtomicUsize>,
    /// The tenant's stop signal: once raised, the loop takes no new page
    /// and finishes, without waiting for the fetcher (which may be stuck
    /// in a slow answer for as long as the request timeout).
    pub(super) stop: StopSignal,
}

/// How often an idle encode thread settles confirmations and looks at the
/// stop signal.
const IDLE_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

impl EncodeLoop {
    /// Encodes pages until the fetcher closes `pages`, then waits for the
    /// writer to confirm everything and for the last checkpoints to be
    /// saved. Whatever ends the run, the pages confirmed so far are saved.
    pub(super) fn run(
        &mut self,
        pages: Receiver<Page>,
        verdicts: Sender<Verdict>,
        spare: Sender<PageBuffers>,
    ) -> Result<(), RunError> {
        let encoded = self.encode_pages(pages, verdicts, spare);
        let saved = self.checkpoints.finish();
        encoded.and(saved)
    }

    /// [`Self::run`] without the wait for the checkpoint thread.
    fn encode_pages(
        &mut self,
        pages: Receiver<Page>,
        verdicts: Sender<Verdict>,
        spare: Sender<PageBuffers>,
    ) -> Result<(), RunError> {
        loop {
            let mut page = match pages.recv_timeout(IDLE_LOOK) {
                Ok(page) => page,
                Err(RecvTimeoutError::Timeout) => {
                    if self.stop.is_stopped() {
                        break;
                    }
                    // Confirmations settle (and checkpoints are saved)
                    // while no page comes, not only with the next one.
                    self.collect()?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.pages_queued.fetch_sub(1, Ordering::Relaxed);
            self.collect()?;
            match self.stage.encode_page(&mut page, &verdicts) {
                Ok(()) => {}
                Err(PageFailure::Rejected(why)) => {
                    // The fetcher is waiting for this answer.
                    let _ = verdicts.send(Verdict::Rejected(why));
                }
                Err(PageFailure::Fatal(error)) => return Err(error),
                Err(PageFailure::Abandoned) => {
                    // The writer has ended: settle what it confirmed.
                    let checkpoints = &mut self.checkpoints;
                    return self
                        .stage
                        .finish(|cursor, records| checkpoints.save(cursor, records));
                }
            }
            // Backfill pages keep their large buffers for the next ones; a
            // small (tail) page gives back what a backfill left behind, so
            // a hundred idle tenants do not each hold a backfill's buffers.
            let buffers = &mut page.buffers;
            if buffers.bytes.len() <= RETAIN_PAGE_BYTES {
                let keep = (buffers.bytes.len() * 2).max(MIN_BUFFER_BYTES);
                buffers.bytes.shrink_to(keep);
                buffers.split.rest.shrink_to(MIN_BUFFER_BYTES);
                let records = buffers.split.records.len();
                buffers.split.records.shrink_to(records * 2);
                // And once the backfill is over, the helper thread ends and
                // the batches it needed go.
                if self.stage.helper.rest_if_idle(std::time::Instant::now()) {
                    self.stage.sink.shed_spares();
                }
            }
            // A full spare channel means the fetcher has enough.
            let _ = spare.try_send(page.buffers);
        }
        let checkpoints = &mut self.checkpoints;
        self.stage
            .finish(|cursor, records| checkpoints.save(cursor, records))?;
        self.stage.report_delivery();
        Ok(())
    }

    /// Settles what the writer confirmed so far, and fails if the
    /// checkpoint thread has.
    fn collect(&mut self) -> Result<(), RunError> {
        self.checkpoints.check()?;
        let checkpoints = &mut self.checkpoints;
        self.stage
            .collect(|cursor, records| checkpoints.save(cursor, records))
    }
}

/// The error of a writer thread that stopped early.
pub(super) fn writer_stopped(sink: &mut SinkHandle) -> PageFailure {
    if sink.health.abandoned() {
        return PageFailure::Abandoned;
    }
    match sink.finish() {
        Err(error) => PageFailure::Fatal(RunError::Output(error)),
        Ok(_) => PageFailure::Fatal(RunError::Output(SinkError::Poll(io::Error::other(
            "the writer stopped",
        )))),
    }
}

/// What encoding a run of records met.
#[derive(Default)]
pub(super) struct Tally {
    /// Records encoded.
    pub(super) delivered: usize,
    /// Records that did not parse or were not objects.
    pub(super) bad: u64,
    /// The first of those problems.
    pub(super) first_problem: Option<String>,
}

impl Tally {
    pub(super) fn add(&mut self, other: Tally) {
        self.delivered += other.delivered;
        self.bad += other.bad;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// Parses the records at `ranges` (offsets `base` bytes before the start
/// of `bytes`) where they lie and encodes each one `keep` accepts into
/// `out`, one line each.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_records(
    parser: &mut Parser,
    encoder: &mut Encoder,
    bytes: &mut [u8],
    base: usize,
    ranges: &[Range<usize>],
    out: &mut Vec<u8>,
    tally: &mut Tally,
    mut keep: impl FnMut(&Object<'_, '_>) -> bool,
) {
    for range in ranges {
        let range = range.start - base..range.end - base;
        if range.len() > MAX_RECORD_BYTES {
            // Parsing it would cost its size again in simd-json's buffers,
            // and its line as much once more; no real record comes close.
            tally.bad += 1;
            tally.first_problem.get_or_insert_with(|| {
                format!(
                    "a record of {} bytes, over the {} MiB limit",
                    range.len(),
                    MAX_RECORD_BYTES >> 20
                )
            });
            continue;
        }
        let parsed = parser.inspect_at(bytes, range, |root| {
            let record = root.as_object()?;
            if keep(&record) {
                encoder.encode(&record, out);
                out.push(b'\n');
                tally.delivered += 1;
            }
            Some(())
        });
        let problem = match parsed {
            Ok(Some(())) => None,
            Ok(None) => Some("not a JSON object".to_owned()),
            Err(error) => Some(error.to_string()),
        };
        if let Some(problem) = problem {
            tally.bad += 1;
            tally.first_problem.get_or_insert(problem);
        }
    }
}
