//! The Graph cursor and client against the simulator's Graph endpoints,
//! over real HTTP on loopback: backfills that split windows until each
//! answer fits, a second poll that asks the late span again, and the
//! client's answers to refusals. (The pipeline does not run Graph data
//! types yet; these tests drive the source's parts directly.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use siem_agent::clock::{now_ms, parse_iso_utc_ms};
use siem_agent::simulator::{Simulator, SimulatorConfig};
use siem_agent::source::budget::RequestBudget;
use siem_agent::source::entra::{EntraApp, Secret};
use siem_agent::source::graph::client::{Call, GraphClient, GraphClientConfig, GraphError};
use siem_agent::source::graph::request::{
    alerts_url, hunting_body, AlertVersions, ALERTS_PERMISSION, HUNTING_PATH, HUNTING_PERMISSION,
};
use siem_agent::source::graph::window::{Seen, Step, WindowCursor, WindowPlan};
use simd_json::prelude::*;

/// Half an hour of history, records visible at once, no request limit.
fn simulator_config(now: i64) -> SimulatorConfig {
    let mut config = SimulatorConfig::new(now, Duration::from_secs(1800));
    config.requests_per_minute = None;
    config.activities.per_minute = 60;
    config.activities.max_index_delay_ms = 0;
    config.alerts.per_minute = 2;
    config.alerts.max_index_delay_ms = 0;
    config
}

fn client(sim: &Simulator, config: &SimulatorConfig) -> GraphClient {
    GraphClient::new(
        GraphClientConfig {
            graph_url: sim.url(),
            app: EntraApp {
                login_url: sim.url(),
                tenant_id: "tenant".into(),
                client_id: config.client_id.clone(),
                client_secret: Secret::Value(config.client_secret.clone()),
            },
            proxy: None,
            ca_pem: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(2),
        },
        Arc::new(RequestBudget::new(0)),
    )
    .expect("client")
}

/// One poll of `cursor` at `now` over the hunting table, `take` rows an
/// answer; the ReportIds delivered.
fn poll_hunting(
    client: &mut GraphClient,
    cursor: &mut WindowCursor,
    now: i64,
    take: u32,
) -> Vec<String> {
    let plan = WindowPlan {
        settle_ms: 0,
        late_ms: 600_000,
    };
    let url = format!("{}{HUNTING_PATH}", client.graph_url());
    let mut delivered = Vec::new();
    let Some(mut walk) = cursor.poll(now, plan) else {
        return delivered;
    };
    let mut page = Vec::new();
    while let Step::Ask(window) = walk.next() {
        let body = hunting_body(window, take);
        client
            .fetch(Call::Post(&url, &body), HUNTING_PERMISSION, &mut page)
            .expect("an answer");
        let answer = simd_json::to_owned_value(&mut page).expect("JSON");
        let rows = answer.get_array("results").expect("results");
        if rows.len() >= take as usize && walk.split(window).expect("asked") {
            continue;
        }
        let mut fresh = Vec::new();
        for row in rows {
            let time = parse_iso_utc_ms(row.get_str("Timestamp").expect("time")).expect("ISO");
            let key = row.get_str("ReportId").expect("id");
            assert!(window.contains(time), "a row outside {window:?}");
            if cursor.is_new(time, key) {
                delivered.push(key.to_owned());
                fresh.push(Seen {
                    time_ms: time,
                    key: key.to_owned(),
                });
            }
        }
        walk.answered(window, cursor, fresh).expect("asked");
    }
    delivered
}

