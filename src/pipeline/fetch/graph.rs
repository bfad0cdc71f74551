//! The fetch thread's steps for the Graph data types: one request per
//! step, for the next window of the current poll's walk
//! ([`crate::source::graph::window`]).
//!
//! An answer that may have been cut is never trusted whole:
//!
//! - a hunting result with as many rows as its `take` holds the earliest
//!   rows of its window (the query sorts by time before it takes), so the
//!   rows before the latest one's time are complete: they are used, and
//!   the window is asked again from that time. Every request brings a full
//!   page, which is what a backfill under the 45-calls-a-minute limit needs.
//!   A millisecond whose rows alone fill the answer is asked for alone with
//!   the largest `take` (100,000); only more rows than that in one
//!   millisecond can be missed, and the log says so;
//! - an alerts page with a next link (or a full one) says nothing about
//!   which alerts are missing, and `$skip` shifts when alerts change
//!   between pages: its window is split in two and the halves asked for
//!   instead. Only a window of one millisecond, which cannot be split,
//!   follows `@odata.nextLink`.
//!
//! A window Graph finds too heavy is split in two, after the wait Graph
//! asked for.

use std::time::Duration;

use simd_json::prelude::*;
use tracing::warn;

use super::{
    EncoderLink, FetchLoop, GraphPage, Page, PageBuffers, PageFacts, PageOrigin, StepFailure,
    Stepped, Upstream,
};
use crate::parse::page::SplitPage;
use crate::parse::Parser;
use crate::source::graph::client::{Call, GraphClient, GraphError};
use crate::source::graph::record::GraphSource;
use crate::source::graph::request::{
    alerts_url, hunting_body, HUNTING_PATH, MAX_ALERTS_PAGE, MAX_HUNTING_ROWS, NEXT_LINK,
};
use crate::source::graph::window::{Step, WindowPlan, WindowWalk};
use crate::source::{GraphPosition, Position};

/// What the fetch thread needs for the tenant's Graph data types.
pub(in crate::pipeline) struct GraphFetch {
    /// The client (its token, the tenant's budget).
    pub(in crate::pipeline) client: GraphClient,
    /// How far the windows trail the clock.
    pub(in crate::pipeline) plan: WindowPlan,
    /// The hunting query's `take`.
    pub(in crate::pipeline) hunting_rows: u32,
    /// The extra OData filter ANDed into every alerts request.
    pub(in crate::pipeline) alerts_filter: String,
    /// A copy of one row, parsed to read its time (parsing mutates its
    /// input, and the encoder parses the page's rows after).
    pub(in crate::pipeline) scratch: Vec<u8>,
    /// A row's key, read with its time.
    pub(in crate::pipeline) key: String,
}

/// Where a Graph data type's requests stand.
pub(in crate::pipeline) struct GraphStream {
    /// The cursor, as of the last answer the encoder took.
    pub(in crate::pipeline) position: GraphPosition,
    /// The current poll's windows; `None` between polls.
    pub(in crate::pipeline) walk: Option<WindowWalk>,
    /// The next page of a one-millisecond window's alerts.
    pub(in crate::pipeline) next_link: Option<String>,
    /// A millisecond whose rows filled a whole answer: it is asked for
    /// alone with the largest `take` hunting allows.
    pub(in crate::pipeline) crowded: Option<i64>,
}

impl GraphStream {
    /// A data type starting from `position`.
    pub(in crate::pipeline) fn new(position: GraphPosition) -> Self {
        Self {
            position,
            walk: None,
            next_link: None,
            crowded: None,
        }
    }
}

fn failed(text: String) -> StepFailure {
    StepFailure::Failed {
        text,
        refused: false,
    }
}

