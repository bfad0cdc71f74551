//! The live state of each tenant: the facts each link records as it
//! works or fails, the counters per data type, and the report made from
//! them. The threads of a tenant update one [`TenantStatus`]; the
//! supervisor, `/metrics` and the status files read it.
//!
//! A link records facts (when it last worked, since when it fails, the
//! last error); the state is derived from them at the moment it is asked
//! for, so a status file read long after it was written still tells the
//! truth about how long a link has been failing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::data_type::DataType;
use crate::sink::{LinkState, SinkHealth};
use crate::source::cas::client::ClientStats;
use crate::source::graph::client::GraphStats;

/// A link failing for longer than this is in `Connection error`.
pub const CONNECTION_ERROR_AFTER: Duration = Duration::from_secs(2 * 3600);
/// A link failing for longer than this is `Disconnected`.
pub const DISCONNECTED_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Longest error text kept (errors can quote server answers).
pub const MAX_ERROR_CHARS: usize = 300;

/// The state of one direction of one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Never connected yet.
    Created,
    /// Working, or failing for less than [`CONNECTION_ERROR_AFTER`].
    Connected,
    /// Failing for more than [`CONNECTION_ERROR_AFTER`].
    #[serde(rename = "Connection error")]
    ConnectionError,
    /// Failing for more than [`DISCONNECTED_AFTER`].
    Disconnected,
}

impl State {
    /// The words the status and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "Created",
            State::Connected => "Connected",
            State::ConnectionError => "Connection error",
            State::Disconnected => "Disconnected",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which link of the agent: an upstream or the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The tenant's legacy API.
    Api,
    /// Microsoft Graph, for the tenant's Graph data types.
    Graph,
    /// The syslog receiver (or stdout).
    Syslog,
}

impl Direction {
    /// Every link, in report order.
    pub const ALL: [Direction; 3] = [Direction::Api, Direction::Graph, Direction::Syslog];

    /// The name in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Api => "api",
            Direction::Graph => "graph",
            Direction::Syslog => "syslog",
        }
    }

    /// The upstream serving `kind`.
    pub fn of(kind: DataType) -> Self {
        if kind.is_graph() {
            Direction::Graph
        } else {
            Direction::Api
        }
    }
}

/// The facts about one link the state is derived from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// It has worked at least once.
    pub ever_connected: bool,
    /// Epoch ms of the last success.
    pub last_success_ms: Option<i64>,
    /// Epoch ms of the first failure of the current run of failures.
    pub failing_since_ms: Option<i64>,
    /// The last error, whether or not the link has recovered since.
    pub last_error: Option<String>,
    /// Epoch ms of the last error.
    pub last_error_ms: Option<i64>,
}

impl Link {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> State {
        let failing_for = self
            .failing_since_ms
            .map(|since| Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0)));
        match failing_for {
            Some(d) if d > DISCONNECTED_AFTER => State::Disconnected,
            Some(d) if d > CONNECTION_ERROR_AFTER => State::ConnectionError,
            _ if self.ever_connected => State::Connected,
            _ => State::Created,
        }
    }

    /// The link worked at `now_ms`.
    pub fn succeeded(&mut self, now_ms: i64) {
        self.ever_connected = true;
        self.last_success_ms = Some(now_ms);
        self.failing_since_ms = None;
    }

    /// The link failed at `now_ms` with `error`.
    pub fn failed(&mut self, now_ms: i64, error: &str) {
        self.failing_since_ms.get_or_insert(now_ms);
        self.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
        self.last_error_ms = Some(now_ms);
    }
}

/// Counters of one data type of one tenant.
#[derive(Debug)]
pub struct KindCounters {
    /// Records the API returned that the cursor took as new.
    pub fetched: AtomicU64,
    /// Records whose lines the receiver confirmed.
    pub sent: AtomicU64,
    /// Malformed records skipped (not valid JSON objects, or a Graph
    /// record without its time or id).
    pub dropped: AtomicU64,
    /// Graph records delivered only because the late span was asked for
    /// again (they became visible after their window had been asked).
    pub late: AtomicU64,
    /// Epoch ms up to which every record is delivered and checkpointed
    /// (`i64::MIN` until known).
    pub checkpoint_ms: AtomicI64,
}