#[test]
fn a_hunting_backfill_splits_until_answers_fit_and_delivers_every_row_once() {
    let now = now_ms();
    let config = simulator_config(now);
    let stream = config.activities.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let mut client = client(&sim, &config);
    let start = now - 1_800_000;
    let mut cursor = WindowCursor::start(start);
    // 100 rows an answer over 1,800 rows: the windows must be split.
    let first = poll_hunting(&mut client, &mut cursor, now, 100);
    let expected = stream.first_index_at_or_after(now) - stream.first_index_at_or_after(start);
    assert_eq!(first.len() as u64, expected);
    assert_eq!(
        first.iter().collect::<HashSet<_>>().len(),
        first.len(),
        "no row twice"
    );
    assert!(
        client
            .stats()
            .splits
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    );
    // A later poll asks the last ten minutes again: nothing is repeated,
    // and only the rows of the new span are delivered.
    let later = now + 3_000;
    // The simulated tenant lives in real time: wait until it has them.
    while now_ms() <= later {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = poll_hunting(&mut client, &mut cursor, later, 100);
    let new = stream.first_index_at_or_after(later) - stream.first_index_at_or_after(now);
    assert_eq!(second.len() as u64, new);
    assert!(second.iter().all(|id| !first.contains(id)));
}

#[test]
fn an_alerts_backfill_pages_by_splitting_full_pages() {
    let now = now_ms();
    let config = simulator_config(now);
    let stream = config.alerts.clone();
    let sim = Simulator::start(config.clone()).expect("starts");
    let mut client = client(&sim, &config);
    let start = now - 1_800_000;
    let mut cursor = WindowCursor::start(start);
    let plan = WindowPlan {
        settle_ms: 0,
        late_ms: 600_000,
    };
    let top = 7;
    let mut walk = cursor.poll(now, plan).expect("settled time");
    let mut delivered = Vec::new();
    let mut page = Vec::new();
    while let Step::Ask(window) = walk.next() {
        let url = alerts_url(client.graph_url(), AlertVersions::New, window, top, "");
        client
            .fetch(Call::Get(&url), ALERTS_PERMISSION, &mut page)
            .expect("an answer");
        let mut answer = simd_json::to_owned_value(&mut page).expect("JSON");
        let full = answer.get_array("value").expect("value").len() >= top as usize;
        // A full page is not trusted: split instead of following $skip.
        if full && walk.split(window).expect("asked") {
            continue;
        }
        // A single millisecond cannot be split (a burst): only then are
        // its nextLinks followed.
        let mut alerts = Vec::new();
        loop {
            alerts.extend(answer.get_array("value").expect("value").iter().cloned());
            let Some(next) = answer.get_str("@odata.nextLink").map(str::to_owned) else {
                break;
            };
            assert_eq!(
                window.span(),
                1,
                "a nextLink followed for a splittable window"
            );
            client
                .fetch(Call::Get(&next), ALERTS_PERMISSION, &mut page)
                .expect("an answer");
            answer = simd_json::to_owned_value(&mut page).expect("JSON");
        }
        let mut fresh = Vec::new();
        for alert in &alerts {
            let time =
                parse_iso_utc_ms(alert.get_str("createdDateTime").expect("time")).expect("ISO");
            let id = alert.get_str("id").expect("id");
            if cursor.is_new(time, id) {
                delivered.push(id.to_owned());
                fresh.push(Seen {
                    time_ms: time,
                    key: id.to_owned(),
                });
            }
        }
        walk.answered(window, &mut cursor, fresh).expect("asked");
    }
    let expected = stream.first_index_at_or_after(now) - stream.first_index_at_or_after(start);
    assert_eq!(delivered.len() as u64, expected);
    assert_eq!(
        delivered.iter().collect::<HashSet<_>>().len(),
        delivered.len()
    );
    // The stream starts with a burst of 40 alerts in one millisecond,
    // more than a page: the case nextLinks are for.
    assert!(expected > 40, "{expected}");
}

#[test]
fn the_client_names_a_missing_permission_and_waits_out_throttling() {
    let now = now_ms();
    let mut config = simulator_config(now);
    config.graph.denied = vec![HUNTING_PERMISSION.to_owned()];
    config.requests_per_minute = Some(1);
    config.rate_window = Duration::from_secs(1);
    config.retry_after_seconds = Some(1);
    let sim = Simulator::start(config.clone()).expect("starts");
    let mut client = client(&sim, &config);
    let mut page = Vec::new();
    let hunting = format!("{}{HUNTING_PATH}", sim.url());
    let body = hunting_body(
        siem_agent::source::graph::window::Window {
            from: now - 60_000,
            to: now,
        },
        10,
    );
    match client.fetch(Call::Post(&hunting, &body), HUNTING_PERMISSION, &mut page) {
        Err(error @ GraphError::Forbidden { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(HUNTING_PERMISSION) && text.contains("consent"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // One request a second: the next ones are answered 429 with
    // Retry-After 1, which the client waits out instead of failing.
    let url = format!("{}/v1.0/security/alerts_v2?$top=1", sim.url());
    for _ in 0..3 {
        client
            .fetch(Call::Get(&url), ALERTS_PERMISSION, &mut page)
            .expect("served after waiting");
    }
    let stats = client.stats();
    assert!(stats.throttled.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // A wrong secret is a credentials error, not a retry loop.
    let mut wrong = config;
    wrong.client_secret = "not the secret".into();
    let mut client = self::client(&sim, &wrong);
    assert!(matches!(
        client.fetch(Call::Get(&url), ALERTS_PERMISSION, &mut page),
        Err(GraphError::Credentials(_))
    ));
}