impl FetchLoop {
    /// One request of a Graph data type, and its answer handed over (or
    /// its window split).
    pub(super) fn step_graph(
        &mut self,
        index: usize,
        link: &EncoderLink,
        buffer: &mut Vec<u8>,
    ) -> Result<Stepped, StepFailure> {
        let Self {
            tenant,
            graph,
            streams,
            parser,
            split: spare_split,
            pages_queued,
            stop,
            ..
        } = self;
        let Some(graph) = graph.as_mut() else {
            return Err(failed("internal error: no Graph client".to_owned()));
        };
        let kind = streams[index].kind;
        let Upstream::Graph(stream) = &mut streams[index].upstream else {
            return Err(failed(
                "internal error: a legacy data type on the Graph path".to_owned(),
            ));
        };
        let source = stream.position.source;
        if stream.walk.is_none() {
            stream.walk = stream
                .position
                .cursor
                .poll(crate::clock::now_ms(), graph.plan);
        }
        let Some(walk) = stream.walk.as_mut() else {
            return Ok(caught_up());
        };
        let Step::Ask(window) = walk.next() else {
            stream.walk = None;
            return Ok(caught_up());
        };
        let take = match source {
            GraphSource::Alerts(_) => MAX_ALERTS_PAGE,
            GraphSource::Events if stream.crowded == Some(window.from) && window.span() == 1 => {
                MAX_HUNTING_ROWS
            }
            GraphSource::Events => graph.hunting_rows,
        };
        let fetched = match (&stream.next_link, source) {
            (Some(next), _) => graph
                .client
                .fetch(Call::Get(next), source.permission(), buffer),
            (None, GraphSource::Alerts(versions)) => {
                let url = alerts_url(
                    graph.client.graph_url(),
                    versions,
                    window,
                    take,
                    &graph.alerts_filter,
                );
                graph
                    .client
                    .fetch(Call::Get(&url), source.permission(), buffer)
            }
            (None, GraphSource::Events) => {
                let url = format!("{}{HUNTING_PATH}", graph.client.graph_url());
                let body = hunting_body(window, take);
                graph
                    .client
                    .fetch(Call::Post(&url, &body), source.permission(), buffer)
            }
        };
        match fetched {
            Ok(()) => {}
            Err(GraphError::Split { wait }) => {
                if stream.next_link.is_none() && walk.split(window).unwrap_or(false) {
                    return Ok(Stepped::again(wait));
                }
                return Err(failed(format!(
                    "Graph cannot answer for the single millisecond {}: too heavy even alone",
                    crate::clock::iso_string(window.from)
                )));
            }
            Err(GraphError::Stopped) => return Err(StepFailure::Stopped),
            Err(error) => {
                let refused = matches!(
                    error,
                    GraphError::InvalidToken { .. } | GraphError::Forbidden { .. }
                ) || matches!(&error, GraphError::Credentials(e) if e.is_rejection());
                return Err(StepFailure::Failed {
                    text: error.to_string(),
                    refused,
                });
            }
        }
        let mut split = std::mem::take(spare_split);
        let read = split
            .split_at(buffer, source.records_key())
            .map_err(|e| e.to_string())
            .and_then(|()| {
                parser
                    .inspect(&mut split.rest, |root| {
                        root.get(NEXT_LINK)
                            .and_then(|link| link.as_str().map(str::to_owned))
                    })
                    .map_err(|e| e.to_string())
            });
        let next_link = match read {
            Ok(next_link) => next_link,
            Err(why) => {
                *spare_split = split;
                return Err(failed(format!("a malformed answer: {why}")));
            }
        };
        let rows = split.records.len();
        let mut until = window.to;
        if source == GraphSource::Events && rows >= take as usize {
            // The query asks for the earliest rows (`order by Timestamp
            // asc | take N`), in whatever order they come: every row before
            // the latest one's time is there. Those are used; the rest of
            // the window is asked again, so no request is wasted.
            graph
                .client
                .stats()
                .splits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let latest = latest_time(
                parser,
                &mut graph.scratch,
                buffer,
                &split,
                source,
                &mut graph.key,
            );
            until = match latest {
                Some(latest) if latest > window.from => latest,
                // Every row at the window's first millisecond: more may
                // share it. That millisecond alone is asked for again with
                // the largest take, then the rest of the window.
                _ if take < MAX_HUNTING_ROWS && stream.crowded != Some(window.from) => {
                    *spare_split = split;
                    stream.crowded = Some(window.from);
                    walk.cut(window, window.from + 1)
                        .map_err(|e| failed(format!("internal error: {e}")))?;
                    return Ok(Stepped::again(Duration::ZERO));
                }
                _ => {
                    warn!(
                        "{tenant}: {}: {rows} rows in the single millisecond {} fill a whole \
                         answer: rows beyond them may be missed (raise \
                         --cloud-app-events-page-size)",
                        kind.name(),
                        crate::clock::iso_string(window.from)
                    );
                    window.from + 1
                }
            };
        }
        let full = source != GraphSource::Events && (rows >= take as usize || next_link.is_some());
        if full && stream.next_link.is_none() && walk.split(window).unwrap_or(false) {
            // An alerts page is not trusted to be a prefix of anything:
            // the halves are asked instead.
            *spare_split = split;
            graph
                .client
                .stats()
                .splits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Stepped::again(Duration::ZERO));
        }
        // A hunting result has no next page; an alerts page does until the
        // window's last.
        let next_link = next_link.filter(|_| source != GraphSource::Events);
        let last = next_link.is_none();
        let page = Page {
            buffers: PageBuffers {
                bytes: std::mem::take(buffer),
                split,
            },
            origin: PageOrigin::Graph(GraphPage {
                position: stream.position.clone(),
                window,
                late_ms: walk.late_ms(),
                last,
                until,
            }),
            facts: PageFacts {
                has_next: !last,
                next_upper: None,
                next: None,
            },
        };
        if stop.is_stopped() {
            return Err(StepFailure::Stopped);
        }
        let verdict = link
            .hand_over(page, pages_queued, buffer, spare_split, true)
            .map_err(failed)?;
        let Some((_, Position::Graph(next), delivered)) = verdict else {
            return Err(failed(
                "internal error: no Graph cursor after the answer".to_owned(),
            ));
        };
        stream.position = next;
        if last {
            stream.next_link = None;
            walk.resume(window, until)
                .map_err(|e| failed(format!("internal error: {e}")))?;
        } else {
            stream.next_link = next_link;
        }
        Ok(Stepped {
            delivered,
            pages: 1,
            caught_up: false,
            wait: Duration::ZERO,
        })
    }
}

/// Every settled window has been asked for: wait for the next poll.
fn caught_up() -> Stepped {
    Stepped {
        caught_up: true,
        ..Stepped::again(Duration::ZERO)
    }
}

/// The latest time among the answer's records (those without a valid one
/// are left to the encoder to count), each parsed from a copy.
fn latest_time(
    parser: &mut Parser,
    scratch: &mut Vec<u8>,
    bytes: &[u8],
    split: &SplitPage,
    source: GraphSource,
    key: &mut String,
) -> Option<i64> {
    let mut latest = None;
    for range in &split.records {
        scratch.clear();
        scratch.extend_from_slice(&bytes[range.clone()]);
        let time = parser.inspect(scratch, |root| {
            root.as_object()
                .and_then(|record| source.record_facts(&record, key).ok())
        });
        if let Ok(Some(time)) = time {
            latest = latest.max(Some(time));
        }
    }
    latest
}
