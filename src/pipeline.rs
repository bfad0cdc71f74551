//! The agent's threads and channels: the one module that spawns threads and
//! makes channels, so the data flow is all here.
//!
//! Each tenant runs four threads:
//!
//! ```text
//!  fetch ──pages (1)──▶ parse+encode ──batches (8)──▶ writer ──▶ receiver
//!    ▲  ◀──verdict───────┘  ▲  │  │                     │
//!    └───spare page buffers─┘  │  └◀──confirmed batches─┘
//!                              └──confirmed pages (64)──▶ checkpoint
//! ```
//!
//! * fetch: schedules the data types, waits for the request budget, reads
//!   each response into a recycled buffer, splits it into records and reads
//!   its paging facts ([`crate::parse::page`]), and hands it over. The next
//!   request depends on the page: after a scan page (a backfill's 5,000
//!   records, all new) the fetcher knows the next cursor itself and goes on
//!   as soon as the encoder takes the page, so fetching, splitting and
//!   encoding overlap; after any other page (at most 100 records) it waits
//!   for the encoder's verdict, which needs the records. A page that does
//!   not split or has no paging facts, or that the encoder rejects, is
//!   fetched again.
//! * parse+encode: parses each record once (simd-json), moves the cursor,
//!   encodes the new records straight into recycled batches of about
//!   [`BATCH_BYTES`], and when the writer hands back a page's last batch,
//!   confirmed, passes the page's cursor to the checkpoint thread.
//! * checkpoint: saves each confirmed page's cursor (two `fsync`s, off the
//!   encoding thread) and only then counts its records as sent.
//! * writer: see [`crate::sink`].
//!
//! Every channel is bounded, so a receiver that is down fills the batch
//! channel, the encoder blocks, the fetcher waits for its verdict, and no
//! more requests are made: memory stays bounded and nothing is lost. A
//! crash repeats only the unconfirmed pages.
//!
//! The service ([`serve`]) starts one such group per tenant, so one
//! tenant's dead receiver stalls only that tenant, and supervises them: it
//! logs state transitions, writes status files, reloads the configuration,
//! and shuts down cleanly (stop fetching, drain, confirm, checkpoint).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::RwLock;
use simd_json::prelude::*;
use simd_json::tape::Object;
use simd_json::OwnedValue;
use tracing::{error, info, warn};

use crate::cef::Encoder;
use crate::data_type::DataType;
use crate::parse::page::SplitPage;
use crate::parse::Parser;
use crate::shutdown::StopSignal;
use crate::sink::{
    Batch, Destination, Feed, SinkError, SinkHealth, SyslogWriter, WriterStopped, BATCH_BYTES,
};
use crate::source::budget::RequestBudget;
use crate::source::cas::client::{ApiClient, ClientConfig, FetchError};
use crate::source::cas::cursor::Cursor;
use crate::state::checkpoint::{CheckpointError, CheckpointStore};
use crate::status::{self, Direction, State, TenantStatus};

/// Batches waiting in the channel to the writer.
pub const SINK_CHANNEL_BATCHES: usize = 8;
/// Pages waiting in the channel to the encoder: none, so a fetched page
/// waits in the fetcher until the encoder takes it, and the next one is
/// read into the buffers the encoder gave back (two page buffers).
pub const PAGE_CHANNEL_PAGES: usize = 0;
/// Pages larger than this (backfill pages: 5,000 records are about 6 MB)
/// keep their buffers' capacity for the next page; after a smaller (tail)
/// page, buffers shrink to twice what it used, so a long-running tail does
/// not keep the backfill's peak.
pub const RETAIN_PAGE_BYTES: usize = 1 << 20;
/// Room a new batch has beyond [`BATCH_BYTES`] for the line that crosses
/// it, so that it does not grow.
pub const BATCH_SLACK_BYTES: usize = 16 << 10;
/// Records per piece when a scan page's records are shared between the
/// encoding thread and its helper: about one batch of lines (~800 bytes a
/// line), so each piece becomes one batch.
pub const SCAN_CHUNK_RECORDS: usize = 320;
/// Pieces of a scan page handed out to the two encoding threads and not
/// yet sent to the writer: bounds the batches a page holds back while one
/// thread is descheduled in the middle of a piece (about 1 MB).
pub const SCAN_PIECES_AHEAD: usize = 4;
/// Confirmed pages waiting for the checkpoint thread. When it falls behind
/// (a slow disk), it saves only the newest cursor of each data type it
/// finds queued, so it catches up in one save.
pub const CHECKPOINT_CHANNEL_PAGES: usize = 64;
/// Smallest capacity a shrunk buffer keeps.
pub const MIN_BUFFER_BYTES: usize = 16 << 10;
/// How often the service looks at its tenants, signals and config file.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// A status file is rewritten at least this often (its `updated` time
/// tells a reader the agent is alive).
pub const STATUS_REFRESH: Duration = Duration::from_secs(10);

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
/// Exit status: the output failed, or a thread could not start (`EX_IOERR`).
pub const EXIT_OUTPUT: u8 = 74;
/// Exit status: a bug (a thread panicked) (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: u8 = 70;

/// The running writer thread and both ends the producer uses.
pub struct SinkHandle {
    feed: Option<Feed>,
    returned: Receiver<Batch>,
    thread: Option<JoinHandle<Result<(), SinkError>>>,
    /// The writer's state and counters.
    pub health: Arc<SinkHealth>,
    /// Empty batches to reuse.
    spare: Vec<Batch>,
    /// Tickets of batches [`Self::batch`] took back from the writer, not
    /// yet settled by the producer.
    confirmed: Vec<u64>,
}

/// Starts the writer thread for `destination`; `label` names it in log
/// lines (the tenant).
pub fn spawn_sink(destination: Destination, label: &str) -> Result<SinkHandle, SinkError> {
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
            let writer = SyslogWriter::new(plan, thread_health, label)?;
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
        confirmed: Vec::new(),
    })
}

