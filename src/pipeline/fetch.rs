//! The fetch thread: one request at a time for the tenant's data types, in
//! the order they fall due, each page read into a recycled buffer, split
//! into records and handed to the encoder (see the [module
//! docs](super) for when it waits for the encoder's verdict).
//!
//! [`read_page`] is the part of it a test can drive without a network:
//! split a body and read its paging facts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use simd_json::OwnedValue;
use tracing::{info, warn};

use super::{RunError, RunSummary};
use crate::data_type::DataType;
use crate::parse::page::SplitPage;
use crate::parse::Parser;
use crate::shutdown::StopSignal;
use crate::source::cas::client::{ApiClient, FetchError};
use crate::source::cas::cursor::Cursor;
use crate::status::{Direction, TenantStatus};

/// A fetched page on its way to the encoder.
pub struct Page {
    /// The response body and its split into records.
    pub buffers: PageBuffers,
    /// The cursor the page was requested with.
    pub cursor: Cursor,
    /// What the fetcher read of it. With a scan page's next cursor, which
    /// the fetcher already went on with, the encoder sends no verdict.
    pub facts: PageFacts,
}

/// A page's buffers, passed from the fetcher to the encoder and back so
/// their allocations are reused.
#[derive(Default)]
pub struct PageBuffers {
    /// The response body.
    pub bytes: Vec<u8>,
    /// Its records' ranges and the rest of it.
    pub split: SplitPage,
}

/// The encoder's answer about a page's paging facts.
pub enum Verdict {
    /// The page is valid; the cursor moves to `next`.
    Accepted {
        /// The page's `hasNext`.
        has_next: bool,
        /// The cursor after the page.
        next: Cursor,
        /// Records of the page that were new and encoded.
        delivered: usize,
    },
    /// The page cannot be used (fetch it again).
    Rejected(String),
}

/// One data type's place in the fetch schedule.
pub(super) struct Stream {
    pub(super) kind: DataType,
    pub(super) cursor: Cursor,
    pub(super) due: Instant,
    pub(super) caught_up: bool,
}

/// The fetch thread's state.
pub(super) struct FetchLoop {
    pub(super) tenant: String,
    pub(super) client: ApiClient,
    pub(super) streams: Vec<Stream>,
    pub(super) filters: HashMap<DataType, OwnedValue>,
    pub(super) poll_interval: Duration,
    pub(super) max_critical_errors: u32,
    pub(super) once: bool,
    pub(super) stop: StopSignal,
    pub(super) status: Arc<TenantStatus>,
    pub(super) pages_queued: Arc<AtomicUsize>,
    /// Reads each page's paging facts.
    pub(super) parser: Parser,
    /// Record ranges for the next page (given back by the encoder).
    pub(super) split: SplitPage,
}

impl FetchLoop {
    /// Fetches until stopped (or, with `once`, until every data type has
    /// caught up). Closing `pages` on return tells the encoder to finish.
    pub(super) fn run(
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
                    let rejected = matches!(
                        error,
                        FetchError::InvalidToken { .. } | FetchError::CredentialsRejected(_)
                    );
                    if !fetched_any && rejected {
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
pub struct PageFacts {
    /// The page's `hasNext`.
    pub has_next: bool,
    /// The next scan bound, when there is a next page.
    pub next_upper: Option<i64>,
    /// For a scan page, the cursor after it.
    pub next: Option<Cursor>,
}

/// Splits a fetched page into records and reads its paging facts.
///
/// Every record of a scan page is new, so the cursor after it is known
/// before any record is parsed, and the next request can go out as soon as
/// the encoder takes this page. Other pages (at most 100 records) move the
/// cursor record by record, so the encoder answers after encoding them.
pub fn read_page(
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