impl Default for KindCounters {
    fn default() -> Self {
        Self {
            fetched: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            late: AtomicU64::new(0),
            checkpoint_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// A channel depth gauge: its name and how to read it.
pub type DepthGauge = (&'static str, Box<dyn Fn() -> usize + Send + Sync>);

/// The live status of one tenant, shared by its threads and the service.
pub struct TenantStatus {
    /// The tenant's name.
    pub tenant: String,
    /// The data types it pulls.
    pub kinds: Vec<DataType>,
    links: Mutex<[Link; 3]>,
    counters: [KindCounters; 4],
    /// The legacy API client's counters, once it exists.
    pub client: OnceLock<Arc<ClientStats>>,
    /// The Graph client's counters, once it exists.
    pub graph: OnceLock<Arc<GraphStats>>,
    /// The writer's state and counters, once it runs.
    pub sink: OnceLock<Arc<SinkHealth>>,
    /// Channel depths.
    pub depths: Mutex<Vec<DepthGauge>>,
}

impl std::fmt::Debug for TenantStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStatus")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl TenantStatus {
    /// A tenant that has not connected anywhere yet.
    pub fn new(tenant: &str, kinds: &[DataType]) -> Self {
        Self {
            tenant: tenant.to_owned(),
            kinds: kinds.to_vec(),
            links: Mutex::default(),
            counters: Default::default(),
            client: OnceLock::new(),
            graph: OnceLock::new(),
            sink: OnceLock::new(),
            depths: Mutex::new(Vec::new()),
        }
    }

    /// The counters of `kind`.
    pub fn counters(&self, kind: DataType) -> &KindCounters {
        &self.counters[kind.index()]
    }

    /// The links this tenant uses: the upstreams of its data types, and
    /// the receiver.
    pub fn directions(&self) -> impl Iterator<Item = Direction> + '_ {
        Direction::ALL.into_iter().filter(|&direction| {
            direction == Direction::Syslog
                || self
                    .kinds
                    .iter()
                    .any(|&kind| Direction::of(kind) == direction)
        })
    }

    /// Updates a link.
    pub fn update(&self, direction: Direction, change: impl FnOnce(&mut Link)) {
        change(&mut self.links.lock()[direction as usize]);
    }

    /// A copy of a link's facts. The syslog link is refreshed from the
    /// writer's state first.
    pub fn link(&self, direction: Direction, now_ms: i64) -> Link {
        if direction == Direction::Syslog {
            self.refresh_syslog(now_ms);
        }
        self.links.lock()[direction as usize].clone()
    }

    /// Folds the writer's current connection state into the syslog link.
    fn refresh_syslog(&self, now_ms: i64) {
        let Some(sink) = self.sink.get() else { return };
        let (state, error, _) = sink.state();
        let mut links = self.links.lock();
        let link = &mut links[Direction::Syslog as usize];
        match state {
            LinkState::Connected => link.succeeded(now_ms),
            LinkState::Connecting => {}
            LinkState::ConnectionError | LinkState::SendError => {
                let text = match &error {
                    Some(error) => format!("{}: {error}", state.describe()),
                    None => state.describe().to_owned(),
                };
                // Keep the first failure time; refresh the text only when
                // it changed, so the error time says when it was seen first.
                if link.failing_since_ms.is_none() || link.last_error.as_deref() != Some(&text) {
                    link.failed(now_ms, &text);
                }
            }
        }
    }

    /// The report written to the status file and printed by `status`.
    pub fn report(&self, now_ms: i64) -> StatusReport {
        let upstream = |direction: Direction| {
            self.directions()
                .any(|used| used == direction)
                .then(|| LinkReport::new(self.link(direction, now_ms), now_ms))
        };
        let syslog = self.link(Direction::Syslog, now_ms);
        StatusReport {
            tenant: self.tenant.clone(),
            pid: std::process::id(),
            updated_ms: now_ms,
            api: upstream(Direction::Api),
            graph: upstream(Direction::Graph),
            syslog: LinkReport::new(syslog, now_ms),
            data_types: self
                .kinds
                .iter()
                .map(|&kind| {
                    let c = self.counters(kind);
                    let checkpoint = c.checkpoint_ms.load(Ordering::Relaxed);
                    KindReport {
                        data_type: kind.name().to_owned(),
                        fetched: c.fetched.load(Ordering::Relaxed),
                        sent: c.sent.load(Ordering::Relaxed),
                        dropped: c.dropped.load(Ordering::Relaxed),
                        late: c.late.load(Ordering::Relaxed),
                        checkpoint_ms: (checkpoint != i64::MIN).then_some(checkpoint),
                    }
                })
                .collect(),
        }
    }
}

/// One link in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// The state when the report was made.
    pub state: State,
    /// The facts behind it.
    #[serde(flatten)]
    pub link: Link,
}

impl LinkReport {
    fn new(link: Link, now_ms: i64) -> Self {
        Self {
            state: link.state(now_ms),
            link,
        }
    }
}

/// One data type in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindReport {
    /// The data type's name ([`DataType::name`]).
    pub data_type: String,
    /// Records fetched since the agent started.
    pub fetched: u64,
    /// Records confirmed by the receiver since the agent started.
    pub sent: u64,
    /// Malformed records skipped since the agent started.
    #[serde(default)]
    pub dropped: u64,
    /// Graph records caught by asking the late span again.
    #[serde(default)]
    pub late: u64,
    /// Everything up to this epoch ms is delivered and checkpointed.
    pub checkpoint_ms: Option<i64>,
}

