//! The simulator's Microsoft Graph endpoints: `alerts_v2` and
//! `runHuntingQuery` over `CloudAppEvents`, behaving the way the project's
//! spec (`graph-sources.md`) describes the real ones.
//!
//! Records come from the same generated streams as the legacy endpoints:
//! the activity stream's records are the hunting rows, the alert stream's
//! the alerts. A record's ingestion time is when it becomes visible, so
//! records show up late, as on the real service, and same-millisecond
//! bursts come from the streams' bursts. Alerts are updated after they are
//! created (up to two updates, [`GraphConfig::update_every_ms`] apart),
//! which moves their `lastUpdateDateTime`.
//!
//! Behaviour a client must cope with: `$top` over 1,000 is refused; pages
//! are newest first, may hold fewer alerts than asked for
//! ([`GraphConfig::alerts_page_cap`]) and carry an `@odata.nextLink` with
//! `$skip`; a hunting result is cut at the query's `take`, and at
//! [`GraphConfig::row_cap`], without notice; a window with more matching
//! rows than [`GraphConfig::cpu_rows_limit`] is refused as too heavy for
//! the CPU quota, and a result over [`GraphConfig::result_bytes_limit`] as
//! too large; a permission can be switched off (403); throttling answers
//! 429 with the quota message and the configured `Retry-After`.

use std::fmt::Write as _;

use simd_json::prelude::*;

use super::data::{mix, StreamConfig, APPS};
use crate::clock::parse_iso_utc_ms;
use crate::source::graph::request::{
    graph_time, ALERTS_PATH, ALERTS_PERMISSION, HUNTING_PATH, HUNTING_PERMISSION, MAX_ALERTS_PAGE,
    MAX_HUNTING_ROWS,
};
use crate::source::graph::window::Window;

/// The Graph endpoints' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphConfig {
    /// Rows a hunting result holds at most, whatever the query's `take`
    /// (the real service's limit is 100,000).
    pub row_cap: u32,
    /// A hunting window with more matching rows than this is refused as
    /// too heavy for the CPU quota (`None`: never).
    pub cpu_rows_limit: Option<u64>,
    /// `Retry-After` seconds sent with the CPU quota's 400 (the real
    /// service sends none; tests shorten the agent's wait with it).
    pub heavy_retry_after: Option<u64>,
    /// A hunting result longer than this many bytes is refused as too
    /// large (the real limit is about 124 MB; `None`: never).
    pub result_bytes_limit: Option<usize>,
    /// Alerts per page at most, whatever the request's `$top` (Graph may
    /// page on its own); the rest follows through `@odata.nextLink`.
    pub alerts_page_cap: u32,
    /// Permissions switched off: requests needing them get 403.
    pub denied: Vec<String>,
    /// Time between an alert's updates (ms).
    pub update_every_ms: i64,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            row_cap: MAX_HUNTING_ROWS,
            cpu_rows_limit: None,
            heavy_retry_after: None,
            result_bytes_limit: None,
            alerts_page_cap: MAX_ALERTS_PAGE,
            denied: Vec::new(),
            update_every_ms: 20 * 60_000,
        }
    }
}

/// An answer: status line, extra headers, body.
pub type Answer = (&'static str, String, Vec<u8>);

/// Whether `path` is one of the Graph endpoints.
pub fn is_graph_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    path == ALERTS_PATH || path == HUNTING_PATH
}

/// Graph's error body.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    simd_json::json!({"error": {"code": code, "message": message}})
        .encode()
        .into_bytes()
}

fn bad_request(message: &str) -> Answer {
    (
        "400 Bad Request",
        String::new(),
        error_body("BadRequest", message),
    )
}

/// The permission `path` needs.
pub fn permission(path: &str) -> &'static str {
    if path.starts_with(HUNTING_PATH) {
        HUNTING_PERMISSION
    } else {
        ALERTS_PERMISSION
    }
}

/// A 403 when the permission `path` needs is switched off.
pub fn denied(path: &str, config: &GraphConfig) -> Option<Answer> {
    let needed = permission(path);
    config.denied.iter().any(|p| p == needed).then(|| {
        (
            "403 Forbidden",
            String::new(),
            error_body(
                "Forbidden",
                &format!("Missing application permission {needed}"),
            ),
        )
    })
}

