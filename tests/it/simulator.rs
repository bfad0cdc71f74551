//! The API simulator over real HTTP and HTTPS on loopback, driven by the
//! same HTTP client the agent uses (ureq with rustls).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use siem_agent::clock::now_ms;
use siem_agent::simulator::server::DEFAULT_TOKEN;
use siem_agent::simulator::{Faults, Simulator, SimulatorConfig};
use simd_json::prelude::*;
use simd_json::OwnedValue;

fn config() -> SimulatorConfig {
    config_at(now_ms())
}

/// An hour of history up to `now`, no request limit.
fn config_at(now: i64) -> SimulatorConfig {
    let mut config = SimulatorConfig::new(now, Duration::from_secs(3600));
    config.requests_per_minute = None;
    config
}

fn agent(ca_pem: Option<&str>) -> ureq::Agent {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(pem) = ca_pem {
        let ca = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("CA PEM parses");
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
                .build(),
        );
    }
    ureq::Agent::new_with_config(builder.build())
}

/// POSTs `body` with `authorization`; returns the status and parsed body.
fn post(
    agent: &ureq::Agent,
    url: &str,
    authorization: &str,
    body: &str,
) -> Result<(u16, OwnedValue), ureq::Error> {
    let mut response = agent
        .post(url)
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        .send(body)?;
    let status = response.status().as_u16();
    let mut bytes = response.body_mut().read_to_vec()?;
    let value = simd_json::to_owned_value(&mut bytes).unwrap_or(OwnedValue::null());
    Ok((status, value))
}

fn token() -> String {
    format!("Token {DEFAULT_TOKEN}")
}

