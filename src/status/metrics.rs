//! The status for monitoring: Prometheus text on `/metrics` and a
//! pass/fail answer on `/healthz`, computed from the live
//! [`TenantStatus`]es on every request (the server thread itself is the
//! pipeline's).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::model::{State, TenantStatus};
use crate::data_type::DataType;
use crate::sink::SinkHealth;
use crate::source::cas::client::ClientStats;
use crate::source::graph::client::GraphStats;

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
    let per_kind = |read: &dyn Fn(&TenantStatus, DataType) -> Option<f64>| {
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
        "Malformed records skipped (not JSON objects, or Graph records without time or id).",
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
    let graph = |read: fn(&GraphStats) -> &AtomicU64| {
        per_tenant(&move |t: &TenantStatus| t.graph.get().map(|c| load(read(c))))
    };
    family(
        "graph_requests_total",
        "counter",
        "Requests sent to Microsoft Graph.",
        &mut graph(|c| &c.requests).into_iter(),
    );
    family(
        "graph_throttled_total",
        "counter",
        "HTTP 429 and 503 answers from Microsoft Graph, waited out.",
        &mut graph(|c| &c.throttled).into_iter(),
    );
    family(
        "graph_quota_waits_total",
        "counter",
        "Throttling answers naming a hunting quota.",
        &mut graph(|c| &c.quota_waits).into_iter(),
    );
    family(
        "graph_windows_split_total",
        "counter",
        "Time windows split because an answer was full or too heavy.",
        &mut graph(|c| &c.splits).into_iter(),
    );
    family(
        "graph_retries_total",
        "counter",
        "Graph requests retried after a network or server error.",
        &mut graph(|c| &c.retries).into_iter(),
    );
    family(
        "records_late_total",
        "counter",
        "Graph records delivered because the late span was asked for again.",
        &mut per_kind(&|t, k| k.is_graph().then(|| load(&t.counters(k).late))).into_iter(),
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
        "syslog_failures_in_a_row",
        "gauge",
        "Connection failures since a line was last confirmed.",
        &mut sink(|s| &s.counters.failures_in_a_row).into_iter(),
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
        for direction in t.directions() {
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

/// The answer to a request for `path`: status code, body, content type.
/// `/healthz` fails (503) while any link of any tenant is in `Connection
/// error` or `Disconnected`, and names them.
pub fn answer(
    path: &str,
    tenants: &[Arc<TenantStatus>],
    now_ms: i64,
) -> (u16, String, &'static str) {
    match path {
        "/metrics" => (
            200,
            render_metrics(tenants, now_ms),
            "text/plain; version=0.0.4",
        ),
        "/healthz" => {
            let failing: Vec<String> = tenants
                .iter()
                .flat_map(|t| {
                    t.directions().filter_map(|d| {
                        let state = t.link(d, now_ms).state(now_ms);
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
    }
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
    use crate::status::model::Direction;

    #[test]
    fn metrics_escape_labels_and_mark_one_state() {
        let status = Arc::new(TenantStatus::new("x\"y", &[DataType::Activities]));
        status
            .counters(DataType::Activities)
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

    #[test]
    fn a_graph_tenant_reports_its_graph_link_and_counters_and_no_api_link() {
        let status = Arc::new(TenantStatus::new(
            "g",
            &[DataType::CloudAppEvents, DataType::GraphAlerts],
        ));
        let stats = Arc::new(GraphStats::default());
        stats.splits.store(3, Ordering::Relaxed);
        stats.quota_waits.store(2, Ordering::Relaxed);
        let _ = status.graph.set(stats);
        status
            .counters(DataType::CloudAppEvents)
            .late
            .store(5, Ordering::Relaxed);
        let text = render_metrics(&[Arc::clone(&status)], 0);
        for expected in [
            "siem_agent_graph_windows_split_total{tenant=\"g\"} 3",
            "siem_agent_graph_quota_waits_total{tenant=\"g\"} 2",
            "siem_agent_records_late_total{tenant=\"g\",data_type=\"cloud-app-events\"} 5",
            "siem_agent_link_state{tenant=\"g\",direction=\"graph\",state=\"Created\"} 1",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        assert!(!text.contains("direction=\"api\""), "{text}");
        status.update(Direction::Graph, |l| l.failed(0, "HTTP 403"));
        let (code, body, _) = answer("/healthz", &[status], 3 * 3_600_000);
        assert_eq!((code, body.as_str()), (503, "g graph: Connection error\n"));
    }
}
