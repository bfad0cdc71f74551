//! The agent's main loop: pull a page, encode the records the cursor says
//! are new, deliver them, and only then move the durable checkpoint.
//!
//! Delivery runs on its own writer thread (see [`crate::sink`]); this is
//! the one module that spawns threads and makes channels. Each page's lines
//! go to the writer in batches, the last of which carries the page's
//! ticket; when the writer hands that batch back, every line of the page is
//! confirmed and the page's checkpoint is saved. A crash before that
//! repeats the unconfirmed pages on restart and loses nothing. When the
//! receiver is down the writer stops taking batches, the channel fills, and
//! this loop blocks: fetching pauses until delivery resumes.
//!
//! Data types take turns: a type with more pages waiting goes again at once
//! (the shared request budget paces everything), a type that has caught up
//! waits for the poll interval.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use simd_json::OwnedValue;

use crate::cef::Encoder;
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::parse::Parser;
use crate::simulator::data::StreamKind;
use crate::sink::{
    Batch, Destination, Feed, SinkError, SinkHealth, SyslogWriter, WriterStopped, BATCH_BYTES,
};
use crate::source::budget::RequestBudget;
use crate::source::client::{ApiClient, ClientConfig, FetchError};
use crate::source::cursor::Cursor;
use simd_json::prelude::*;

/// Batches waiting in the channel to the writer.
pub const SINK_CHANNEL_BATCHES: usize = 8;

/// The running writer thread and both ends the producer uses.
pub struct SinkHandle {
    feed: Option<Feed>,
    returned: Receiver<Batch>,
    thread: Option<JoinHandle<Result<(), SinkError>>>,
    /// The writer's state and counters.
    pub health: Arc<SinkHealth>,
    /// Empty batches to reuse.
    spare: Vec<Batch>,
}

/// Starts the writer thread for `destination`.
pub fn spawn_sink(destination: Destination) -> Result<SinkHandle, SinkError> {
    let (batches_in, batches_out) = crossbeam_channel::bounded(SINK_CHANNEL_BATCHES);
    let (returned_in, returned) = crossbeam_channel::unbounded();
    let health = Arc::new(SinkHealth::default());
    let thread_health = Arc::clone(&health);
    let (waker, thread) = match destination {
        Destination::Stdout => {
            let thread = std::thread::Builder::new()
                .name("writer-stdout".into())
                .spawn(move || {
                    crate::sink::write_stdout(
                        batches_out,
                        returned_in,
                        &mut io::stdout().lock(),
                        &thread_health,
                    )
                })
                .map_err(SinkError::Spawn)?;
            (None, thread)
        }
        Destination::Syslog(plan) => {
            let writer = SyslogWriter::new(plan, thread_health)?;
            let waker = writer.waker();
            let thread = std::thread::Builder::new()
                .name("writer-syslog".into())
                .spawn(move || writer.run(batches_out, returned_in))
                .map_err(SinkError::Spawn)?;
            (Some(waker), thread)
        }
    };
    Ok(SinkHandle {
        feed: Some(Feed::new(batches_in, waker)),
        returned,
        thread: Some(thread),
        health,
        spare: Vec::new(),
    })
}

impl SinkHandle {
    /// An empty batch: a returned one when there is one.
    pub fn batch(&mut self) -> Batch {
        let mut batch = self.spare.pop().unwrap_or_default();
        batch.bytes.clear();
        batch.ticket = 0;
        batch
    }

    /// Keeps a returned batch's buffer for reuse (a few are enough).
    pub fn recycle(&mut self, batch: Batch) {
        if self.spare.len() < SINK_CHANNEL_BATCHES {
            self.spare.push(batch);
        }
    }

    /// Sends a batch, blocking while the writer is behind. On failure the
    /// writer has stopped: [`finish`](Self::finish) says why.
    pub fn send(&mut self, batch: Batch) -> Result<(), WriterStopped> {
        match &self.feed {
            Some(feed) => feed.send(batch).map_err(|_| WriterStopped),
            None => Err(WriterStopped),
        }
    }

    /// Batches the writer has confirmed.
    pub fn returned(&self) -> &Receiver<Batch> {
        &self.returned
    }

    /// Closes the channel and waits until the writer has confirmed
    /// everything (forever, if the receiver never comes back), returning
    /// the batches confirmed meanwhile.
    pub fn finish(&mut self) -> Result<Vec<Batch>, SinkError> {
        drop(self.feed.take());
        let result = match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(SinkError::Panicked)),
            None => Ok(()),
        };
        let returned = self.returned.try_iter().collect();
        result.map(|()| returned)
    }
}