#[test]
fn serves_pages_with_token_auth() {
    let sim = Simulator::start(config()).expect("starts");
    let agent = agent(None);
    for path in [
        "/api/v1/activities/",
        "/cas/api/v1/activities/",
        "/api/v1/alerts/",
    ] {
        let url = format!("{}{path}", sim.url());
        let (status, page) = post(&agent, &url, &token(), r#"{"limit":100}"#).expect("answers");
        assert_eq!(status, 200, "{path}");
        let data = page.get_array("data").expect("a data array");
        assert!(!data.is_empty(), "{path}");
        assert!(data.len() <= 100);
        assert!(page.get_bool("hasNext").is_some() && page.get_u64("total").is_some());
    }
    let url = format!("{}/api/v1/activities/", sim.url());
    let (status, body) = post(&agent, &url, "Token wrong", "{}").expect("answers");
    assert_eq!(status, 401);
    assert_eq!(body.get_str("error"), Some("Invalid token"));
    let (status, _) =
        post(&agent, &url, &token(), r#"{"skip":4950,"limit":100}"#).expect("answers");
    assert_eq!(status, 400);
    let (status, _) = post(
        &agent,
        &format!("{}/api/v1/nothing/", sim.url()),
        &token(),
        "{}",
    )
    .expect("answers");
    assert_eq!(status, 404);
    assert_eq!(sim.stats().unauthorized.load(Ordering::Relaxed), 1);
}

/// Sends `GET path` with a JSON body over a raw socket (clients rarely send
/// a body with GET, but the API accepts one); returns the status and body.
fn get_with_body(sim: &Simulator, path: &str, body: &str) -> (u16, OwnedValue) {
    use std::io::{Read, Write};
    let address = sim.url().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token(),
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("sends");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("reads to close");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let split = text.find("\r\n\r\n").expect("a head") + 4;
    let mut body = answer[split..].to_vec();
    let value = simd_json::to_owned_value(&mut body).expect("a JSON body");
    (status, value)
}

#[test]
fn get_with_a_body_answers_like_post() {
    let sim = Simulator::start(config()).expect("starts");
    let agent = agent(None);
    let filtered = r#"{"filters":{"service":{"eq":[11161]}},"sortField":"date","sortDirection":"desc","limit":30}"#;
    for path in ["/api/v1/activities/", "/cas/api/v1/alerts/"] {
        let url = format!("{}{path}", sim.url());
        let (post_status, posted) = post(&agent, &url, &token(), filtered).expect("answers");
        let (get_status, got) = get_with_body(&sim, path, filtered);
        assert_eq!((post_status, get_status), (200, 200), "{path}");
        assert_eq!(got, posted, "{path}: GET and POST with one body differ");
        let (_, unfiltered) = get_with_body(&sim, path, r#"{"limit":30}"#);
        assert_ne!(got, unfiltered, "{path}: the GET body was ignored");
    }
    let (status, _) = get_with_body(&sim, "/api/v1/activities/", r#"{"skip":4990,"limit":20}"#);
    assert_eq!(status, 400, "GET bodies are checked like POST bodies");
}

#[test]
fn throttles_over_the_per_minute_limit() {
    let mut config = config();
    config.requests_per_minute = Some(5);
    config.retry_after_seconds = Some(7);
    let sim = Simulator::start(config).expect("starts");
    let agent = agent(None);
    let url = format!("{}/api/v1/alerts/", sim.url());
    let statuses: Vec<u16> = (0..8)
        .map(|_| post(&agent, &url, &token(), "{}").expect("answers").0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let response = agent
        .post(&url)
        .header("Authorization", &token())
        .send("{}")
        .expect("answers");
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(sim.stats().throttled.load(Ordering::Relaxed), 4);
}

#[test]
fn serves_https_trusted_through_its_ca() {
    let mut config = config();
    config.tls = true;
    let sim = Simulator::start(config).expect("starts");
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let url = format!("{}/api/v1/activities/", sim.url());
    let trusted = agent(sim.ca_pem());
    let (status, _) = post(&trusted, &url, &token(), "{}").expect("TLS handshake");
    assert_eq!(status, 200);
    // Without the CA the certificate must be refused.
    assert!(post(&agent(None), &url, &token(), "{}").is_err());
}

#[test]
fn issues_entra_tokens_for_valid_client_credentials() {
    let config = config();
    let (client_id, secret) = (config.client_id.clone(), config.client_secret.clone());
    let sim = Simulator::start(config).expect("starts");
    let agent = agent(None);
    let token_url = format!("{}/tenant-id/oauth2/v2.0/token", sim.url());
    let form = |secret: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &client_id)
            .append_pair("client_secret", secret)
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default")
            .finish()
    };
    let mut response = agent
        .post(&token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form("wrong"))
        .expect("answers");
    assert_eq!(response.status().as_u16(), 401);
    let _ = response.body_mut().read_to_vec();
    let mut response = agent
        .post(&token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form(&secret))
        .expect("answers");
    assert_eq!(response.status().as_u16(), 200);
    let mut bytes = response.body_mut().read_to_vec().expect("body");
    let reply = simd_json::to_owned_value(&mut bytes).expect("JSON");
    let bearer = reply.get_str("access_token").expect("a token").to_owned();
    assert_eq!(reply.get_u64("expires_in"), Some(3599));
    let url = format!("{}/api/v1/alerts/", sim.url());
    let (status, _) = post(&agent, &url, &format!("Bearer {bearer}"), "{}").expect("answers");
    assert_eq!(status, 200);
    let (status, _) = post(&agent, &url, "Bearer forged", "{}").expect("answers");
    assert_eq!(status, 401);
}

#[test]
fn injects_each_fault() {
    let url_of = |sim: &Simulator| format!("{}/api/v1/activities/", sim.url());
    let with = |faults: Faults| {
        let mut config = config();
        config.faults = faults;
        Simulator::start(config).expect("starts")
    };
    let sim = with(Faults {
        server_error: 1.0,
        ..Faults::default()
    });
    assert_eq!(
        post(&agent(None), &url_of(&sim), &token(), "{}")
            .expect("answers")
            .0,
        503
    );

    let sim = with(Faults {
        drop: 1.0,
        ..Faults::default()
    });
    assert!(post(&agent(None), &url_of(&sim), &token(), "{}").is_err());

    let sim = with(Faults {
        truncate: 1.0,
        ..Faults::default()
    });
    assert!(post(&agent(None), &url_of(&sim), &token(), "{}").is_err());

    let sim = with(Faults {
        malformed: 1.0,
        ..Faults::default()
    });
    let (status, body) = post(&agent(None), &url_of(&sim), &token(), "{}").expect("answers");
    assert_eq!(status, 200);
    assert_eq!(body, OwnedValue::null(), "the body must not parse");

    let sim = with(Faults {
        slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    });
    assert_eq!(
        post(&agent(None), &url_of(&sim), &token(), "{}")
            .expect("answers")
            .0,
        200
    );
    // The slow answer is counted as the one fault injected; how long it
    // took is not asserted (a shared machine makes every time noisy).
    assert_eq!(sim.stats().faults.load(Ordering::Relaxed), 1);
}

#[test]
fn pregenerated_records_are_the_generated_ones() {
    // The same history twice: one simulator renders every answer, the
    // other serves bytes rendered at start-up. Pages over the whole history
    // and past its end (records after start-up are not stored) must be
    // identical. Every query ends at a fixed time that has passed before
    // the first request, with no indexing delay, so both simulators see the
    // same records however far apart the two requests are.
    let now = now_ms();
    let end = now + 500;
    let plain = {
        let mut config = config_at(now);
        config.activities.max_index_delay_ms = 0;
        config
    };
    let mut stored = plain.clone();
    stored.pregenerate = true;
    let plain = Simulator::start(plain).expect("starts");
    let stored = Simulator::start(stored).expect("starts");
    while now_ms() <= end + 100 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = agent(None);
    let until = format!(r#""filters":{{"date":{{"lte":{end}}}}}"#);
    for (path, body) in [
        (
            "/api/v1/activities/",
            format!(r#"{{{until},"limit":5000}}"#),
        ),
        (
            "/api/v1/activities/",
            format!(r#"{{{until},"limit":100,"skip":200,"sortDirection":"desc"}}"#),
        ),
        ("/api/v1/alerts/", format!(r#"{{{until},"limit":100}}"#)),
        (
            "/api/v1/activities/",
            format!(
                r#"{{"filters":{{"date":{{"gte":{},"lte":{end}}}}},"limit":100}}"#,
                now - 1000
            ),
        ),
    ] {
        let (status, expected) =
            post(&agent, &format!("{}{path}", plain.url()), &token(), &body).expect("answers");
        let (stored_status, served) =
            post(&agent, &format!("{}{path}", stored.url()), &token(), &body).expect("answers");
        assert_eq!((status, stored_status), (200, 200), "{path} {body}");
        let records = served.get_array("data").map_or(0, |d| d.len());
        assert!(records > 0 || body.contains("gte"), "{path} {body}");
        assert_eq!(served, expected, "{path} {body}");
    }
}

/// An Entra bearer token from the simulator's token endpoint.
fn bearer(sim: &Simulator, client_id: &str, secret: &str) -> String {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("client_secret", secret)
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", "https://graph.microsoft.com/.default")
        .finish();
    let mut response = agent(None)
        .post(&format!("{}/tenant-id/oauth2/v2.0/token", sim.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form)
        .expect("answers");
    let mut bytes = response.body_mut().read_to_vec().expect("body");
    let reply = simd_json::to_owned_value(&mut bytes).expect("JSON");
    format!("Bearer {}", reply.get_str("access_token").expect("a token"))
}

/// GETs `url` with `authorization`; the status, `Retry-After` and body.
fn get(agent: &ureq::Agent, url: &str, authorization: &str) -> (u16, Option<String>, OwnedValue) {
    let mut response = agent
        .get(url)
        .header("Authorization", authorization)
        .call()
        .expect("answers");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = response.body_mut().read_to_vec().expect("body");
    let value = simd_json::to_owned_value(&mut bytes).unwrap_or(OwnedValue::null());
    (status, retry, value)
}

#[test]
fn serves_graph_alerts_and_hunting_over_http_with_entra_tokens_only() {
    use siem_agent::source::graph::request::{
        alerts_url, hunting_body, AlertVersions, HUNTING_PATH,
    };
    use siem_agent::source::graph::window::Window;

    let now = now_ms();
    let config = config_at(now);
    let (client_id, secret) = (config.client_id.clone(), config.client_secret.clone());
    let sim = Simulator::start(config).expect("starts");
    let agent = agent(None);
    let bearer = bearer(&sim, &client_id, &secret);
    let window = Window {
        from: now - 3_600_000,
        to: now - 600_000,
    };
    // Alerts: a page of the window, newest first; the legacy token is not
    // accepted by Graph.
    let url = alerts_url(&sim.url(), AlertVersions::New, window, 10, "");
    let (status, _, page) = get(&agent, &url, &bearer);
    assert_eq!(status, 200, "{page:?}");
    let alerts = page.get_array("value").expect("value");
    assert_eq!(alerts.len(), 10);
    assert!(page
        .get_str("@odata.nextLink")
        .is_some_and(|l| l.starts_with(&sim.url())));
    let (status, _, _) = get(&agent, &url, &token());
    assert_eq!(status, 401);
    // The lines the agent would write for them are strict CEF.
    let bytes = page.encode().into_bytes();
    let lines = super::support::replay(&["--data-type", "graph-alerts"], Some(&bytes));
    assert!(lines.status.success());
    assert_eq!(super::support::stdout_lines(&lines).len(), 10);
    // Hunting: the spec's query, ordered and cut at its take.
    let hunting = format!("{}{HUNTING_PATH}", sim.url());
    let (status, result) =
        post(&agent, &hunting, &bearer, &hunting_body(window, 50)).expect("answers");
    assert_eq!(status, 200, "{result:?}");
    assert_eq!(result.get_array("results").expect("results").len(), 50);
    let (status, error) = post(
        &agent,
        &hunting,
        &bearer,
        r#"{"Query":"CloudAppEvents | take 1"}"#,
    )
    .expect("answers");
    assert_eq!(status, 400);
    assert!(error.get("error").and_then(|e| e.get_str("code")).is_some());
}

#[test]
fn graph_refusals_name_the_permission_and_the_quota() {
    use siem_agent::source::graph::request::{
        classify, hunting_body, GraphAnswer, HUNTING_PATH, HUNTING_PERMISSION,
    };
    use siem_agent::source::graph::window::Window;

    let now = now_ms();
    let mut config = config_at(now);
    config.graph.denied = vec![HUNTING_PERMISSION.to_owned()];
    config.requests_per_minute = Some(1);
    config.retry_after_seconds = Some(9);
    let (client_id, secret) = (config.client_id.clone(), config.client_secret.clone());
    let sim = Simulator::start(config).expect("starts");
    let agent = agent(None);
    let bearer = bearer(&sim, &client_id, &secret);
    let hunting = format!("{}{HUNTING_PATH}", sim.url());
    let body = hunting_body(
        Window {
            from: now - 60_000,
            to: now,
        },
        10,
    );
    let (status, error) = post(&agent, &hunting, &bearer, &body).expect("answers");
    assert_eq!(status, 403);
    let text = error.encode();
    match classify(status, None, text.as_bytes(), HUNTING_PERMISSION) {
        GraphAnswer::Forbidden {
            permission,
            message,
        } => {
            assert_eq!(permission, HUNTING_PERMISSION);
            assert!(message.contains(HUNTING_PERMISSION), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // One request a minute: the alerts list gets the first, then 429.
    let alerts = format!("{}/v1.0/security/alerts_v2?$top=1", sim.url());
    let (first, _, _) = get(&agent, &alerts, &bearer);
    assert_eq!(first, 200);
    let (status, retry, error) = get(&agent, &alerts, &bearer);
    assert_eq!((status, retry.as_deref()), (429, Some("9")));
    assert!(matches!(
        classify(status, Some(9), error.encode().as_bytes(), HUNTING_PERMISSION),
        GraphAnswer::Wait { wait, .. } if wait == Duration::from_secs(9)
    ));
}
