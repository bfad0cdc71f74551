//! One tenant's group of threads: loading its cursors, building its API
//! client, making the channels between its stages and starting them (see
//! the [module docs](super) for the picture), and joining them again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tracing::warn;

use super::checkpointer::CheckpointSaver;
use super::encode::{EncodeLoop, EncodeStage};
use super::fetch::{
    EncoderLink, FetchLoop, GraphFetch, GraphStream, Page, PageBuffers, Stream, Upstream, Verdict,
};
use super::writer::spawn_sink;
use super::{RunError, RunSummary};
use crate::cef::Encoder;
use crate::config::{GraphPlan, RunPlan};
use crate::data_type::DataType;
use crate::parse::page::SplitPage;
use crate::parse::Parser;
use crate::shutdown::StopSignal;
use crate::source::budget::RequestBudget;
use crate::source::cas::client::ApiClient;
use crate::source::cas::cursor::Cursor;
use crate::source::graph::client::GraphClient;
use crate::source::graph::record::GraphSource;
use crate::source::graph::window::WindowCursor;
use crate::source::GraphPosition;
use crate::state::checkpoint::CheckpointStore;
use crate::status::{State, StatusReport, TenantStatus};

/// Pages waiting in the channel to the encoder: none, so a fetched page
/// waits in the fetcher until the encoder takes it, and the next one is
/// read into the buffers the encoder gave back (two page buffers).
pub const PAGE_CHANNEL_PAGES: usize = 0;

/// A running tenant: its threads and what they share.
pub(super) struct TenantRun {
    pub(super) name: String,
    pub(super) fingerprint: String,
    pub(super) status: Arc<TenantStatus>,
    pub(super) stop: StopSignal,
    fetch: Option<JoinHandle<Result<RunSummary, RunError>>>,
    encode: Option<JoinHandle<Result<(), RunError>>>,
    /// Set by the encode thread as its last act, before it nudges the
    /// supervisor (`is_finished` turns true only a moment later).
    encode_ended: Arc<AtomicBool>,
    /// States last logged, per direction.
    pub(super) logged: [State; 3],
    /// The last status file written, and when.
    pub(super) written: Option<(StatusReport, Instant)>,
}

/// Loads the cursors, builds the client and starts the tenant's threads.
/// `supervisor` is nudged when the tenant's encode thread ends.
pub(super) fn start_tenant(
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
        let upstream =
            match &plan.graph {
                Some(graph) if kind.is_graph() => Upstream::Graph(GraphStream::new(
                    graph_position(store, &tenant, kind, graph, now, backfill_ms)?,
                )),
                _ => Upstream::Cas(cas_cursor(store, &tenant, kind, now, backfill_ms)?),
            };
        streams.push(Stream::new(kind, upstream));
    }
    let stop = StopSignal::new();
    let budget = Arc::new(RequestBudget::new(plan.requests_per_minute));
    let client = match &plan.client {
        Some(config) => {
            let client = ApiClient::new(config.clone(), Arc::clone(&budget))
                .map_err(|error| RunError::ClientSetup {
                    tenant: tenant.clone(),
                    upstream: "API",
                    reason: error.to_string(),
                })?
                .with_stop(stop.clone());
            let _ = status.client.set(client.stats());
            Some(client)
        }
        None => None,
    };
    let graph = match &plan.graph {
        Some(graph) => {
            let client = GraphClient::new(graph.client.clone(), Arc::clone(&budget))
                .map_err(|error| RunError::ClientSetup {
                    tenant: tenant.clone(),
                    upstream: "Graph",
                    reason: error.to_string(),
                })?
                .with_stop(stop.clone());
            let _ = status.graph.set(client.stats());
            Some(GraphFetch {
                client,
                plan: graph.windows,
                hunting_rows: graph.hunting_rows,
                alerts_filter: graph.alerts_filter.clone(),
                scratch: Vec::new(),
                key: String::new(),
            })
        }
        None => None,
    };
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
                    stage: EncodeStage::new(encoder, sink, status),
                    checkpoints,
                    pages_queued,
                    stop: stop.clone(),
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
            graph,
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
            body: Vec::new(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("fetch-{tenant}"))
            .spawn(move || {
                work.run(EncoderLink {
                    pages: pages_in,
                    verdicts: verdicts_out,
                    spare: spare_out,
                })
            });
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
        logged: [State::Created; 3],
        written: None,
    })
}

impl TenantRun {
    /// Both threads have ended (the encode thread may still be returning:
    /// joining it then waits only for that).
    pub(super) fn finished(&self) -> bool {
        self.fetch.as_ref().is_none_or(|t| t.is_finished())
            && (self.encode_ended.load(Ordering::SeqCst)
                || self.encode.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// The encode thread has ended: everything the tenant delivered is
    /// confirmed (or given up) and checkpointed. At shutdown this is what
    /// is waited for; the fetch thread may be in a request for a while.
    pub(super) fn delivery_finished(&self) -> bool {
        self.encode_ended.load(Ordering::SeqCst)
            || self.encode.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Joins both threads; the first error, the fetcher's first. A fetch
    /// thread still in a request is not waited for (see
    /// [`Self::delivery_finished`]): its answer can no longer be handed
    /// on, so leaving it loses nothing.
    pub(super) fn join(&mut self) -> Result<RunSummary, RunError> {
        let fetched = match self.fetch.take() {
            Some(thread) if thread.is_finished() || !self.stop.is_stopped() => {
                thread.join().unwrap_or(Err(RunError::Panicked("fetch")))
            }
            Some(_) => {
                warn!(
                    "{}: a request to the API is still in progress; not waiting for it \
                     (its answer would not be used: nothing is lost)",
                    self.name
                );
                Ok(RunSummary::default())
            }
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

/// A legacy data type's cursor: the saved one, or a first start's.
fn cas_cursor(
    store: &CheckpointStore,
    tenant: &str,
    kind: DataType,
    now: i64,
    backfill_ms: i64,
) -> Result<Cursor, RunError> {
    Ok(match store.load(tenant, kind)? {
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
    })
}

/// A Graph data type's position: the saved one, or a first start's.
fn graph_position(
    store: &CheckpointStore,
    tenant: &str,
    kind: DataType,
    plan: &GraphPlan,
    now: i64,
    backfill_ms: i64,
) -> Result<GraphPosition, RunError> {
    let source = if kind == DataType::GraphAlerts {
        GraphSource::Alerts(plan.versions)
    } else {
        GraphSource::Events
    };
    let backfill_from = now.saturating_sub(backfill_ms);
    let cursor = match store.load_graph(tenant, kind)? {
        None => WindowCursor::start(backfill_from),
        Some(mut saved) => {
            if saved.time_field != source.time_field() {
                // The keys remembered were of the other mode: forget them.
                warn!(
                    "{tenant}: {}: graph_alerts_versions changed (windows were over {}, now \
                     over {}): alerts of the last late window may be delivered again",
                    kind.name(),
                    saved.time_field,
                    source.time_field()
                );
                saved.cursor.seen.clear();
            }
            if saved.cursor.position < backfill_from {
                warn!(
                    "{tenant}: {}: the checkpoint is older than the backfill window; \
                     records from {} to {} are skipped (raise --backfill to fetch them)",
                    kind.name(),
                    crate::clock::iso_string(saved.cursor.position),
                    crate::clock::iso_string(backfill_from)
                );
                WindowCursor::start(backfill_from)
            } else {
                saved.cursor
            }
        }
    };
    Ok(GraphPosition {
        source,
        cursor: Arc::new(cursor),
    })
}