impl SinkHandle {
    /// An empty batch: a returned one when there is one. Without a spare,
    /// it takes back what the writer has confirmed meanwhile (their tickets
    /// wait for the producer to settle them); only then is a batch allocated,
    /// at full size. A backfill page fills about 16 batches, and allocating
    /// and growing new ones cost page faults and `mremap` TLB shootdowns
    /// (5% of the encode thread in `perf`).
    pub fn batch(&mut self) -> Batch {
        if self.spare.is_empty() {
            while let Ok(batch) = self.returned.try_recv() {
                if batch.ticket != 0 {
                    self.confirmed.push(batch.ticket);
                }
                self.recycle(batch);
            }
        }
        let mut batch = self.spare.pop().unwrap_or_else(|| Batch {
            bytes: Vec::with_capacity(BATCH_BYTES + BATCH_SLACK_BYTES),
            ticket: 0,
        });
        batch.bytes.clear();
        batch.ticket = 0;
        batch
    }

    /// Keeps a returned batch's buffer for reuse (a few are enough). A
    /// buffer much larger than what it carried (a tail after a backfill)
    /// shrinks first.
    pub fn recycle(&mut self, mut batch: Batch) {
        let used = batch.bytes.len();
        if used < MIN_BUFFER_BYTES {
            // Tailing: one more spare batch is plenty, and small; the
            // others were for a backfill.
            self.spare.truncate(1);
            for spare in &mut self.spare {
                spare.bytes.clear();
                spare.bytes.shrink_to(MIN_BUFFER_BYTES);
            }
        }
        if self.spare.len() < SINK_CHANNEL_BATCHES {
            if batch.bytes.capacity() > 4 * used.max(MIN_BUFFER_BYTES) {
                batch.bytes.shrink_to((2 * used).max(MIN_BUFFER_BYTES));
            }
            self.spare.push(batch);
        }
    }

    /// Sends a batch, blocking while the writer is behind. On failure the
    /// writer has stopped: [`finish`](Self::finish) says why.
    pub fn send(&mut self, batch: Batch) -> Result<(), WriterStopped> {
        let Some(feed) = &self.feed else {
            return Err(WriterStopped);
        };
        // Counted before the send: the writer may take it at once.
        let queued = &self.health.counters.queued;
        queued.fetch_add(1, Ordering::Relaxed);
        feed.send(batch).map_err(|_| {
            queued.fetch_sub(1, Ordering::Relaxed);
            WriterStopped
        })
    }

    /// Batches the writer has confirmed.
    pub fn returned(&self) -> &Receiver<Batch> {
        &self.returned
    }

