//! The agent's main loop: pull a page, encode the records the cursor says
//! are new, deliver them, and only then move the durable checkpoint.
//!
//! Delivery here is a writer that is flushed before the checkpoint is saved
//! (stdout for now; the syslog sinks come next). A crash between the flush
//! and the save repeats at most that one page on restart; a crash before
//! the flush repeats nothing that was confirmed, and loses nothing.
//!
//! Data types take turns: a type with more pages waiting goes again at once
//! (the shared request budget paces everything), a type that has caught up
//! waits for the poll interval.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simd_json::OwnedValue;

use crate::cef::Encoder;
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::parse::Parser;
use crate::simulator::data::StreamKind;
use crate::source::budget::RequestBudget;
use crate::source::client::{ApiClient, ClientConfig, FetchError};
use crate::source::cursor::Cursor;
use simd_json::prelude::*;

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
    #[error("cannot write output: {0}")]
    Output(io::Error),
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

/// Runs the agent: forever, or with `once` until every data type has
/// caught up. Records go to `out`; log lines to `log`.
pub fn run(
    mut plan: RunPlan,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<RunSummary, RunError> {
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
    let mut parser = Parser::new();
    let mut batch = Vec::with_capacity(BATCH_CAPACITY);
    let mut summary = RunSummary::default();
    let mut consecutive_failures = 0u32;
    let mut fetched_any = false;
    loop {
        if plan.once && streams.iter().all(|s| s.caught_up) {
            return Ok(summary);
        }
        let Some(stream) = streams.iter_mut().min_by_key(|s| s.due) else {
            return Ok(summary);
        };
        let wait = stream.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
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
                out.write_all(&batch)
                    .and_then(|()| out.flush())
                    .map_err(RunError::Output)?;
                store.save(&plan.tenant, &next)?;
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
