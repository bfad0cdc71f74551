//! What state each tenant is in, for people (`siem-agent status`), for
//! monitoring (Prometheus text on `--metrics-listen`) and for the log.
//!
//! The vendor's portal showed four states per agent, and users have
//! alerting built on their meaning, so we keep them: `Created` (never
//! connected), `Connected`, `Connection error` (failing for more than two
//! hours) and `Disconnected` (failing for more than twelve). We keep them
//! per tenant and per direction (the API upstream, the syslog receiver
//! downstream), because "which side is broken" is the first question.
//!
//! A link records facts (when it last worked, since when it fails, the
//! last error); the state is derived from them at the moment it is asked
//! for, so a status file read long after it was written still tells the
//! truth about how long a link has been failing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{write_atomically, CheckpointError, CheckpointStore};
use crate::simulator::data::StreamKind;
use crate::sink::{LinkState, SinkHealth};
use crate::source::client::ClientStats;

/// A link failing for longer than this is in `Connection error`.
pub const CONNECTION_ERROR_AFTER: Duration = Duration::from_secs(2 * 3600);
/// A link failing for longer than this is `Disconnected`.
pub const DISCONNECTED_AFTER: Duration = Duration::from_secs(12 * 3600);
/// File name suffix of status files in the state directory.
pub const STATUS_SUFFIX: &str = ".status.json";
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

/// Which side of the agent a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The tenant's API.
    Api,
    /// The syslog receiver (or stdout).
    Syslog,
}

impl Direction {
    /// Both directions, in report order.
    pub const ALL: [Direction; 2] = [Direction::Api, Direction::Syslog];

    /// The name in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Api => "api",
            Direction::Syslog => "syslog",
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
    /// Malformed records skipped (not valid JSON objects).
    pub dropped: AtomicU64,
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
    pub kinds: Vec<StreamKind>,
    links: Mutex<[Link; 2]>,
    counters: [KindCounters; 2],
    /// The API client's counters, once it exists.
    pub client: OnceLock<Arc<ClientStats>>,
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

fn kind_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Alerts => 0,
        StreamKind::Activities => 1,
    }
}

impl TenantStatus {
    /// A tenant that has not connected anywhere yet.
    pub fn new(tenant: &str, kinds: &[StreamKind]) -> Self {
        Self {
            tenant: tenant.to_owned(),
            kinds: kinds.to_vec(),
            links: Mutex::new([Link::default(), Link::default()]),
            counters: [KindCounters::default(), KindCounters::default()],
            client: OnceLock::new(),
            sink: OnceLock::new(),
            depths: Mutex::new(Vec::new()),
        }
    }

    /// The counters of `kind`.
    pub fn counters(&self, kind: StreamKind) -> &KindCounters {
        &self.counters[kind_index(kind)]
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
        let api = self.link(Direction::Api, now_ms);
        let syslog = self.link(Direction::Syslog, now_ms);
        StatusReport {
            tenant: self.tenant.clone(),
            pid: std::process::id(),
            updated_ms: now_ms,
            api: LinkReport::new(api, now_ms),
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
    /// `alerts` or `activities`.
    pub data_type: String,
    /// Records fetched since the agent started.
    pub fetched: u64,
    /// Records confirmed by the receiver since the agent started.
    pub sent: u64,
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
    /// The API link.
    pub api: LinkReport,
    /// The syslog link.
    pub syslog: LinkReport,
    /// Per data type.
    pub data_types: Vec<KindReport>,
}

impl StatusReport {
    /// The same report with its states derived again at `now_ms` (a file
    /// read later may describe links that have failed longer since).
    pub fn at(mut self, now_ms: i64) -> Self {
        self.api.state = self.api.link.state(now_ms);
        self.syslog.state = self.syslog.link.state(now_ms);
        self
    }
}

/// Why status files could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] CheckpointError),
    /// The directory could not be listed or a file read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A status file does not hold a report.
    #[error("{path}: not a status file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds no status file.
    #[error("{0}: no status files (has the agent run with --state-dir {0}?)")]
    Empty(PathBuf),
}

/// The status file of `tenant` in `dir`.
pub fn status_path(dir: &Path, tenant: &str) -> PathBuf {
    dir.join(format!(
        "{}{STATUS_SUFFIX}",
        CheckpointStore::file_stem(tenant)
    ))
}

/// Writes `report` to its file in `dir` (atomically, mode 0600).
pub fn write_report(dir: &Path, report: &StatusReport) -> Result<(), StatusError> {
    let text = simd_json::to_string_pretty(report).map_err(|error| StatusError::Corrupt {
        path: status_path(dir, &report.tenant),
        reason: error.to_string(),
    })?;
    write_atomically(dir, &status_path(dir, &report.tenant), text.as_bytes())?;
    Ok(())
}

/// Every status file in `dir`, sorted by tenant.
pub fn read_reports(dir: &Path) -> Result<Vec<StatusReport>, StatusError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StatusError::Read { path, source }
    };
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let path = entry.map_err(read_error(dir))?.path();
        let is_status = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(STATUS_SUFFIX));
        if !is_status {
            continue;
        }
        let mut bytes = std::fs::read(&path).map_err(read_error(&path))?;
        let report: StatusReport =
            simd_json::from_slice(&mut bytes).map_err(|error| StatusError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        reports.push(report);
    }
    if reports.is_empty() {
        return Err(StatusError::Empty(dir.to_owned()));
    }
    reports.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(reports)
}