    /// Closes the channel and waits until the writer has confirmed
    /// everything (forever, if the receiver never comes back, unless the
    /// writer is abandoned), returning the batches confirmed meanwhile.
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

/// One tenant, validated.
#[derive(Debug)]
pub struct RunPlan {
    /// Name used for checkpoint and status files, metrics and logs.
    pub tenant: String,
    /// Everything the plan was built from, to tell whether a reloaded
    /// configuration changed this tenant (no secrets in it).
    pub fingerprint: String,
    /// How to reach the API.
    pub client: ClientConfig,
    /// Requests per minute for the tenant (0: unlimited).
    pub requests_per_minute: u32,
    /// Data types to pull, in turn order.
    pub kinds: Vec<DataType>,
    /// Extra API filters per data type.
    pub filters: HashMap<DataType, OwnedValue>,
    /// How far back a first start (or a return from a long stop) reaches.
    pub backfill: Duration,
    /// Wait between polls once a data type has caught up.
    pub poll_interval: Duration,
    /// Consecutive critical failures tolerated.
    pub max_critical_errors: u32,
    /// The CEF encoder.
    pub encoder: Encoder,
    /// Where the lines go.
    pub destination: Destination,
}

/// The whole service, validated.
#[derive(Debug)]
pub struct ServicePlan {
    /// The tenants, names unique.
    pub tenants: Vec<RunPlan>,
    /// Where checkpoints and status files live.
    pub state_dir: PathBuf,
    /// Stop once every data type of every tenant has caught up.
    pub once: bool,
    /// How long a shutdown waits for the receivers to confirm what was
    /// sent before giving up (what is unconfirmed is sent again at the
    /// next start).
    pub shutdown_timeout: Duration,
    /// Where to serve metrics and `/healthz`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The credentials were rejected before anything was fetched.
    #[error("{tenant}: {source}")]
    InvalidToken {
        /// The tenant.
        tenant: String,
        /// The rejection.
        source: FetchError,
    },
    /// The HTTP client could not be built from the configuration.
    #[error("{tenant}: cannot set up the API client: {source}")]
    ClientSetup {
        /// The tenant.
        tenant: String,
        /// Why.
        source: FetchError,
    },
    /// Consecutive critical failures reached the configured limit.
    #[error("{tenant}: Too many critical errors: {count} consecutive failures; the last: {last}")]
    TooManyCriticalErrors {
        /// The tenant.
        tenant: String,
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
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(io::Error),
    /// A thread panicked (a bug: please report it).
    #[error("internal error: the {0} thread panicked")]
    Panicked(&'static str),
    /// The metrics address cannot be listened on.
    #[error("--metrics-listen {address}: {reason}")]
    Metrics {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
}

impl RunError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::InvalidToken { .. } => EXIT_INVALID_TOKEN,
            RunError::ClientSetup { .. } | RunError::Metrics { .. } => EXIT_CLIENT_SETUP,
            RunError::TooManyCriticalErrors { .. } => EXIT_TOO_MANY_ERRORS,
            RunError::Checkpoint(_) => EXIT_CHECKPOINT,
            RunError::Output(_) | RunError::Spawn(_) => EXIT_OUTPUT,
            RunError::Panicked(_) => EXIT_INTERNAL,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Records fetched as new and handed on for delivery.
    pub records: u64,
    /// Pages fetched.
    pub pages: u64,
}

impl std::ops::AddAssign for RunSummary {
    fn add_assign(&mut self, other: Self) {
        self.records += other.records;
        self.pages += other.pages;
    }
}

/// A fetched page on its way to the encoder.
struct Page {
    /// The response body and its split into records.
    buffers: PageBuffers,
    /// The cursor the page was requested with.
    cursor: Cursor,
    /// What the fetcher read of it. With a scan page's next cursor, which
    /// the fetcher already went on with, the encoder sends no verdict.
    facts: PageFacts,
}

/// A page's buffers, passed from the fetcher to the encoder and back so
/// their allocations are reused.
#[derive(Default)]
struct PageBuffers {
    /// The response body.
    bytes: Vec<u8>,
    /// Its records' ranges and the rest of it.
    split: SplitPage,
}

/// The encoder's answer about a page's paging facts.
enum Verdict {
    /// The page is valid; the cursor moves to `next`.
    Accepted {
        has_next: bool,
        next: Cursor,
        delivered: usize,
    },
    /// The page cannot be used (fetch it again).
    Rejected(String),
}

/// One data type's place in the fetch schedule.
struct Stream {
    kind: DataType,
    cursor: Cursor,
    due: Instant,
    caught_up: bool,
}

/// A running tenant: its threads and what they share.
struct TenantRun {
    name: String,
    fingerprint: String,
    status: Arc<TenantStatus>,
    stop: StopSignal,
    fetch: Option<JoinHandle<Result<RunSummary, RunError>>>,
    encode: Option<JoinHandle<Result<(), RunError>>>,
    /// Set by the encode thread as its last act, before it nudges the
    /// supervisor (`is_finished` turns true only a moment later).
    encode_ended: Arc<AtomicBool>,
    /// States last logged, per direction.
    logged: [State; 2],
    /// The last status file written, and when.
    written: Option<(status::StatusReport, Instant)>,
}

/// Loads the cursors, builds the client and starts the tenant's threads.
/// `supervisor` is nudged when the tenant's encode thread ends.
fn start_tenant(
    plan: RunPlan,
    store: &CheckpointStore,
    once: bool,
    supervisor: &StopSignal,
) -> Result<TenantRun, RunError> {
    let now = crate::clock::now_ms();
    let backfill_ms = i64::try_from(plan.backfill.as_millis()).unwrap_or(i64::MAX / 4);
    let tenant = plan.tenant.clone();
    let status = Arc::new(TenantStatus::new(&tenant, &plan.kinds));
    let mut streams = Vec::new();
    for &kind in &plan.kinds {
        let cursor = match store.load(&tenant, kind)? {
            Some(saved) => {
                let (cursor, skipped) = Cursor::resume(saved, now, backfill_ms);
                if let Some(gap) = skipped {
                    warn!(
                        "{tenant}: {}: the checkpoint is older than the backfill window; \
                         records from {} to {} are skipped (raise --backfill to fetch them)",
                        kind.name(),
                        crate::clock::iso_string(gap.from),
                        crate::clock::iso_string(gap.to)
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
    let stop = StopSignal::new();
    let budget = Arc::new(RequestBudget::new(plan.requests_per_minute));
    let client = ApiClient::new(plan.client.clone(), budget)
        .map_err(|source| RunError::ClientSetup {
            tenant: tenant.clone(),
            source,
        })?
        .with_stop(stop.clone());
    let _ = status.client.set(client.stats());
    let sink = spawn_sink(plan.destination.clone(), &tenant).map_err(RunError::Output)?;
    let _ = status.sink.set(Arc::clone(&sink.health));
    let (pages_in, pages_out) = crossbeam_channel::bounded::<Page>(PAGE_CHANNEL_PAGES);
    let (verdicts_in, verdicts_out) = crossbeam_channel::bounded::<Verdict>(1);
    let (spare_in, spare_out) = crossbeam_channel::bounded::<PageBuffers>(1);
    let pages_queued = Arc::new(AtomicUsize::new(0));
    {
        let mut depths = status.depths.lock();
        let pages = Arc::clone(&pages_queued);
        depths.push(("pages", Box::new(move || pages.load(Ordering::Relaxed))));
        let health = Arc::clone(&sink.health);
        depths.push((
            "batches",
            Box::new(move || health.counters.queued.load(Ordering::Relaxed)),
        ));
    }
    let encoder = Encoder::clone(&plan.encoder);
    let encode_ended = Arc::new(AtomicBool::new(false));
    let checkpoints = CheckpointSaver::spawn(store.clone(), Arc::clone(&status))?;
    let encode = {
        let pages_queued = Arc::clone(&pages_queued);
        let status = Arc::clone(&status);
        let stop = stop.clone();
        let ended = Arc::clone(&encode_ended);
        let supervisor = supervisor.clone();
        std::thread::Builder::new()
            .name(format!("encode-{tenant}"))
            .spawn(move || {
                let mut work = EncodeLoop {
                    checkpoints,
                    status,
                    sink,
                    parser: Parser::new(),
                    awaiting: VecDeque::new(),
                    next_ticket: 1,
                    pages_queued,
                    scratch: Vec::new(),
                    helper: Helper {
                        parser: Parser::new(),
                        encoder: encoder.clone(),
                    },
                    encoder,
                };
                let result = work.run(pages_out, verdicts_in, spare_in);
                if result.is_err() {
                    // The fetcher must not wait for verdicts that will not come.
                    stop.stop();
                }
                ended.store(true, Ordering::SeqCst);
                supervisor.nudge();
                result
            })
            .map_err(RunError::Spawn)?
    };
    let fetch = {
        let status = Arc::clone(&status);
        let work = FetchLoop {
            tenant: tenant.clone(),
            client,
            streams,
            filters: plan.filters,
            poll_interval: plan.poll_interval,
            max_critical_errors: plan.max_critical_errors,
            once,
            stop: stop.clone(),
            status,
            pages_queued: Arc::clone(&pages_queued),
            parser: Parser::new(),
            split: SplitPage::default(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("fetch-{tenant}"))
            .spawn(move || work.run(pages_in, verdicts_out, spare_out));
        match spawned {
            Ok(thread) => thread,
            Err(error) => {
                // The encoder's page channel closed with the closure: it
                // finishes on its own.
                let _ = encode.join();
                return Err(RunError::Spawn(error));
            }
        }
    };
    Ok(TenantRun {
        name: tenant,
        fingerprint: plan.fingerprint,
        status,
        stop,
        fetch: Some(fetch),
        encode: Some(encode),
        encode_ended,
        logged: [State::Created, State::Created],
        written: None,
    })
}

/// The fetch thread's state.
struct FetchLoop {
    tenant: String,
    client: ApiClient,
    streams: Vec<Stream>,
    filters: HashMap<DataType, OwnedValue>,
    poll_interval: Duration,
    max_critical_errors: u32,
    once: bool,
    stop: StopSignal,
    status: Arc<TenantStatus>,
    pages_queued: Arc<AtomicUsize>,
    /// Reads each page's paging facts.
    parser: Parser,
    /// Record ranges for the next page (given back by the encoder).
    split: SplitPage,
}

impl FetchLoop {
    /// Fetches until stopped (or, with `once`, until every data type has
    /// caught up). Closing `pages` on return tells the encoder to finish.
    fn run(
        mut self,
        pages: Sender<Page>,
        verdicts: Receiver<Verdict>,
        spare: Receiver<PageBuffers>,
    ) -> Result<RunSummary, RunError> {
        let mut summary = RunSummary::default();
        let mut consecutive_failures = 0u32;
        let mut fetched_any = false;
        let mut buffer = Vec::new();
        loop {
            if self.stop.is_stopped() || (self.once && self.streams.iter().all(|s| s.caught_up)) {
                return Ok(summary);
            }
            let Some(stream) = self.streams.iter_mut().min_by_key(|s| s.due) else {
                return Ok(summary);
            };
            if stream.due > Instant::now() {
                self.stop.sleep_until(stream.due);
                continue;
            }
            stream.cursor.begin_window(crate::clock::now_ms());
            let body = stream.cursor.request_body(self.filters.get(&stream.kind));
            let kind = stream.kind;
            let cursor = &stream.cursor;
            let parser = &mut self.parser;
            let spare_split = &mut self.split;
            let fetched = self.client.fetch(kind, &body, &mut buffer, |bytes| {
                let mut split = std::mem::take(spare_split);
                let facts = match read_page(parser, &mut split, bytes, cursor) {
                    Ok(facts) => facts,
                    Err(why) => {
                        *spare_split = split;
                        return Err(why);
                    }
                };
                let answer = facts
                    .next
                    .clone()
                    .map(|next| (facts.has_next, next, split.records.len()));
                let page = Page {
                    buffers: PageBuffers {
                        bytes: std::mem::take(bytes),
                        split,
                    },
                    cursor: cursor.clone(),
                    facts,
                };
                self.pages_queued.fetch_add(1, Ordering::Relaxed);
                if pages.send(page).is_err() {
                    return Err("the encoder has stopped".to_owned());
                }
                // The encoder gave back the previous page's buffers before
                // it took this page: the next page is read into them, so
                // two page buffers exist, not three (a scan page is ~6 MB).
                if let Ok(back) = spare.try_recv() {
                    *bytes = back.bytes;
                    *spare_split = back.split;
                }
                if let Some(answer) = answer {
                    return Ok(answer);
                }
                match verdicts.recv() {
                    Ok(Verdict::Accepted {
                        has_next,
                        next,
                        delivered,
                    }) => Ok((has_next, next, delivered)),
                    Ok(Verdict::Rejected(why)) => Err(why),
                    Err(_) => Err("the encoder has stopped".to_owned()),
                }
            });
            match fetched {
                Ok((has_next, next, delivered)) => {
                    fetched_any = true;
                    consecutive_failures = 0;
                    self.status
                        .update(Direction::Api, |l| l.succeeded(crate::clock::now_ms()));
                    self.status
                        .counters(kind)
                        .fetched
                        .fetch_add(delivered as u64, Ordering::Relaxed);
                    summary.records += delivered as u64;
                    summary.pages += 1;
                    stream.caught_up = !has_next && !next.scanning();
                    let was_backfilling = stream.cursor.backfilling();
                    stream.cursor = next;
                    if was_backfilling && !stream.cursor.backfilling() {
                        info!("{}: {}: backfill complete", self.tenant, kind.name());
                    }
                    stream.due = if stream.caught_up {
                        Instant::now() + self.poll_interval
                    } else {
                        Instant::now()
                    };
                }
                Err(FetchError::Stopped) => return Ok(summary),
                Err(error) => {
                    let text = error.to_string();
                    self.status.update(Direction::Api, |l| {
                        l.failed(crate::clock::now_ms(), &text);
                    });
                    if !fetched_any && matches!(error, FetchError::InvalidToken { .. }) {
                        return Err(RunError::InvalidToken {
                            tenant: self.tenant.clone(),
                            source: error,
                        });
                    }
                    consecutive_failures += 1;
                    warn!("{}: {}: {text}", self.tenant, kind.name());
                    if consecutive_failures >= self.max_critical_errors.max(1) {
                        return Err(RunError::TooManyCriticalErrors {
                            tenant: self.tenant.clone(),
                            count: consecutive_failures,
                            last: text,
                        });
                    }
                    stream.due = Instant::now() + self.poll_interval;
                }
            }
        }
    }
}

/// What the fetcher reads of a page before handing it over.
struct PageFacts {
    /// The page's `hasNext`.
    has_next: bool,
    /// The next scan bound, when there is a next page.
    next_upper: Option<i64>,
    /// For a scan page, the cursor after it.
    next: Option<Cursor>,
}

/// Splits a fetched page into records and reads its paging facts.
///
/// Every record of a scan page is new, so the cursor after it is known
/// before any record is parsed, and the next request can go out as soon as
/// the encoder takes this page. Other pages (at most 100 records) move the
/// cursor record by record, so the encoder answers after encoding them.
fn read_page(
    parser: &mut Parser,
    split: &mut SplitPage,
    bytes: &[u8],
    cursor: &Cursor,
) -> Result<PageFacts, String> {
    split.split(bytes).map_err(|e| e.to_string())?;
    let (has_next, next_upper) = parser
        .inspect(&mut split.rest, |root| cursor.page_facts(root))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let next = if cursor.scanning() {
        let mut no_ids = Vec::new();
        let after = cursor.begin_page(&mut no_ids);
        Some(
            after
                .finish(has_next, next_upper)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    Ok(PageFacts {
        has_next,
        next_upper,
        next,
    })
}

/// A page whose checkpoint waits for its last batch to be confirmed.
struct AwaitedPage {
    ticket: u64,
    cursor: Cursor,
    records: usize,
}

/// The parse+encode thread's state.
struct EncodeLoop {
    /// Saves the checkpoints of confirmed pages off this thread.
    checkpoints: CheckpointSaver,
    status: Arc<TenantStatus>,
    sink: SinkHandle,
    encoder: Encoder,
    parser: Parser,
    /// Oldest first.
    awaiting: VecDeque<AwaitedPage>,
    next_ticket: u64,
    pages_queued: Arc<AtomicUsize>,
    /// Id buffers for the cursor's page walk.
    scratch: Vec<String>,
    /// The second thread's parser and encoder for scan pages.
    helper: Helper,
}

/// What the thread that shares a scan page's records with the encoding
/// thread needs of its own.
struct Helper {
    parser: Parser,
    encoder: Encoder,
}

/// Why encoding a page stopped.
enum PageFailure {
    /// The page is not usable; the fetcher retries it.
    Rejected(String),
    /// The run cannot go on.
    Fatal(RunError),
    /// Shutting down without waiting for the receiver (see
    /// [`SinkHealth::abandon`]): stop quietly; what is unconfirmed is sent
    /// again at the next start.
    Abandoned,
}

impl EncodeLoop {
    /// Encodes pages until the fetcher closes `pages`, then waits for the
    /// writer to confirm everything and for the last checkpoints to be
    /// saved. Whatever ends the run, the pages confirmed so far are saved.
    fn run(
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
        for mut page in pages {
            self.pages_queued.fetch_sub(1, Ordering::Relaxed);
            self.collect()?;
            match self.encode_page(&mut page, &verdicts) {
                Ok(()) => {}
                Err(PageFailure::Rejected(why)) => {
                    // The fetcher is waiting for this answer.
                    let _ = verdicts.send(Verdict::Rejected(why));
                }
                Err(PageFailure::Fatal(error)) => return Err(error),
                Err(PageFailure::Abandoned) => {
                    // The writer has ended: settle what it confirmed.
                    self.settle_taken_back()?;
                    for batch in self.sink.finish().map_err(RunError::Output)? {
                        self.settle(batch.ticket)?;
                    }
                    return Ok(());
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
            }
            // A full spare channel means the fetcher has enough.
            let _ = spare.try_send(page.buffers);
        }
        self.settle_taken_back()?;
        for batch in self.sink.finish().map_err(RunError::Output)? {
            self.settle(batch.ticket)?;
        }
        self.report_delivery();
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

    /// Parses and encodes a page's records one by one into batches for the
    /// writer (a page is never parsed whole: see [`crate::parse::page`]),
    /// and answers the fetcher about a page that is not a scan page once
    /// its records have moved the cursor.
    fn encode_page(
        &mut self,
        page: &mut Page,
        verdicts: &Sender<Verdict>,
    ) -> Result<(), PageFailure> {
        let Self {
            parser,
            encoder,
            sink,
            awaiting,
            next_ticket,
            scratch,
            status,
            helper,
            ..
        } = self;
        let Page {
            buffers: PageBuffers { bytes, split },
            cursor,
            facts,
        } = page;
        let (has_next, next_upper) = (facts.has_next, facts.next_upper);
        let rejected = |why: String| PageFailure::Rejected(why);
        let ticket = *next_ticket;
        *next_ticket += 1;
        let records = split.records.len();
        let scanning = facts.next.is_some();
        if let Some(next) = facts.next.take() {
            awaiting.push_back(AwaitedPage {
                ticket,
                cursor: next,
                records,
            });
        }
        let mut advance = cursor.begin_page(scratch);
        let mut tally = Tally::default();
        let mut batch = if scanning && records > SCAN_CHUNK_RECORDS {
            // Every record of a scan page is new: no cursor walk, and the
            // records can be shared with the helper thread.
            encode_shared(
                [&mut *parser, &mut helper.parser],
                [&mut *encoder, &mut helper.encoder],
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
                    advance.record(id, key)
                },
            );
            batch
        };
        let Tally {
            delivered,
            bad,
            first_problem,
        } = tally;
        if !scanning {
            let next = advance
                .finish(has_next, next_upper)
                .map_err(|e| rejected(e.to_string()))?;
            awaiting.push_back(AwaitedPage {
                ticket,
                cursor: next.clone(),
                records: delivered,
            });
            let _ = verdicts.send(Verdict::Accepted {
                has_next,
                next,
                delivered,
            });
        }
        if let Some(problem) = first_problem {
            status
                .counters(cursor.kind)
                .dropped
                .fetch_add(bad, Ordering::Relaxed);
            warn!(
                "{}: {}: {bad} malformed record(s) in a page skipped (counted as dropped); the first: {problem}",
                status.tenant,
                cursor.kind.name()
            );
        }
        batch.ticket = ticket;
        if sink.send(batch).is_err() {
            return Err(writer_stopped(sink));
        }
        Ok(())
    }

    /// A batch came back confirmed: save every checkpoint it completes.
    fn settle(&mut self, ticket: u64) -> Result<(), RunError> {
        if ticket == 0 {
            return Ok(());
        }
        while self.awaiting.front().is_some_and(|p| p.ticket <= ticket) {
            if let Some(page) = self.awaiting.pop_front() {
                self.checkpoints.save(page.cursor, page.records)?;
            }
        }
        Ok(())
    }

    /// Settles the confirmed batches the sink took back while handing out
    /// batches. A ticket settles every page up to it, so the order in which
    /// confirmed tickets are settled does not matter.
    fn settle_taken_back(&mut self) -> Result<(), RunError> {
        let mut tickets = std::mem::take(&mut self.sink.confirmed);
        for &ticket in &tickets {
            self.settle(ticket)?;
        }
        tickets.clear();
        self.sink.confirmed = tickets;
        Ok(())
    }

    /// Takes every batch the writer has returned so far, without waiting,
    /// and fails if the checkpoint thread has.
    fn collect(&mut self) -> Result<(), RunError> {
        self.checkpoints.check()?;
        self.settle_taken_back()?;
        while let Ok(batch) = self.sink.returned().try_recv() {
            self.settle(batch.ticket)?;
            self.sink.recycle(batch);
        }
        Ok(())
    }
}

/// A confirmed page for the checkpoint thread.
struct Confirmed {
    cursor: Cursor,
    records: usize,
}

/// The encoding thread's end of the checkpoint thread: saving a
/// checkpoint takes two `fsync`s (about half a millisecond on this
/// project's test machine, far more on a busy or network disk), and the
/// encoding thread should not stop for them.
struct CheckpointSaver {
    confirmed: Option<Sender<Confirmed>>,
    thread: Option<JoinHandle<Result<(), RunError>>>,
}

impl CheckpointSaver {
    /// Starts the checkpoint thread of `status`'s tenant.
    fn spawn(store: CheckpointStore, status: Arc<TenantStatus>) -> Result<Self, RunError> {
        let (confirmed_in, confirmed_out) =
            crossbeam_channel::bounded::<Confirmed>(CHECKPOINT_CHANNEL_PAGES);
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint-{}", status.tenant))
            .spawn(move || save_checkpoints(&store, &status, &confirmed_out))
            .map_err(RunError::Spawn)?;
        Ok(Self {
            confirmed: Some(confirmed_in),
            thread: Some(thread),
        })
    }

    /// Queues a confirmed page's cursor (waits when the thread is
    /// [`CHECKPOINT_CHANNEL_PAGES`] behind). Fails with the thread's error
    /// if it stopped because a save failed.
    fn save(&mut self, cursor: Cursor, records: usize) -> Result<(), RunError> {
        let sent = match &self.confirmed {
            Some(confirmed) => confirmed.send(Confirmed { cursor, records }).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            self.finish()
        }
    }

    /// The thread's error, if a save failed since the last look: a run
    /// ends on it without waiting for the next page to be confirmed.
    fn check(&mut self) -> Result<(), RunError> {
        match &self.thread {
            Some(thread) if thread.is_finished() => self.finish(),
            _ => Ok(()),
        }
    }

    /// Waits until every queued checkpoint is saved and the thread has
    /// ended; its error, if a save failed.
    fn finish(&mut self) -> Result<(), RunError> {
        // Closing the channel ends the thread once it has saved the rest.
        self.confirmed = None;
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(RunError::Panicked("checkpoint")),
        }
    }
}

/// The checkpoint thread: saves each confirmed page's cursor and then
/// counts its records as sent. Pages that queued up while a save ran are
/// saved together: only the newest cursor of each data type is written,
/// since it covers the pages before it.
fn save_checkpoints(
    store: &CheckpointStore,
    status: &TenantStatus,
    confirmed: &Receiver<Confirmed>,
) -> Result<(), RunError> {
    let mut newest: Vec<Confirmed> = Vec::with_capacity(2);
    while let Ok(first) = confirmed.recv() {
        newest.push(first);
        for next in confirmed.try_iter() {
            match newest
                .iter_mut()
                .find(|c| c.cursor.kind == next.cursor.kind)
            {
                Some(older) => {
                    older.records += next.records;
                    older.cursor = next.cursor;
                }
                None => newest.push(next),
            }
        }
        for page in newest.drain(..) {
            store.save(&status.tenant, &page.cursor)?;
            let counters = status.counters(page.cursor.kind);
            counters
                .sent
                .fetch_add(page.records as u64, Ordering::Relaxed);
            counters
                .checkpoint_ms
                .store(page.cursor.delivered_until(), Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The error of a writer thread that stopped early.
fn writer_stopped(sink: &mut SinkHandle) -> PageFailure {
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
struct Tally {
    /// Records encoded.
    delivered: usize,
    /// Records that did not parse or were not objects.
    bad: u64,
    /// The first of those problems.
    first_problem: Option<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
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
fn encode_records(
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
fn encode_shared(
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

/// What the service is told from outside while it runs.
#[derive(Default)]
pub struct Control {
    /// Raised to shut down.
    pub stop: StopSignal,
    /// Set by a signal handler to shut down (SIGTERM, SIGINT): the
    /// supervisor raises `stop` when it sees it.
    pub terminate: Arc<AtomicBool>,
    /// Set to ask for a reload (SIGHUP); the service clears it.
    pub reload: Arc<AtomicBool>,
    /// Files whose change triggers a reload (the config file).
    pub watch: Vec<PathBuf>,
    /// Builds the plan again from the configuration.
    #[allow(clippy::type_complexity)]
    pub rebuild: Option<Box<dyn FnMut() -> Result<ServicePlan, String> + Send>>,
    /// Called at every supervision tick with the tenants' status (the demo
    /// draws its progress bar from it).
    #[allow(clippy::type_complexity)]
    pub on_tick: Option<Box<dyn FnMut(&[Arc<TenantStatus>]) + Send>>,
}

/// A file's identity and contents' age, to notice changes by polling.
fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// The service's supervisor state.
struct Supervisor {
    store: CheckpointStore,
    once: bool,
    shutdown_timeout: Duration,
    running: Vec<TenantRun>,
    /// Tenants being stopped for a reconfiguration, and the plan each
    /// restarts with (`None`: removed).
    stopping: Vec<(TenantRun, Option<RunPlan>)>,
    registry: Arc<RwLock<Vec<Arc<TenantStatus>>>>,
    summary: RunSummary,
    /// What the supervisor sleeps on between rounds: the service's stop
    /// signal, nudged by tenants whose threads end, so a one-shot run
    /// exits when its work is done rather than at the next round.
    wake: StopSignal,
}

/// Runs the service: every tenant of `plan` until `control.stop` is raised
/// (or, with `once`, until all have caught up and everything fetched is
/// confirmed).
pub fn serve(plan: ServicePlan, mut control: Control) -> Result<RunSummary, RunError> {
    let store = CheckpointStore::open(&plan.state_dir)?;
    let registry = Arc::new(RwLock::new(Vec::new()));
    let _metrics = match plan.metrics_listen {
        Some(address) => Some(spawn_metrics(address, Arc::clone(&registry))?),
        None => None,
    };
    let mut supervisor = Supervisor {
        store,
        once: plan.once,
        shutdown_timeout: plan.shutdown_timeout,
        running: Vec::new(),
        stopping: Vec::new(),
        registry,
        summary: RunSummary::default(),
        wake: control.stop.clone(),
    };
    for tenant in plan.tenants {
        match start_tenant(tenant, &supervisor.store, plan.once, &supervisor.wake) {
            Ok(run) => supervisor.running.push(run),
            Err(error) => {
                // The start-up error is the one to report.
                let _ = supervisor.shutdown(&mut control);
                return Err(error);
            }
        }
    }
    supervisor.publish();
    let mut stamps: Vec<_> = control.watch.iter().map(|p| file_stamp(p)).collect();
    let mut last_trim = Instant::now();
    let mut nudges = 0;
    loop {
        if control.terminate.load(Ordering::SeqCst) {
            control.stop.stop();
        }
        let stopped = control.stop.sleep_or_nudge(SUPERVISE_EVERY, &mut nudges);
        supervisor.report(&mut control, false);
        if stopped {
            info!("shutting down: no new requests; waiting for the receivers to confirm what was sent");
            return supervisor.shutdown(&mut control);
        }
        if let Err(error) = supervisor.reap() {
            error!("{error}");
            // The tenant's error is the one to report.
            let _ = supervisor.shutdown(&mut control);
            return Err(error);
        }
        if supervisor.once && supervisor.running.is_empty() && supervisor.stopping.is_empty() {
            return Ok(supervisor.summary);
        }
        if last_trim.elapsed() >= STATUS_REFRESH {
            crate::memory::release_free_memory();
            last_trim = Instant::now();
        }
        let changed: Vec<_> = control.watch.iter().map(|p| file_stamp(p)).collect();
        let hangup = control.reload.swap(false, Ordering::SeqCst);
        if hangup || changed != stamps {
            stamps = changed;
            let why = if hangup { "SIGHUP" } else { "the file changed" };
            if let Some(rebuild) = &mut control.rebuild {
                match rebuild() {
                    Ok(new_plan) => {
                        info!("configuration reloaded ({why})");
                        supervisor.reconfigure(new_plan);
                    }
                    Err(reason) => error!(
                        "configuration reload ({why}) failed; the running configuration stays: {reason}"
                    ),
                }
            }
        }
    }
}

impl Supervisor {
    /// Makes the running tenants visible to metrics.
    fn publish(&self) {
        let mut tenants: Vec<_> = self
            .running
            .iter()
            .chain(self.stopping.iter().map(|(run, _)| run))
            .map(|run| Arc::clone(&run.status))
            .collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        *self.registry.write() = tenants;
    }

    /// Logs state transitions, refreshes status files (all of them with
    /// `force`), calls `on_tick`.
    fn report(&mut self, control: &mut Control, force: bool) {
        let now = crate::clock::now_ms();
        for run in self
            .running
            .iter_mut()
            .chain(self.stopping.iter_mut().map(|(run, _)| run))
        {
            let report = run.status.report(now);
            for (direction, link) in [
                (Direction::Api, &report.api),
                (Direction::Syslog, &report.syslog),
            ] {
                let last = &mut run.logged[direction as usize];
                if *last != link.state {
                    let detail = match (&link.link.last_error, link.state) {
                        (Some(error), State::ConnectionError | State::Disconnected) => {
                            format!(" (last error: {error})")
                        }
                        _ => String::new(),
                    };
                    info!(
                        "{}: {}: {} -> {}{detail}",
                        run.name,
                        direction.as_str(),
                        last,
                        link.state
                    );
                    *last = link.state;
                }
            }
            // Rewritten at once when a link's state or error changes, and
            // every STATUS_REFRESH for the counters and success times.
            let stale = force
                || run.written.as_ref().is_none_or(|(old, at)| {
                    let moved = |a: &status::LinkReport, b: &status::LinkReport| {
                        a.state != b.state
                            || a.link.last_error != b.link.last_error
                            || a.link.failing_since_ms != b.link.failing_since_ms
                    };
                    at.elapsed() >= STATUS_REFRESH
                        || moved(&old.api, &report.api)
                        || moved(&old.syslog, &report.syslog)
                });
            if stale {
                if let Err(error) = status::write_report(self.store.dir(), &report) {
                    warn!("{}: cannot write the status file: {error}", run.name);
                }
                run.written = Some((report, Instant::now()));
            }
        }
        if let Some(on_tick) = &mut control.on_tick {
            on_tick(&self.registry.read());
        }
    }

    /// Writes the status file of a tenant whose threads have ended.
    fn write_final_status(&self, run: &TenantRun) {
        let report = run.status.report(crate::clock::now_ms());
        if let Err(error) = status::write_report(self.store.dir(), &report) {
            warn!("{}: cannot write the status file: {error}", run.name);
        }
    }

    /// Joins tenants whose threads have ended; starts the replacement of a
    /// reconfigured tenant once its old threads are done.
    fn reap(&mut self) -> Result<(), RunError> {
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].finished() {
                let mut run = self.running.swap_remove(index);
                self.write_final_status(&run);
                let summary = run.join()?;
                self.summary += summary;
                if !self.once {
                    info!("{}: stopped", run.name);
                }
                self.publish();
            } else {
                index += 1;
            }
        }
        let mut index = 0;
        while index < self.stopping.len() {
            if self.stopping[index].0.finished() {
                let (mut run, next) = self.stopping.swap_remove(index);
                self.write_final_status(&run);
                self.summary += run.join()?;
                match next {
                    Some(plan) => {
                        info!("{}: restarting with the new configuration", plan.tenant);
                        self.running
                            .push(start_tenant(plan, &self.store, self.once, &self.wake)?);
                    }
                    None => info!("{}: removed from the configuration; stopped", run.name),
                }
                self.publish();
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// Applies a reloaded plan: unchanged tenants keep running; changed
    /// ones stop cleanly (everything sent is confirmed and checkpointed)
    /// and start again from their checkpoints with the new settings, so no
    /// record is lost or repeated; removed ones stop; new ones start.
    fn reconfigure(&mut self, plan: ServicePlan) {
        if plan.state_dir != self.store.dir() {
            warn!(
                "state_dir changed to {}: takes effect at the next start",
                plan.state_dir.display()
            );
        }
        let mut wanted: HashMap<String, RunPlan> = plan
            .tenants
            .into_iter()
            .map(|t| (t.tenant.clone(), t))
            .collect();
        let mut index = 0;
        while index < self.running.len() {
            let run = &self.running[index];
            match wanted.remove(&run.name) {
                Some(next) if next.fingerprint == run.fingerprint => index += 1,
                next => {
                    let run = self.running.swap_remove(index);
                    info!(
                        "{}: configuration changed; stopping to restart from the checkpoint",
                        run.name
                    );
                    run.stop.stop();
                    self.stopping.push((run, next));
                }
            }
        }
        // A tenant already stopping takes the newest plan.
        for (run, next) in &mut self.stopping {
            if let Some(plan) = wanted.remove(&run.name) {
                *next = Some(plan);
            }
        }
        for (name, plan) in wanted {
            info!("{name}: added to the configuration; starting");
            match start_tenant(plan, &self.store, self.once, &self.wake) {
                Ok(run) => self.running.push(run),
                Err(error) => error!("{name}: cannot start: {error}"),
            }
        }
        self.publish();
    }

    /// Stops every tenant: no new requests, then waits (at most the
    /// shutdown timeout) for their receivers to confirm what was sent.
    fn shutdown(&mut self, control: &mut Control) -> Result<RunSummary, RunError> {
        let mut all: Vec<TenantRun> = self.running.drain(..).collect();
        all.extend(self.stopping.drain(..).map(|(run, _)| run));
        for run in &all {
            run.stop.stop();
        }
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut abandoned = false;
        while all.iter().any(|run| !run.finished()) {
            if !abandoned && Instant::now() >= deadline {
                abandoned = true;
                for run in all.iter().filter(|run| !run.finished()) {
                    warn!(
                        "{}: the receiver did not confirm everything within {}; \
                         the unconfirmed records are sent again at the next start",
                        run.name,
                        humantime::format_duration(self.shutdown_timeout)
                    );
                    if let Some(sink) = run.status.sink.get() {
                        sink.abandon();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.running = all;
        self.report(control, true);
        let mut first_error = None;
        for mut run in std::mem::take(&mut self.running) {
            match run.join() {
                Ok(summary) => self.summary += summary,
                Err(error) => {
                    error!("{error}");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(self.summary),
        }
    }
}

impl TenantRun {
    /// Both threads have ended (the encode thread may still be returning:
    /// joining it then waits only for that).
    fn finished(&self) -> bool {
        self.fetch.as_ref().is_none_or(|t| t.is_finished())
            && (self.encode_ended.load(Ordering::SeqCst)
                || self.encode.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// Joins both threads; the first error, the fetcher's first.
    fn join(&mut self) -> Result<RunSummary, RunError> {
        let fetched = match self.fetch.take() {
            Some(thread) => thread.join().unwrap_or(Err(RunError::Panicked("fetch"))),
            None => Ok(RunSummary::default()),
        };
        let encoded = match self.encode.take() {
            Some(thread) => thread.join().unwrap_or(Err(RunError::Panicked("encode"))),
            None => Ok(()),
        };
        let summary = fetched?;
        encoded?;
        Ok(summary)
    }
}

/// Serves Prometheus metrics on `/metrics` and health on `/healthz` from a
/// thread of its own. The server stops with the process.
fn spawn_metrics(
    address: std::net::SocketAddr,
    registry: Arc<RwLock<Vec<Arc<TenantStatus>>>>,
) -> Result<JoinHandle<()>, RunError> {
    let server = tiny_http::Server::http(address).map_err(|error| RunError::Metrics {
        address,
        reason: error.to_string(),
    })?;
    info!("metrics on http://{}/metrics", server.server_addr());
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let tenants = registry.read().clone();
                let now = crate::clock::now_ms();
                let (code, body, content_type) = match request.url() {
                    "/metrics" => (
                        200,
                        status::render_metrics(&tenants, now),
                        "text/plain; version=0.0.4",
                    ),
                    "/healthz" => {
                        let failing: Vec<String> = tenants
                            .iter()
                            .flat_map(|t| {
                                Direction::ALL.into_iter().filter_map(|d| {
                                    let state = t.link(d, now).state(now);
                                    matches!(state, State::ConnectionError | State::Disconnected)
                                        .then(|| format!("{} {}: {state}", t.tenant, d.as_str()))
                                })
                            })
                            .collect();
                        if failing.is_empty() {
                            (200, "ok\n".to_owned(), "text/plain")
                        } else {
                            (503, failing.join("\n") + "\n", "text/plain")
                        }
                    }
                    _ => (
                        404,
                        "not found: try /metrics or /healthz\n".to_owned(),
                        "text/plain",
                    ),
                };
                let mut response = tiny_http::Response::from_string(body).with_status_code(code);
                if let Ok(header) =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                {
                    response.add_header(header);
                }
                // A client that went away is its own problem.
                let _ = request.respond(response);
            }
        })
        .map_err(RunError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_dir(name: &str) -> PathBuf {
        crate::test_support::scratch_path(&format!("pipeline-{name}"))
    }

    fn cursor(kind: DataType, position: i64) -> Cursor {
        Cursor {
            kind,
            position,
            boundary_ids: vec![format!("id-at-{position}")],
            skip: 0,
            scan: None,
        }
    }

    #[test]
    fn the_checkpoint_thread_saves_the_newest_cursor_of_each_kind_and_counts_every_page(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = state_dir("saver");
        let store = CheckpointStore::open(&dir)?;
        let kinds = [DataType::Activities, DataType::Alerts];
        let status = Arc::new(TenantStatus::new("t1", &kinds));
        let mut saver = CheckpointSaver::spawn(store.clone(), Arc::clone(&status))?;
        for (position, records) in [(10, 100), (20, 7), (30, 1)] {
            saver.save(cursor(DataType::Activities, position), records)?;
        }
        saver.save(cursor(DataType::Alerts, 5), 3)?;
        saver.finish()?;

        let activities = store.load("t1", DataType::Activities)?;
        assert_eq!(activities, Some(cursor(DataType::Activities, 30)));
        let alerts = store.load("t1", DataType::Alerts)?;
        assert_eq!(alerts, Some(cursor(DataType::Alerts, 5)));
        let counters = status.counters(DataType::Activities);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 108);
        assert_eq!(counters.checkpoint_ms.load(Ordering::Relaxed), 30);
        let counters = status.counters(DataType::Alerts);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 3);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_checkpoint_that_cannot_be_saved_ends_the_run_with_its_error_and_counts_nothing(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = state_dir("unwritable");
        let store = CheckpointStore::open(&dir)?;
        // The directory becomes a file: every save fails, even as root.
        std::fs::remove_dir(&dir)?;
        std::fs::write(&dir, b"not a directory")?;
        let status = Arc::new(TenantStatus::new("t1", &[DataType::Activities]));
        let mut saver = CheckpointSaver::spawn(store, Arc::clone(&status))?;

        // The page is queued; its save fails on the checkpoint thread, and
        // the encoding thread's next look (once a page) reports it.
        saver.save(cursor(DataType::Activities, 10), 5)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !saver.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            assert!(
                Instant::now() < deadline,
                "the checkpoint thread never failed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let failure = match saver.check() {
            Err(error) => error,
            Ok(()) => panic!("the failed save was not reported"),
        };
        assert!(
            matches!(failure, RunError::Checkpoint(_)),
            "unexpected error: {failure}"
        );
        assert_eq!(failure.exit_code(), EXIT_CHECKPOINT);
        let counters = status.counters(DataType::Activities);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
        assert_eq!(counters.checkpoint_ms.load(Ordering::Relaxed), i64::MIN);
        let _ = std::fs::remove_file(&dir);
        Ok(())
    }
}
