//! What the agent asks Microsoft Graph, and what Graph's answers mean.
//!
//! The requests are fixed by the project's spec: `alerts_v2` filtered on
//! one time field over a window, at most 1,000 alerts a page; and one
//! hunting query shape over `CloudAppEvents` (the simulator understands
//! exactly this shape). Times are written as Graph writes them, with seven
//! fractional digits.
//!
//! Every answer that is not a page is classified once, here, into what the
//! cursor or the client does next: wait (429 and 503, and the hunting
//! quotas, which are never critical), split the window (a query too heavy
//! for the CPU quota, or a result too large), refresh the token (401), or
//! fail clearly (403 naming the permission to grant, and any other 4xx,
//! which is a bug in our request).

use std::time::Duration;

use simd_json::prelude::*;

use super::window::Window;
use crate::clock::{write_iso_time, MAX_TIMESTAMP_MS};

/// Path of the alerts list, after the Graph base URL.
pub const ALERTS_PATH: &str = "/v1.0/security/alerts_v2";
/// Path of the hunting endpoint, after the Graph base URL.
pub const HUNTING_PATH: &str = "/v1.0/security/runHuntingQuery";
/// The key of an alerts page's link to its next page.
pub const NEXT_LINK: &str = "@odata.nextLink";
/// The largest `$top` `alerts_v2` accepts.
pub const MAX_ALERTS_PAGE: u32 = 1_000;
/// The largest `take` a hunting query may have (rows per result).
pub const MAX_HUNTING_ROWS: u32 = 100_000;
/// Rows a hunting query asks for unless configured.
pub const DEFAULT_HUNTING_ROWS: u32 = 10_000;
/// The permission `alerts_v2` needs.
pub const ALERTS_PERMISSION: &str = "SecurityAlert.Read.All";
/// The permission hunting needs.
pub const HUNTING_PERMISSION: &str = "ThreatHunting.Read.All";
/// How long to wait after the CPU quota refused a window, without
/// `Retry-After`: the quota is counted over 15-minute cycles. (A 429
/// without `Retry-After`, the calls-per-minute quota included, is waited
/// out with the retry backoff instead: a rolling minute frees a call
/// within seconds, and a flat minute's wait would cost a backfill at the
/// limit a minute for every call it went over by a moment.)
pub const QUOTA_WAIT: Duration = Duration::from_secs(60);

/// Which alert versions become lines (`graph_alerts_versions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertVersions {
    /// One line per alert: windows over `createdDateTime`, deduplicated by
    /// id.
    New,
    /// One line per version: windows over `lastUpdateDateTime`,
    /// deduplicated by id and update time.
    All,
}

impl AlertVersions {
    /// The time field the windows are over.
    pub fn time_field(self) -> &'static str {
        match self {
            AlertVersions::New => "createdDateTime",
            AlertVersions::All => "lastUpdateDateTime",
        }
    }
}

/// `ms` (clamped to what the text can hold) as Graph writes times:
/// `2026-12-01T10:00:00.0000000Z`.
pub fn graph_time(ms: i64) -> String {
    let mut text = Vec::with_capacity(28);
    write_iso_time(&mut text, ms.clamp(0, MAX_TIMESTAMP_MS));
    text.pop(); // the `Z`
    text.extend_from_slice(b"0000Z");
    String::from_utf8_lossy(&text).into_owned()
}

/// The hunting query for `window`, cut at `take` rows (the spec's one
/// shape).
pub fn hunting_query(window: Window, take: u32) -> String {
    format!(
        "CloudAppEvents | where Timestamp >= datetime({}) and Timestamp < datetime({}) \
         | order by Timestamp asc, ReportId asc | take {take}",
        graph_time(window.from),
        graph_time(window.to)
    )
}

/// The JSON body of a hunting request for `window`: the query and the
/// same span as `Timespan`.
pub fn hunting_body(window: Window, take: u32) -> String {
    let timespan = format!("{}/{}", graph_time(window.from), graph_time(window.to));
    simd_json::json!({
        "Query": hunting_query(window, take),
        "Timespan": timespan,
    })
    .encode()
}

