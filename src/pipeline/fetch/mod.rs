//! The fetch thread: one request at a time for the tenant's data types, in
//! the order they fall due, each page read into a recycled buffer, split
//! into records and handed to the encoder (see the [module
//! docs](super) for when it waits for the encoder's verdict).
//!
//! The legacy API's steps are here; Microsoft Graph's, which walk time
//! windows instead of paging, are in `graph.rs` beside it. [`read_page`] is the part
//! a test can drive without a network: split a body and read its paging
//! facts.

mod graph;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use simd_json::OwnedValue;
use tracing::{info, warn};

pub(super) use self::graph::{GraphFetch, GraphStream};
use super::{RunError, RunSummary};
use crate::data_type::DataType;
use crate::parse::page::SplitPage;
use crate::parse::Parser;
use crate::shutdown::StopSignal;
use crate::source::cas::client::{ApiClient, FetchError};
use crate::source::cas::cursor::Cursor;
use crate::source::graph::window::Window;
use crate::source::{GraphPosition, Position};
use crate::status::{Direction, TenantStatus};

/// A fetched page on its way to the encoder.
pub struct Page {
    /// The response body and its split into records.
    pub buffers: PageBuffers,
    /// What the page answers.
    pub origin: PageOrigin,
    /// What the fetcher read of it. With a scan page's next cursor, which
    /// the fetcher already went on with, the encoder sends no verdict.
    pub facts: PageFacts,
}

/// What a page answers, and so how its records move the position.
pub enum PageOrigin {
    /// A legacy API page, asked for with this cursor.
    Cas(Cursor),
    /// A Graph answer for one window.
    Graph(GraphPage),
}