/// The 429 a throttled Graph request gets.
pub fn throttled(path: &str, retry_after: Option<u64>) -> Answer {
    let message = if path.starts_with(HUNTING_PATH) {
        "API calls quota exceeded! maximum allowed 45 per 00:01:00"
    } else {
        "Too many requests"
    };
    let retry = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    (
        "429 Too Many Requests",
        retry,
        error_body("TooManyRequests", message),
    )
}

// ---------------------------------------------------------------- hunting

/// The window and `take` of a query in the spec's one shape.
pub fn parse_hunting_query(query: &str) -> Option<(Window, u32)> {
    let rest = query.strip_prefix("CloudAppEvents | where Timestamp >= datetime(")?;
    let (from, rest) = rest.split_once(") and Timestamp < datetime(")?;
    let (to, rest) = rest.split_once(") | order by Timestamp asc, ReportId asc | take ")?;
    let take = rest.parse().ok()?;
    let window = Window {
        from: parse_iso_utc_ms(from)?,
        to: parse_iso_utc_ms(to)?,
    };
    Some((window, take))
}

/// A hunting row's `ReportId`.
pub fn report_id(stream: &StreamConfig, index: u64) -> String {
    let a = mix(stream.seed, index, 31);
    let b = mix(stream.seed, index, 32);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a as u32,
        (a >> 32) as u16,
        (b & 0xfff),
        ((b >> 12) & 0xfff),
        index & 0xffff_ffff_ffff
    )
}

/// Appends hunting row `index` as compact JSON.
pub fn write_event(stream: &StreamConfig, index: u64, out: &mut String) {
    let (app_id, app_name) = stream.app(index);
    let user = mix(stream.seed, index, 33) % 5000;
    let ip = mix(stream.seed, index, 34);
    let address = if ip.is_multiple_of(10) {
        format!("2001:db8::{:x}:{:x}", (ip >> 16) & 0xffff, ip & 0xffff)
    } else {
        format!("203.0.{}.{}", (ip >> 8) & 0xff, ip & 0xff)
    };
    let object = if stream.is_hostile(index) {
        "Ünïcødé ✓ a=b c|d back\\slash line1\nline2".to_owned()
    } else {
        format!("report-{index}.xlsx")
    };
    // Some rows carry the actor as an object id, the UPN only in the raw
    // event, as the real table does.
    let upn = format!("user{user}@contoso.com");
    let account_id = if user.is_multiple_of(7) {
        format!("00000000-0000-4000-8000-{user:012}")
    } else {
        upn.clone()
    };
    let row = simd_json::json!({
        "Timestamp": graph_time(stream.timestamp(index)),
        "ActionType": "FileDownloaded",
        "Application": app_name,
        "ApplicationId": app_id,
        "AccountObjectId": format!("11111111-2222-4333-8444-{user:012}"),
        "AccountId": account_id,
        "AccountDisplayName": format!("User {user}"),
        "IPAddress": address,
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
        "ActivityType": "Download",
        "ActivityObjects": [{"Type": "File", "Name": object}],
        "ObjectName": object,
        "CountryCode": "NL",
        "RawEventData": {"UserId": upn, "Operation": "FileDownloaded"},
        "ReportId": report_id(stream, index),
    });
    out.push_str(&row.encode());
}

/// Answers a `runHuntingQuery` body at `now_ms`.
pub fn hunting(stream: &StreamConfig, config: &GraphConfig, body: &[u8], now_ms: i64) -> Answer {
    let mut bytes = body.to_vec();
    let Ok(request) = simd_json::to_owned_value(&mut bytes) else {
        return bad_request("The request body is not JSON.");
    };
    let Some((window, take)) = request.get_str("Query").and_then(parse_hunting_query) else {
        return bad_request("Query could not be parsed: only the agent's query shape is served.");
    };
    if take > MAX_HUNTING_ROWS {
        return bad_request("The take operator is limited to 100000 rows.");
    }
    // Rows in the window that are visible now, by (Timestamp, ReportId).
    let mut rows: Vec<(i64, String, u64)> = Vec::new();
    let mut index = stream.first_index_at_or_after(window.from);
    let mut matching = 0u64;
    while stream.timestamp(index) < window.to && stream.timestamp(index) <= now_ms {
        if stream.created(index) <= now_ms {
            matching += 1;
            rows.push((stream.timestamp(index), report_id(stream, index), index));
        }
        index += 1;
    }
    if config.cpu_rows_limit.is_some_and(|limit| matching > limit) {
        let (status, _, body) = bad_request(
            "Query execution has exceeded the allowed limits. The query execution was \
             preempted. This could possibly be due to high CPU and/or memory resource \
             consumption.",
        );
        let retry = config
            .heavy_retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        return (status, retry, body);
    }
    rows.sort_unstable();
    rows.truncate(take.min(config.row_cap) as usize);
    let mut out = String::from(
        "{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults\",\"schema\":[{\"name\":\"Timestamp\",\"type\":\"DateTime\"},{\"name\":\"ReportId\",\"type\":\"String\"}],\"results\":[",
    );
    for (n, &(_, _, index)) in rows.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_event(stream, index, &mut out);
    }
    out.push_str("]}");
    if config
        .result_bytes_limit
        .is_some_and(|limit| out.len() > limit)
    {
        return bad_request("Query execution has exceeded the allowed result size.");
    }
    ("200 OK", String::new(), out.into_bytes())
}