fn ago(now_ms: i64, ms: i64) -> String {
    let seconds = u64::try_from((now_ms - ms) / 1000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// The reports as a table for people.
pub fn render_text(reports: &[StatusReport], now_ms: i64) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(
            out,
            "{} (pid {}, updated {} ago)",
            report.tenant,
            report.pid,
            ago(now_ms, report.updated_ms)
        );
        for (name, link) in [("api", &report.api), ("syslog", &report.syslog)] {
            let _ = write!(out, "  {name:<7} {}", link.state);
            if let Some(since) = link.link.failing_since_ms {
                let _ = write!(out, ", failing for {}", ago(now_ms, since));
            } else if let Some(ok) = link.link.last_success_ms {
                let _ = write!(out, ", last success {} ago", ago(now_ms, ok));
            }
            out.push('\n');
            if let (Some(error), Some(at)) = (&link.link.last_error, link.link.last_error_ms) {
                let _ = writeln!(
                    out,
                    "          last error ({}): {error}",
                    crate::syslog::iso_string(at)
                );
            }
        }
        for kind in &report.data_types {
            let _ = write!(
                out,
                "  {:<11} fetched {}, sent {}",
                kind.data_type, kind.fetched, kind.sent
            );
            match kind.checkpoint_ms {
                Some(ms) => {
                    let _ = writeln!(out, ", delivered up to {}", crate::syslog::iso_string(ms));
                }
                None => out.push('\n'),
            }
        }
    }
    out
}