/// Page size (bytes of JSON) above which the parser's and the batch's
/// buffers are released after use instead of kept: a backfill page of 5,000
/// records needs about 30 MiB while it is processed, a tail page a fraction
/// of that, and a long-running tail should not keep the backfill's peak.
pub const RETAIN_PAGE_BYTES: usize = 2 << 20;
/// Capacity the batch buffer starts with and returns to.
pub const BATCH_CAPACITY: usize = 1 << 20;

/// Exit status: the API rejected the credentials at start-up (`EX_NOPERM`).
pub const EXIT_INVALID_TOKEN: u8 = 77;
/// Exit status: too many consecutive critical failures (`EX_TEMPFAIL`, so a
/// service manager restarts the agent).
pub const EXIT_TOO_MANY_ERRORS: u8 = 75;
/// Exit status: the checkpoint could not be read or written (`EX_CANTCREAT`).
pub const EXIT_CHECKPOINT: u8 = 73;
/// Exit status: the HTTP client could not be set up, e.g. an unusable CA
/// file (`EX_CONFIG`).
pub const EXIT_CLIENT_SETUP: u8 = 78;
/// Exit status: the output failed (`EX_IOERR`).
pub const EXIT_OUTPUT: u8 = 74;

/// A validated `run`.
#[derive(Debug)]
pub struct RunPlan {
    /// Name used for checkpoint files.
    pub tenant: String,
    /// How to reach the API.
    pub client: ClientConfig,
    /// Requests per minute for the tenant (0: unlimited).
    pub requests_per_minute: u32,
    /// Data types to pull, in turn order.
    pub kinds: Vec<StreamKind>,
    /// Extra API filters per data type.
    pub filters: HashMap<StreamKind, OwnedValue>,
    /// Where checkpoints live.
    pub state_dir: std::path::PathBuf,
    /// How far back a first start (or a return from a long stop) reaches.
    pub backfill: Duration,
    /// Wait between polls once a data type has caught up.
    pub poll_interval: Duration,
    /// Consecutive critical failures tolerated.
    pub max_critical_errors: u32,
    /// Stop once every data type has caught up.
    pub once: bool,
    /// The CEF encoder.
    pub encoder: Encoder,
    /// Where the lines go.
    pub destination: Destination,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The credentials were rejected before anything was fetched.
    #[error("{0}")]
    InvalidToken(FetchError),
    /// The HTTP client could not be built from the configuration.
    #[error("cannot set up the API client: {0}")]
    ClientSetup(FetchError),
    /// Consecutive critical failures reached the configured limit.
    #[error("Too many critical errors: {count} consecutive failures; the last: {last}")]
    TooManyCriticalErrors {
        /// How many.
        count: u32,
        /// The last one.
        last: String,
    },
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The output failed.
    #[error(transparent)]
    Output(SinkError),
}

impl RunError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::InvalidToken(_) => EXIT_INVALID_TOKEN,
            RunError::ClientSetup(_) => EXIT_CLIENT_SETUP,
            RunError::TooManyCriticalErrors { .. } => EXIT_TOO_MANY_ERRORS,
            RunError::Checkpoint(_) => EXIT_CHECKPOINT,
            RunError::Output(_) => EXIT_OUTPUT,
        }
    }
}

/// What a finished run did (only `--once` runs finish without an error).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Records delivered.
    pub records: u64,
    /// Pages fetched.
    pub pages: u64,
}

/// One data type's state in the loop.
struct Stream {
    kind: StreamKind,
    cursor: Cursor,
    due: Instant,
    caught_up: bool,
}

fn kind_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Activities => "activities",
        StreamKind::Alerts => "alerts",
    }
}

fn iso(ms: i64) -> String {
    let mut text = Vec::new();
    crate::syslog::write_iso_time(&mut text, ms.clamp(0, crate::syslog::MAX_TIMESTAMP_MS));
    String::from_utf8_lossy(&text).into_owned()
}

/// Checkpoints waiting for their page's lines to be confirmed, oldest
/// first, each with the ticket of the page's last batch.
struct Awaiting<'a> {
    store: &'a CheckpointStore,
    tenant: &'a str,
    pages: VecDeque<(u64, Cursor)>,
}