/// A Graph answer: the window it is for and the position it was asked at.
pub struct GraphPage {
    /// The position before the answer.
    pub position: GraphPosition,
    /// The window asked for.
    pub window: Window,
    /// The late span (ms), kept by the cursor when it closes the window.
    pub late_ms: i64,
    /// The window's last page (no `@odata.nextLink` to follow): the
    /// cursor closes over the window with it, up to `until`.
    pub last: bool,
    /// Records from this time on are not used: the window's end, or, for a
    /// hunting result cut at its `take`, the latest row's time (the rows
    /// before it are complete; the rest of the window is asked again).
    pub until: i64,
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

/// The encoder's answer about a page.
pub enum Verdict {
    /// The page is valid; the position moves to `next`.
    Accepted {
        /// The page's `hasNext` (for a Graph answer: more pages of the
        /// window follow).
        has_next: bool,
        /// The position after the page.
        next: Position,
        /// Records of the page that were new and encoded.
        delivered: usize,
    },
    /// The page cannot be used (fetch it again).
    Rejected(String),
}

/// Where one data type's requests stand.
pub(super) enum Upstream {
    /// A legacy API data type.
    Cas(Cursor),
    /// A Graph data type.
    Graph(GraphStream),
}

/// One data type's place in the fetch schedule.
pub(super) struct Stream {
    pub(super) kind: DataType,
    pub(super) upstream: Upstream,
    pub(super) due: Instant,
    pub(super) caught_up: bool,
    /// Its upstream has answered its requests at least once (a refusal
    /// after that is a failure to retry, not a bad configuration: each
    /// endpoint needs its own permission).
    pub(super) answered: bool,
    /// Its requests that failed in a row.
    pub(super) failures: u32,
}

impl Stream {
    /// A data type due at once.
    pub(super) fn new(kind: DataType, upstream: Upstream) -> Self {
        Self {
            kind,
            upstream,
            due: Instant::now(),
            caught_up: false,
            answered: false,
            failures: 0,
        }
    }
}

/// The fetch thread's state.
pub(super) struct FetchLoop {
    pub(super) tenant: String,
    /// The legacy API client, when the tenant pulls a legacy data type.
    pub(super) client: Option<ApiClient>,
    /// The Graph client and settings, when it pulls a Graph data type.
    pub(super) graph: Option<GraphFetch>,
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
    /// The legacy API request's body, rewritten for each request.
    pub(super) body: Vec<u8>,
}

/// The channels between the fetcher and the encoder.
pub(super) struct EncoderLink {
    pub(super) pages: Sender<Page>,
    pub(super) verdicts: Receiver<Verdict>,
    pub(super) spare: Receiver<PageBuffers>,
}

impl EncoderLink {
    /// Hands `page` to the encoder, takes back the previous page's buffers
    /// into `bytes` and `split` if the encoder has given them back, and
    /// (unless `verdict` is false) waits for the encoder's verdict.
    fn hand_over(
        &self,
        page: Page,
        pages_queued: &AtomicUsize,
        bytes: &mut Vec<u8>,
        split: &mut SplitPage,
        verdict: bool,
    ) -> Result<Option<(bool, Position, usize)>, String> {
        pages_queued.fetch_add(1, Ordering::Relaxed);
        if self.pages.send(page).is_err() {
            return Err(ENCODER_STOPPED.to_owned());
        }
        // The encoder gave back the previous page's buffers before it took
        // this page: the next page is read into them, so two page buffers
        // exist, not three (a scan page is ~6 MB).
        if let Ok(back) = self.spare.try_recv() {
            *bytes = back.bytes;
            *split = back.split;
        }
        if !verdict {
            return Ok(None);
        }
        match self.verdicts.recv() {
            Ok(Verdict::Accepted {
                has_next,
                next,
                delivered,
            }) => Ok(Some((has_next, next, delivered))),
            Ok(Verdict::Rejected(why)) => Err(why),
            Err(_) => Err(ENCODER_STOPPED.to_owned()),
        }
    }
}

const ENCODER_STOPPED: &str = "the encoder has stopped";

/// What one request of a data type achieved.
pub(super) struct Stepped {
    /// Records handed on as new.
    delivered: usize,
    /// Pages handed on.
    pages: u64,
    /// Nothing more to ask for until the next poll.
    caught_up: bool,
    /// Wait this long before the data type's next request (besides the
    /// poll interval once caught up).
    wait: Duration,
}

impl Stepped {
    /// Nothing handed on yet (a window split, or to be asked again): the
    /// data type goes on after `wait`.
    fn again(wait: Duration) -> Self {
        Self {
            delivered: 0,
            pages: 0,
            caught_up: false,
            wait,
        }
    }
}

/// Why a request of a data type achieved nothing.
pub(super) enum StepFailure {
    /// The agent is shutting down.
    Stopped,
    /// The request or its page failed.
    Failed {
        /// What to log and show in the status.
        text: String,
        /// The upstream refused the credentials or a permission: at the
        /// start, the run ends with exit 77 instead of retrying.
        refused: bool,
    },
}

impl FetchLoop {
    /// Fetches until stopped (or, with `once`, until every data type has
    /// caught up). Closing `pages` on return tells the encoder to finish.
    pub(super) fn run(mut self, link: EncoderLink) -> Result<RunSummary, RunError> {
        let mut summary = RunSummary::default();
        let mut buffer = Vec::new();
        loop {
            if self.stop.is_stopped() || (self.once && self.streams.iter().all(|s| s.caught_up)) {
                return Ok(summary);
            }
            let Some(index) = (0..self.streams.len()).min_by_key(|&i| self.streams[i].due) else {
                return Ok(summary);
            };
            let due = self.streams[index].due;
            if due > Instant::now() {
                self.stop.sleep_until(due);
                continue;
            }
            let kind = self.streams[index].kind;
            let direction = Direction::of(kind);
            let stepped = if kind.is_graph() {
                self.step_graph(index, &link, &mut buffer)
            } else {
                self.step_cas(index, &link, &mut buffer)
            };
            let stream = &mut self.streams[index];
            match stepped {
                Ok(stepped) => {
                    stream.answered = true;
                    stream.failures = 0;
                    self.status
                        .update(direction, |l| l.succeeded(crate::clock::now_ms()));
                    self.status
                        .counters(kind)
                        .fetched
                        .fetch_add(stepped.delivered as u64, Ordering::Relaxed);
                    summary.records += stepped.delivered as u64;
                    summary.pages += stepped.pages;
                    stream.caught_up = stepped.caught_up;
                    let wait = if stepped.caught_up {
                        self.poll_interval.max(stepped.wait)
                    } else {
                        stepped.wait
                    };
                    stream.due = Instant::now() + wait;
                }
                Err(StepFailure::Stopped) => return Ok(summary),
                Err(StepFailure::Failed { text, refused }) => {
                    self.status.update(direction, |l| {
                        l.failed(crate::clock::now_ms(), &text);
                    });
                    if refused && !stream.answered {
                        return Err(RunError::InvalidToken {
                            tenant: self.tenant.clone(),
                            message: text,
                        });
                    }
                    // Counted per data type: one that keeps failing is not
                    // hidden by another that works.
                    stream.failures += 1;
                    warn!("{}: {}: {text}", self.tenant, kind.name());
                    if stream.failures >= self.max_critical_errors.max(1) {
                        return Err(RunError::TooManyCriticalErrors {
                            tenant: self.tenant.clone(),
                            count: stream.failures,
                            last: text,
                        });
                    }
                    stream.due = Instant::now() + self.poll_interval;
                }
            }
        }
    }