/// What a status file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The tenant.
    pub tenant: String,
    /// The agent's process id.
    pub pid: u32,
    /// When the agent wrote this (epoch ms).
    pub updated_ms: i64,
    /// The legacy API link, when the tenant pulls a legacy data type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<LinkReport>,
    /// The Microsoft Graph link, when the tenant pulls a Graph data type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<LinkReport>,
    /// The syslog link.
    pub syslog: LinkReport,
    /// Per data type.
    pub data_types: Vec<KindReport>,
}

impl StatusReport {
    /// The same report with its states derived again at `now_ms` (a file
    /// read later may describe links that have failed longer since).
    pub fn at(mut self, now_ms: i64) -> Self {
        for link in [&mut self.api, &mut self.graph]
            .into_iter()
            .flatten()
            .chain([&mut self.syslog])
        {
            link.state = link.link.state(now_ms);
        }
        self
    }

    /// The links the report holds, in report order.
    pub fn links(&self) -> impl Iterator<Item = (Direction, &LinkReport)> {
        [
            (Direction::Api, self.api.as_ref()),
            (Direction::Graph, self.graph.as_ref()),
            (Direction::Syslog, Some(&self.syslog)),
        ]
        .into_iter()
        .filter_map(|(direction, link)| Some((direction, link?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn states_follow_the_failure_time() {
        let mut link = Link::default();
        assert_eq!(link.state(0), State::Created);
        link.failed(0, "refused");
        assert_eq!(link.state(HOUR), State::Created, "never connected, 1 h");
        assert_eq!(link.state(2 * HOUR + 1), State::ConnectionError);
        link.succeeded(3 * HOUR);
        assert_eq!(link.state(3 * HOUR), State::Connected);
        assert_eq!(link.last_error.as_deref(), Some("refused"), "kept");
        link.failed(4 * HOUR, "reset");
        link.failed(5 * HOUR, "reset again");
        assert_eq!(link.failing_since_ms, Some(4 * HOUR), "first failure kept");
        assert_eq!(link.state(6 * HOUR), State::Connected, "2 h exactly");
        assert_eq!(link.state(6 * HOUR + 1), State::ConnectionError);
        assert_eq!(link.state(16 * HOUR), State::ConnectionError);
        assert_eq!(link.state(16 * HOUR + 1), State::Disconnected);
    }
}