// ----------------------------------------------------------------- alerts

/// An alert's `id`.
pub fn alert_id(stream: &StreamConfig, index: u64) -> String {
    format!("da{:016x}{:016x}", stream.seed, index)
}

/// How many times alert `index` is updated (0 to 2), each
/// [`GraphConfig::update_every_ms`] after the one before.
pub fn update_count(stream: &StreamConfig, index: u64) -> i64 {
    (mix(stream.seed, index, 41) % 3) as i64
}

/// The alert's last update time as of `now_ms` (its creation time if it
/// has not been updated yet).
fn updates(stream: &StreamConfig, config: &GraphConfig, index: u64, now_ms: i64) -> i64 {
    let created = stream.timestamp(index);
    let count = update_count(stream, index);
    (1..=count)
        .rev()
        .map(|k| created + k * config.update_every_ms)
        .find(|&t| t <= now_ms)
        .unwrap_or(created)
}

/// Appends alert `index` as `alerts_v2` writes it, as it stands at `now_ms`.
pub fn write_alert(
    stream: &StreamConfig,
    config: &GraphConfig,
    index: u64,
    now_ms: i64,
    out: &mut String,
) {
    let (app_id, app_name) = stream.app(index);
    let created = stream.timestamp(index);
    let updated = updates(stream, config, index, now_ms);
    let user = mix(stream.seed, index, 42) % 5000;
    let severity =
        ["informational", "low", "medium", "high"][(mix(stream.seed, index, 43) % 4) as usize];
    let status = if updated > created {
        "inProgress"
    } else {
        "new"
    };
    let second_app = APPS[(mix(stream.seed, index, 44) % APPS.len() as u64) as usize];
    let title = if stream.is_hostile(index) {
        "Ünïcødé ✓ a=b c|d back\\slash line1\nline2".to_owned()
    } else {
        "Impossible travel activity".to_owned()
    };
    let alert = simd_json::json!({
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert_id(stream, index),
        "incidentId": (40_000 + index).to_string(),
        "status": status,
        "severity": severity,
        "serviceSource": "microsoftDefenderForCloudApps",
        "detectorId": format!("5f01dce13de79160fbec{:04x}", index % 16),
        "title": title,
        "description": format!("The user user{user}@contoso.com did something unusual."),
        "category": "InitialAccess",
        "alertWebUrl": format!("https://security.microsoft.com/alerts/da{:016x}{index:016x}", stream.seed),
        "mitreTechniques": ["T1078"],
        "createdDateTime": graph_time(created),
        "lastUpdateDateTime": graph_time(updated),
        "firstActivityDateTime": graph_time(created - 60_000),
        "lastActivityDateTime": graph_time(created - 1_000),
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.userEvidence",
             "userAccount": {"accountName": format!("user{user}"), "userPrincipalName": format!("user{user}@contoso.com")}},
            {"@odata.type": "#microsoft.graph.security.cloudApplicationEvidence", "appId": app_id, "displayName": app_name},
            {"@odata.type": "#microsoft.graph.security.cloudApplicationEvidence", "appId": second_app.0, "displayName": second_app.1},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": format!("198.51.100.{}", index % 250)}
        ]
    });
    out.push_str(&alert.encode());
}

/// One condition of an `alerts_v2` filter the simulator understands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Condition {
    /// `<field> ge|lt <time>` on `createdDateTime` or `lastUpdateDateTime`.
    Time { updated: bool, ge: bool, ms: i64 },
    /// `serviceSource eq '<value>'`.
    Source(String),
}