impl Awaiting<'_> {
    /// A batch came back confirmed: save every checkpoint it completes.
    fn settle(&mut self, ticket: u64) -> Result<(), RunError> {
        if ticket == 0 {
            return Ok(());
        }
        while self.pages.front().is_some_and(|(t, _)| *t <= ticket) {
            if let Some((_, cursor)) = self.pages.pop_front() {
                self.store.save(self.tenant, &cursor)?;
            }
        }
        Ok(())
    }

    /// Takes every batch the writer has returned so far, without waiting.
    fn collect(&mut self, sink: &mut SinkHandle) -> Result<(), RunError> {
        while let Ok(batch) = sink.returned().try_recv() {
            self.settle(batch.ticket)?;
            sink.recycle(batch);
        }
        Ok(())
    }

    /// Collects returned batches until `until`. A writer that stopped is an
    /// output error.
    fn wait(&mut self, sink: &mut SinkHandle, until: Instant) -> Result<(), RunError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match sink.returned().recv_timeout(left) {
                Ok(batch) => {
                    self.settle(batch.ticket)?;
                    sink.recycle(batch);
                }
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return Err(writer_stopped(sink)),
            }
        }
    }

    /// Closes the channel, waits for every line to be confirmed, and saves
    /// the remaining checkpoints.
    fn finish(&mut self, sink: &mut SinkHandle) -> Result<(), RunError> {
        for batch in sink.finish().map_err(RunError::Output)? {
            self.settle(batch.ticket)?;
        }
        Ok(())
    }
}

/// Logs what delivery cost beyond the lines themselves, if anything.
fn report_delivery(sink: &SinkHandle, log: &mut dyn Write) {
    let counters = &sink.health.counters;
    let resent = counters.resent.load(std::sync::atomic::Ordering::Relaxed);
    let truncated = counters
        .truncated
        .load(std::sync::atomic::Ordering::Relaxed);
    let dropped = counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    if resent + truncated + dropped > 0 {
        let _ = writeln!(
            log,
            "siem-agent: syslog: {resent} line(s) sent again after a connection failed \
             (possible duplicates), {truncated} cut to the maximum message size, \
             {dropped} UDP datagram(s) refused"
        );
    }
}

/// The error of a writer thread that stopped early.
fn writer_stopped(sink: &mut SinkHandle) -> RunError {
    match sink.finish() {
        Err(error) => RunError::Output(error),
        Ok(_) => RunError::Output(SinkError::Poll(io::Error::other("the writer stopped"))),
    }
}

/// Sends one page's lines in batches of about [`BATCH_BYTES`], cut at line
/// ends; the last batch carries `ticket`.
fn send_page(
    sink: &mut SinkHandle,
    awaiting: &mut Awaiting<'_>,
    lines: &[u8],
    ticket: u64,
) -> Result<(), RunError> {
    let mut rest = lines;
    loop {
        awaiting.collect(sink)?;
        let cut = if rest.len() <= BATCH_BYTES {
            rest.len()
        } else {
            rest[..BATCH_BYTES]
                .iter()
                .rposition(|&b| b == b'\n')
                .or_else(|| rest.iter().position(|&b| b == b'\n'))
                .map_or(rest.len(), |at| at + 1)
        };
        let mut batch = sink.batch();
        batch.bytes.extend_from_slice(&rest[..cut]);
        rest = &rest[cut..];
        let last = rest.is_empty();
        if last {
            batch.ticket = ticket;
        }
        if sink.send(batch).is_err() {
            return Err(writer_stopped(sink));
        }
        if last {
            return Ok(());
        }
    }
}