/// The OData filter of an alerts page: the window over the mode's time
/// field, and `extra` (the configured filter) when not empty.
pub fn alerts_filter(versions: AlertVersions, window: Window, extra: &str) -> String {
    let field = versions.time_field();
    let mut filter = format!(
        "{field} ge {} and {field} lt {}",
        graph_time(window.from),
        graph_time(window.to)
    );
    let extra = extra.trim();
    if !extra.is_empty() {
        filter.push_str(" and (");
        filter.push_str(extra);
        filter.push(')');
    }
    filter
}

/// The URL of the first page of alerts in `window`, `top` at a time.
pub fn alerts_url(
    graph_url: &str,
    versions: AlertVersions,
    window: Window,
    top: u32,
    extra_filter: &str,
) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("$filter", &alerts_filter(versions, window, extra_filter))
        .append_pair("$top", &top.min(MAX_ALERTS_PAGE).to_string())
        .finish();
    format!("{}{ALERTS_PATH}?{query}", graph_url.trim_end_matches('/'))
}

/// What an answer that is not a page means for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphAnswer {
    /// Throttled or briefly unavailable: wait this long, then ask again.
    /// Never counted as a critical failure.
    Wait {
        /// How long (the server's `Retry-After`, else a default).
        wait: Duration,
        /// The hunting quota was named (a metric counts these apart).
        quota: bool,
    },
    /// The window is too much for one answer (CPU quota or result size):
    /// split it; `wait` before the next request when the CPU quota ran
    /// out.
    Split {
        /// How long to wait first (zero for a result that is too large).
        wait: Duration,
    },
    /// The token was refused: get a new one once, then fail.
    Unauthorized(String),
    /// The application lacks a permission: only an administrator can fix
    /// it (grant it and consent), so the message names it.
    Forbidden {
        /// The permission to grant.
        permission: &'static str,
        /// What Graph said.
        message: String,
    },
    /// A server error: retry with backoff, counted as a failure.
    ServerError(String),
    /// Any other refusal: our request is wrong; fail clearly.
    Refused(String),
}

/// Graph's error text from a body `{"error": {"code": .., "message": ..}}`,
/// or the body itself (cut) when it is not one.
pub fn error_message(body: &[u8]) -> String {
    let mut bytes = body.to_vec();
    let parsed = simd_json::to_owned_value(&mut bytes).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error.and_then(|e| e.get_str("code")).unwrap_or("");
    let message = error.and_then(|e| e.get_str("message")).unwrap_or("");
    match (code, message) {
        ("", "") => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        (code, "") => code.to_owned(),
        ("", message) => message.to_owned(),
        (code, message) => format!("{code}: {message}"),
    }
}