fn parse_filter(filter: &str) -> Option<Vec<Condition>> {
    let mut conditions = Vec::new();
    for part in filter.split(" and ") {
        let part = part.trim().trim_start_matches('(').trim_end_matches(')');
        let mut words = part.splitn(3, ' ');
        let (field, operator, value) = (words.next()?, words.next()?, words.next()?);
        let condition = match (field, operator) {
            ("createdDateTime" | "lastUpdateDateTime", "ge" | "lt") => Condition::Time {
                updated: field == "lastUpdateDateTime",
                ge: operator == "ge",
                ms: parse_iso_utc_ms(value)?,
            },
            ("serviceSource", "eq") => {
                Condition::Source(value.strip_prefix('\'')?.strip_suffix('\'')?.to_owned())
            }
            _ => return None,
        };
        conditions.push(condition);
    }
    Some(conditions)
}

/// Answers `GET alerts_v2?<query>` at `now_ms`; `base` is the URL the
/// simulator serves, for `@odata.nextLink`.
pub fn alerts(
    stream: &StreamConfig,
    config: &GraphConfig,
    query: &str,
    base: &str,
    now_ms: i64,
) -> Answer {
    let mut filter = None;
    let mut top = 100u32;
    let mut skip = 0u64;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "$filter" => filter = Some(value.into_owned()),
            "$top" => match value.parse() {
                Ok(n) if n <= MAX_ALERTS_PAGE => top = n,
                _ => return bad_request("Invalid $top: the maximum is 1000."),
            },
            "$skip" => match value.parse() {
                Ok(n) => skip = n,
                Err(_) => return bad_request("Invalid $skip."),
            },
            _ => {}
        }
    }
    let conditions = match filter.as_deref().map(parse_filter) {
        Some(Some(conditions)) => conditions,
        Some(None) => return bad_request("Invalid filter clause."),
        None => Vec::new(),
    };
    let keep = |index: u64| {
        let created = stream.timestamp(index);
        let updated = updates(stream, config, index, now_ms);
        conditions.iter().all(|condition| match condition {
            Condition::Time {
                updated: on_update,
                ge,
                ms,
            } => {
                let time = if *on_update { updated } else { created };
                if *ge {
                    time >= *ms
                } else {
                    time < *ms
                }
            }
            Condition::Source(source) => source == "microsoftDefenderForCloudApps",
        })
    };
    // Newest first; an alert is listed once it is visible.
    let last = stream.first_index_at_or_after(now_ms.saturating_add(1));
    let matching: Vec<u64> = (0..last)
        .rev()
        .filter(|&index| stream.created(index) <= now_ms && keep(index))
        .collect();
    let page: Vec<u64> = matching
        .iter()
        .copied()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(top.min(config.alerts_page_cap) as usize)
        .collect();
    let mut out = String::from(
        "{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2\"",
    );
    let shown = skip.saturating_add(page.len() as u64);
    if (shown as usize) < matching.len() {
        let next: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("$filter", filter.as_deref().unwrap_or(""))
            .append_pair("$top", &top.to_string())
            .append_pair("$skip", &shown.to_string())
            .finish();
        let link = format!("{base}{ALERTS_PATH}?{next}");
        let _ = write!(
            out,
            ",\"@odata.nextLink\":{}",
            simd_json::OwnedValue::from(link).encode()
        );
    }
    out.push_str(",\"value\":[");
    for (n, &index) in page.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_alert(stream, config, index, now_ms, &mut out);
    }
    out.push_str("]}");
    ("200 OK", String::new(), out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_type::DataType;

    fn stream() -> StreamConfig {
        StreamConfig {
            kind: DataType::Activities,
            seed: 5,
            start_ms: 1_700_000_000_000,
            per_minute: 600,
            max_index_delay_ms: 60_000,
            burst_every: 100,
            burst_size: 20,
            hostile_every: 0,
        }
    }

    #[test]
    fn only_the_agents_query_shape_is_understood() {
        let query = crate::source::graph::request::hunting_query(
            Window {
                from: 1_700_000_000_000,
                to: 1_700_000_060_000,
            },
            500,
        );
        assert_eq!(
            parse_hunting_query(&query),
            Some((
                Window {
                    from: 1_700_000_000_000,
                    to: 1_700_000_060_000
                },
                500
            ))
        );
        assert_eq!(parse_hunting_query("CloudAppEvents | take 5"), None);
    }

    fn results(answer: &Answer) -> Vec<(i64, String)> {
        let mut body = answer.2.clone();
        let value = simd_json::to_owned_value(&mut body).expect("JSON");
        value
            .get_array("results")
            .expect("results")
            .iter()
            .map(|row| {
                (
                    parse_iso_utc_ms(row.get_str("Timestamp").expect("time")).expect("ISO"),
                    row.get_str("ReportId").expect("id").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn hunting_results_are_ordered_cut_without_notice_and_hide_what_is_not_visible_yet() {
        let stream = stream();
        let config = GraphConfig::default();
        let window = Window {
            from: stream.start_ms,
            to: stream.start_ms + 60_000,
        };
        let body = crate::source::graph::request::hunting_body(window, 100_000);
        let now = stream.start_ms + 10 * 60_000;
        let all = results(&hunting(&stream, &config, body.as_bytes(), now));
        assert_eq!(all.len(), 600, "a minute of 600 a minute, all visible");
        assert!(
            all.windows(2).all(|w| w[0] <= w[1]),
            "by Timestamp, ReportId"
        );
        let cut = hunting(
            &stream,
            &config,
            crate::source::graph::request::hunting_body(window, 7).as_bytes(),
            now,
        );
        assert_eq!(results(&cut), all[..7]);
        let capped = GraphConfig {
            row_cap: 3,
            ..GraphConfig::default()
        };
        assert_eq!(
            results(&hunting(&stream, &capped, body.as_bytes(), now)).len(),
            3
        );
        // Right after the window some rows are not indexed yet.
        let early = results(&hunting(
            &stream,
            &config,
            body.as_bytes(),
            stream.start_ms + 60_000,
        ));
        assert!(
            early.len() < all.len() && !early.is_empty(),
            "{}",
            early.len()
        );
        let heavy = GraphConfig {
            cpu_rows_limit: Some(100),
            ..GraphConfig::default()
        };
        let refused = hunting(&stream, &heavy, body.as_bytes(), now);
        assert_eq!(refused.0, "400 Bad Request");
        let too_many = crate::source::graph::request::hunting_body(window, 100_001);
        assert_eq!(
            hunting(&stream, &config, too_many.as_bytes(), now).0,
            "400 Bad Request"
        );
    }

    #[test]
    fn alert_pages_are_newest_first_with_next_links_and_refuse_large_tops() {
        let stream = StreamConfig {
            per_minute: 2,
            ..stream()
        };
        let config = GraphConfig::default();
        let now = stream.start_ms + 60 * 60_000;
        let window = Window {
            from: stream.start_ms,
            to: stream.start_ms + 30 * 60_000,
        };
        let url = crate::source::graph::request::alerts_url(
            "http://sim",
            crate::source::graph::request::AlertVersions::New,
            window,
            25,
            "serviceSource eq 'microsoftDefenderForCloudApps'",
        );
        let query = url.split_once('?').expect("query").1;
        let first = alerts(&stream, &config, query, "http://sim", now);
        assert_eq!(first.0, "200 OK");
        let mut body = first.2;
        let page = simd_json::to_owned_value(&mut body).expect("JSON");
        let created: Vec<i64> = page
            .get_array("value")
            .expect("value")
            .iter()
            .map(|a| parse_iso_utc_ms(a.get_str("createdDateTime").expect("time")).expect("ISO"))
            .collect();
        assert_eq!(created.len(), 25);
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert!(created.iter().all(|&t| window.contains(t)));
        let next = page.get_str("@odata.nextLink").expect("a next page");
        let next_query = next.split_once('?').expect("query").1;
        let second = alerts(&stream, &config, next_query, "http://sim", now);
        let mut body = second.2;
        let page = simd_json::to_owned_value(&mut body).expect("JSON");
        // 60 alerts in the window: pages of 25, 25 and 10.
        assert_eq!(page.get_array("value").expect("value").len(), 25);
        assert!(page.get("@odata.nextLink").is_some());
        let too_big = alerts(&stream, &config, "$top=1001", "http://sim", now);
        assert_eq!(too_big.0, "400 Bad Request");
        assert_eq!(
            alerts(&stream, &config, "$filter=title eq 'x'", "http://sim", now).0,
            "400 Bad Request"
        );
    }
}