/// Runs the agent: forever, or with `once` until every data type has
/// caught up and everything fetched is confirmed. Log lines go to `log`.
pub fn run(mut plan: RunPlan, log: &mut dyn Write) -> Result<RunSummary, RunError> {
    let store = CheckpointStore::open(&plan.state_dir)?;
    let now = crate::syslog::now_ms();
    let backfill_ms = i64::try_from(plan.backfill.as_millis()).unwrap_or(i64::MAX / 4);
    let mut streams = Vec::new();
    for &kind in &plan.kinds {
        let cursor = match store.load(&plan.tenant, kind)? {
            Some(saved) => {
                let (cursor, skipped) = Cursor::resume(saved, now, backfill_ms);
                if let Some(gap) = skipped {
                    let _ = writeln!(
                        log,
                        "siem-agent: {}: the checkpoint is older than the backfill window; \
                         records from {} to {} are skipped (raise --backfill to fetch them)",
                        kind_name(kind),
                        iso(gap.from),
                        iso(gap.to)
                    );
                }
                cursor
            }
            None => Cursor::start(kind, now, backfill_ms),
        };
        streams.push(Stream {
            kind,
            cursor,
            due: Instant::now(),
            caught_up: false,
        });
    }
    let budget = Arc::new(RequestBudget::new(plan.requests_per_minute));
    let mut client = ApiClient::new(plan.client.clone(), budget).map_err(RunError::ClientSetup)?;
    let mut sink = spawn_sink(plan.destination.clone()).map_err(RunError::Output)?;
    let mut awaiting = Awaiting {
        store: &store,
        tenant: &plan.tenant,
        pages: VecDeque::new(),
    };
    let mut parser = Parser::new();
    let mut batch = Vec::with_capacity(BATCH_CAPACITY);
    let mut summary = RunSummary::default();
    let mut consecutive_failures = 0u32;
    let mut fetched_any = false;
    let mut next_ticket = 1u64;
    loop {
        awaiting.collect(&mut sink)?;
        if plan.once && streams.iter().all(|s| s.caught_up) {
            awaiting.finish(&mut sink)?;
            report_delivery(&sink, log);
            return Ok(summary);
        }
        let Some(stream) = streams.iter_mut().min_by_key(|s| s.due) else {
            awaiting.finish(&mut sink)?;
            return Ok(summary);
        };
        if stream.due > Instant::now() {
            awaiting.wait(&mut sink, stream.due)?;
        }
        stream.cursor.begin_window(crate::syslog::now_ms());
        let body = stream.cursor.request_body(plan.filters.get(&stream.kind));
        let cursor = &stream.cursor;
        let encoder = &mut plan.encoder;
        // One parse per page: the paging facts are read and the records
        // encoded from the same tape. A page that fails validation is
        // retried, and whatever it left in `batch` is discarded.
        let mut page_bytes = 0;
        let fetched = client.fetch(stream.kind, &body, |bytes| {
            batch.clear();
            page_bytes = bytes.len();
            parser
                .inspect(bytes, |root| {
                    let info = cursor.page_info(root).map_err(|e| e.to_string())?;
                    let (deliver, next) = cursor.advance(&info).map_err(|e| e.to_string())?;
                    encode_records(root, &deliver, encoder, &mut batch);
                    Ok((info, deliver.len(), next))
                })
                .map_err(|e| e.to_string())?
        });
        match fetched {
            Ok((info, delivered, next)) => {
                fetched_any = true;
                consecutive_failures = 0;
                let ticket = next_ticket;
                next_ticket += 1;
                awaiting.pages.push_back((ticket, next.clone()));
                send_page(&mut sink, &mut awaiting, &batch, ticket)?;
                if page_bytes > RETAIN_PAGE_BYTES {
                    parser = Parser::new();
                    batch = Vec::with_capacity(BATCH_CAPACITY);
                }
                summary.records += delivered as u64;
                summary.pages += 1;
                stream.caught_up = !info.has_next && !next.scanning();
                let was_backfilling = stream.cursor.backfilling();
                stream.cursor = next;
                if was_backfilling && !stream.cursor.backfilling() {
                    let _ = writeln!(
                        log,
                        "siem-agent: {}: backfill complete",
                        kind_name(stream.kind)
                    );
                }
                stream.due = if stream.caught_up {
                    Instant::now() + plan.poll_interval
                } else {
                    Instant::now()
                };
            }
            Err(error) => {
                if !fetched_any && matches!(error, FetchError::InvalidToken { .. }) {
                    return Err(RunError::InvalidToken(error));
                }
                consecutive_failures += 1;
                let _ = writeln!(log, "siem-agent: {}: {error}", kind_name(stream.kind));
                if consecutive_failures >= plan.max_critical_errors.max(1) {
                    return Err(RunError::TooManyCriticalErrors {
                        count: consecutive_failures,
                        last: error.to_string(),
                    });
                }
                stream.due = Instant::now() + plan.poll_interval;
            }
        }
    }
}

/// Encodes the records of a parsed page at `deliver` (ascending indices
/// into its `data` array) into `batch`.
fn encode_records(
    page: simd_json::tape::Value<'_, '_>,
    deliver: &[usize],
    encoder: &mut Encoder,
    batch: &mut Vec<u8>,
) {
    let Some(data) = page.get("data").and_then(|d| d.as_array()) else {
        return;
    };
    let mut wanted = deliver.iter().copied().peekable();
    for (index, record) in data.iter().enumerate() {
        if wanted.peek() != Some(&index) {
            continue;
        }
        wanted.next();
        // `page_info` has checked every record is an object.
        if let Some(record) = record.as_object() {
            encoder.encode(&record, batch);
            batch.push(b'\n');
        }
    }
}