/// Prometheus text exposition of every tenant's counters.
pub fn render_metrics(tenants: &[Arc<TenantStatus>], now_ms: i64) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP siem_agent_{name} {help}");
            let _ = writeln!(out, "# TYPE siem_agent_{name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "siem_agent_{name}{{{labels}}} {value}");
            }
        };
    let per_kind = |read: &dyn Fn(&TenantStatus, StreamKind) -> Option<f64>| {
        let mut rows = Vec::new();
        for t in tenants {
            for &kind in &t.kinds {
                if let Some(value) = read(t, kind) {
                    rows.push((
                        format!(
                            "tenant=\"{}\",data_type=\"{}\"",
                            escape_label(&t.tenant),
                            kind.name()
                        ),
                        value,
                    ));
                }
            }
        }
        rows
    };
    let per_tenant = |read: &dyn Fn(&TenantStatus) -> Option<f64>| {
        tenants
            .iter()
            .filter_map(|t| read(t).map(|v| (format!("tenant=\"{}\"", escape_label(&t.tenant)), v)))
            .collect::<Vec<_>>()
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    family(
        "records_fetched_total",
        "counter",
        "Records fetched from the API and taken as new.",
        &mut per_kind(&|t, k| Some(load(&t.counters(k).fetched))).into_iter(),
    );
    family(
        "records_sent_total",
        "counter",
        "Records whose CEF lines the receiver confirmed.",
        &mut per_kind(&|t, k| Some(load(&t.counters(k).sent))).into_iter(),
    );
    family(
        "records_dropped_total",
        "counter",
        "Malformed records skipped (not valid JSON objects).",
        &mut per_kind(&|t, k| Some(load(&t.counters(k).dropped))).into_iter(),
    );
    family(
        "checkpoint_lag_seconds",
        "gauge",
        "Seconds between now and the time up to which everything is delivered and checkpointed.",
        &mut per_kind(&|t, k| {
            let at = t.counters(k).checkpoint_ms.load(Ordering::Relaxed);
            (at != i64::MIN).then(|| ((now_ms - at).max(0) as f64) / 1000.0)
        })
        .into_iter(),
    );
    let client = |read: fn(&ClientStats) -> &AtomicU64| {
        per_tenant(&move |t: &TenantStatus| t.client.get().map(|c| load(read(c))))
    };
    family(
        "api_requests_total",
        "counter",
        "List requests sent to the API.",
        &mut client(|c| &c.requests).into_iter(),
    );
    family(
        "api_throttled_total",
        "counter",
        "HTTP 429 answers from the API.",
        &mut client(|c| &c.throttled).into_iter(),
    );
    family(
        "api_retries_total",
        "counter",
        "Requests retried after an error.",
        &mut client(|c| &c.retries).into_iter(),
    );
    family(
        "api_bytes_total",
        "counter",
        "Response bytes read from the API.",
        &mut client(|c| &c.bytes).into_iter(),
    );
    let sink = |read: fn(&SinkHealth) -> &AtomicU64| {
        per_tenant(&move |t: &TenantStatus| t.sink.get().map(|s| load(read(s))))
    };
    family(
        "syslog_lines_total",
        "counter",
        "Lines the receiver confirmed.",
        &mut sink(|s| &s.counters.confirmed).into_iter(),
    );
    family(
        "syslog_bytes_total",
        "counter",
        "Bytes of confirmed lines.",
        &mut sink(|s| &s.counters.confirmed_bytes).into_iter(),
    );
    family(
        "syslog_dropped_total",
        "counter",
        "Lines lost: UDP datagrams the kernel refused.",
        &mut sink(|s| &s.counters.dropped).into_iter(),
    );
    family(
        "syslog_truncated_total",
        "counter",
        "Lines cut to the maximum message size.",
        &mut sink(|s| &s.counters.truncated).into_iter(),
    );
    family(
        "syslog_resent_total",
        "counter",
        "Lines sent again after a connection failed (possible duplicates).",
        &mut sink(|s| &s.counters.resent).into_iter(),
    );
    family(
        "syslog_reconnects_total",
        "counter",
        "Connections to the receiver after the first.",
        &mut sink(|s| &s.counters.reconnects).into_iter(),
    );
    let mut depths = Vec::new();
    for t in tenants {
        for (channel, read) in t.depths.lock().iter() {
            depths.push((
                format!(
                    "tenant=\"{}\",channel=\"{channel}\"",
                    escape_label(&t.tenant)
                ),
                read() as f64,
            ));
        }
    }
    family(
        "channel_depth",
        "gauge",
        "Items waiting in a pipeline channel.",
        &mut depths.into_iter(),
    );
    let mut states = Vec::new();
    for t in tenants {
        for direction in Direction::ALL {
            let state = t.link(direction, now_ms).state(now_ms);
            for candidate in [
                State::Created,
                State::Connected,
                State::ConnectionError,
                State::Disconnected,
            ] {
                states.push((
                    format!(
                        "tenant=\"{}\",direction=\"{}\",state=\"{candidate}\"",
                        escape_label(&t.tenant),
                        direction.as_str()
                    ),
                    f64::from(u8::from(state == candidate)),
                ));
            }
        }
    }
    family(
        "link_state",
        "gauge",
        "1 for the current state of each direction of each tenant.",
        &mut states.into_iter(),
    );
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn reports_round_trip_through_files_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("siem-agent-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let status = TenantStatus::new("a/b \"c\"", &[StreamKind::Alerts]);
        status.update(Direction::Api, |l| l.failed(1_000, "HTTP 503"));
        status
            .counters(StreamKind::Alerts)
            .sent
            .store(7, Ordering::Relaxed);
        let report = status.report(2_000);
        write_report(&dir, &report).expect("written");
        let read = read_reports(&dir).expect("read");
        assert_eq!(read, vec![report.clone()]);
        let mode = std::fs::metadata(status_path(&dir, &report.tenant))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let later = read[0].clone().at(1_000 + 3 * HOUR);
        assert_eq!(later.api.state, State::ConnectionError);
        let text = render_text(&[later], 1_000 + 3 * HOUR);
        assert!(
            text.contains("api     Connection error, failing for 3h"),
            "{text}"
        );
        assert!(
            text.contains("last error (1970-01-01T00:00:01.000Z): HTTP 503"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn metrics_escape_labels_and_mark_one_state() {
        let status = Arc::new(TenantStatus::new("x\"y", &[StreamKind::Activities]));
        status
            .counters(StreamKind::Activities)
            .fetched
            .store(42, Ordering::Relaxed);
        let text = render_metrics(&[status], 0);
        assert!(text.contains(
            "siem_agent_records_fetched_total{tenant=\"x\\\"y\",data_type=\"activities\"} 42"
        ));
        let ones = text
            .lines()
            .filter(|l| l.starts_with("siem_agent_link_state") && l.ends_with(" 1"))
            .count();
        assert_eq!(ones, 2, "one state per direction:\n{text}");
    }
}