/// Classifies an answer with HTTP `status` (not 2xx), its `Retry-After`
/// in seconds if any, and its body; `permission` is the one the endpoint
/// needs.
pub fn classify(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
    permission: &'static str,
) -> GraphAnswer {
    let message = error_message(body);
    let lower = message.to_ascii_lowercase();
    let quota = lower.contains("quota");
    let told = retry_after.map(Duration::from_secs);
    match status {
        429 | 503 => GraphAnswer::Wait {
            wait: told.unwrap_or(Duration::ZERO),
            quota,
        },
        400 if lower.contains("exceeded the allowed limits") => GraphAnswer::Split {
            wait: told.unwrap_or(QUOTA_WAIT),
        },
        400 if lower.contains("exceeded the allowed result size") => GraphAnswer::Split {
            wait: Duration::ZERO,
        },
        401 => GraphAnswer::Unauthorized(message),
        403 => GraphAnswer::Forbidden {
            permission,
            message,
        },
        500..=599 => GraphAnswer::ServerError(format!("HTTP {status}: {message}")),
        _ => GraphAnswer::Refused(format!("HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Window = Window {
        from: 1_764_496_800_000, // 2025-11-30T10:00:00Z
        to: 1_764_497_100_123,
    };

    #[test]
    fn the_hunting_request_is_the_specs_one_shape() {
        assert_eq!(
            hunting_query(WINDOW, 10_000),
            "CloudAppEvents | where Timestamp >= datetime(2025-11-30T10:00:00.0000000Z) \
             and Timestamp < datetime(2025-11-30T10:05:00.1230000Z) \
             | order by Timestamp asc, ReportId asc | take 10000"
        );
        let mut body = hunting_body(WINDOW, 5).into_bytes();
        let body = simd_json::to_owned_value(&mut body).expect("JSON");
        assert_eq!(
            body.get_str("Timespan"),
            Some("2025-11-30T10:00:00.0000000Z/2025-11-30T10:05:00.1230000Z")
        );
        assert!(body
            .get_str("Query")
            .is_some_and(|q| q.ends_with("| take 5")));
    }

    #[test]
    fn graph_times_read_back_as_the_same_millisecond() {
        for ms in [0, 1, WINDOW.from, WINDOW.to, MAX_TIMESTAMP_MS] {
            assert_eq!(crate::clock::parse_iso_utc_ms(&graph_time(ms)), Some(ms));
        }
    }

    #[test]
    fn alerts_pages_filter_on_the_modes_field_and_cap_top() {
        assert_eq!(
            alerts_filter(
                AlertVersions::New,
                WINDOW,
                " serviceSource eq 'microsoftDefenderForCloudApps' "
            ),
            "createdDateTime ge 2025-11-30T10:00:00.0000000Z and createdDateTime lt \
             2025-11-30T10:05:00.1230000Z and (serviceSource eq 'microsoftDefenderForCloudApps')"
        );
        assert_eq!(
            alerts_filter(AlertVersions::All, WINDOW, ""),
            "lastUpdateDateTime ge 2025-11-30T10:00:00.0000000Z and lastUpdateDateTime lt \
             2025-11-30T10:05:00.1230000Z"
        );
        let url = alerts_url(
            "https://graph.microsoft.us/",
            AlertVersions::New,
            WINDOW,
            5_000,
            "",
        );
        assert!(
            url.starts_with("https://graph.microsoft.us/v1.0/security/alerts_v2?%24filter=createdDateTime+ge+2025-11-30T10%3A00%3A00.0000000Z+and+"),
            "{url}"
        );
        assert!(url.ends_with("&%24top=1000"), "{url}");
    }

    #[test]
    fn answers_are_classified_as_the_spec_says() {
        let graph =
            |message: &str| format!(r#"{{"error":{{"code":"BadRequest","message":"{message}"}}}}"#);
        assert_eq!(
            classify(
                429,
                Some(7),
                graph("API calls quota exceeded! maximum allowed 45 per 00:01:00").as_bytes(),
                HUNTING_PERMISSION
            ),
            GraphAnswer::Wait {
                wait: Duration::from_secs(7),
                quota: true
            }
        );
        assert_eq!(
            classify(429, None, b"", ALERTS_PERMISSION),
            GraphAnswer::Wait {
                wait: Duration::ZERO,
                quota: false
            }
        );
        assert_eq!(
            classify(503, Some(2), b"busy", ALERTS_PERMISSION),
            GraphAnswer::Wait {
                wait: Duration::from_secs(2),
                quota: false
            }
        );
        let cpu = graph("Query execution has exceeded the allowed limits. The query execution was preempted due to high CPU and/or memory resource consumption.");
        assert_eq!(
            classify(400, None, cpu.as_bytes(), HUNTING_PERMISSION),
            GraphAnswer::Split { wait: QUOTA_WAIT }
        );
        let size = graph("Query execution has exceeded the allowed result size.");
        assert_eq!(
            classify(400, None, size.as_bytes(), HUNTING_PERMISSION),
            GraphAnswer::Split {
                wait: Duration::ZERO
            }
        );
        assert_eq!(
            classify(
                403,
                None,
                graph("Missing role permissions").as_bytes(),
                HUNTING_PERMISSION
            ),
            GraphAnswer::Forbidden {
                permission: HUNTING_PERMISSION,
                message: "BadRequest: Missing role permissions".into()
            }
        );
        assert!(matches!(
            classify(400, None, graph("Syntax error").as_bytes(), HUNTING_PERMISSION),
            GraphAnswer::Refused(m) if m == "HTTP 400: BadRequest: Syntax error"
        ));
        assert!(matches!(
            classify(401, None, b"{}", ALERTS_PERMISSION),
            GraphAnswer::Unauthorized(_)
        ));
        assert!(
            matches!(classify(502, None, b"<html>", ALERTS_PERMISSION), GraphAnswer::ServerError(m) if m == "HTTP 502: <html>")
        );
    }
}