    /// One request of a legacy data type, and its page handed over.
    fn step_cas(
        &mut self,
        index: usize,
        link: &EncoderLink,
        buffer: &mut Vec<u8>,
    ) -> Result<Stepped, StepFailure> {
        let Self {
            tenant,
            client,
            streams,
            filters,
            parser,
            split: spare_split,
            pages_queued,
            body,
            ..
        } = self;
        let stream = &mut streams[index];
        let kind = stream.kind;
        let Upstream::Cas(cursor) = &mut stream.upstream else {
            return Err(StepFailure::Failed {
                text: "internal error: a Graph data type on the legacy path".to_owned(),
                refused: false,
            });
        };
        let Some(client) = client.as_mut() else {
            return Err(StepFailure::Failed {
                text: "internal error: no legacy API client".to_owned(),
                refused: false,
            });
        };
        cursor.begin_window(crate::clock::now_ms());
        cursor.write_request_body(filters.get(&kind), body);
        let asked = &*cursor;
        let fetched = client.fetch(kind, body, buffer, |bytes| {
            let mut split = std::mem::take(spare_split);
            let facts = match read_page(parser, &mut split, bytes, asked) {
                Ok(facts) => facts,
                Err(why) => {
                    *spare_split = split;
                    return Err(why);
                }
            };
            let scanned = facts
                .next
                .clone()
                .map(|next| (facts.has_next, next, split.records.len()));
            let page = Page {
                buffers: PageBuffers {
                    bytes: std::mem::take(bytes),
                    split,
                },
                origin: PageOrigin::Cas(asked.clone()),
                facts,
            };
            let verdict =
                link.hand_over(page, pages_queued, bytes, spare_split, scanned.is_none())?;
            match (scanned, verdict) {
                (Some(answer), _) => Ok(answer),
                (None, Some((has_next, Position::Cas(next), delivered))) => {
                    Ok((has_next, next, delivered))
                }
                (None, _) => Err("internal error: no legacy cursor after the page".to_owned()),
            }
        });
        match fetched {
            Ok((has_next, next, delivered)) => {
                let was_backfilling = cursor.backfilling();
                let caught_up = !has_next && !next.scanning();
                *cursor = next;
                if was_backfilling && !cursor.backfilling() {
                    info!("{tenant}: {}: backfill complete", kind.name());
                }
                Ok(Stepped {
                    delivered,
                    pages: 1,
                    caught_up,
                    wait: Duration::ZERO,
                })
            }
            Err(FetchError::Stopped) => Err(StepFailure::Stopped),
            Err(error) => Err(StepFailure::Failed {
                refused: matches!(
                    error,
                    FetchError::InvalidToken { .. } | FetchError::CredentialsRejected(_)
                ),
                text: error.to_string(),
            }),
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
