//! The simulator's HTTP/1.1 server: real sockets, keep-alive, optional TLS,
//! and the faults a long-running agent meets in production.
//!
//! Deliberately small and synchronous (one thread per connection, a bounded
//! number of connections): it serves tests and benchmarks on loopback, and
//! fault injection needs control over exactly which bytes reach the socket,
//! which a full HTTP framework would hide.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use simd_json::prelude::*;

use super::data::{mix, StreamConfig};
use super::graph::{self, GraphConfig};
use super::query::{self, Query};
use super::tls::TestPki;
use crate::data_type::{DataType, Family};
use crate::source::graph::request::{ALERTS_PATH, HUNTING_PATH};

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 512;
/// Largest request head or body accepted.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Idle keep-alive connections are closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime the mock Entra endpoint gives its tokens unless configured.
pub const ENTRA_TOKEN_SECONDS: u64 = 3599;

/// Probabilities (0.0-1.0) of each fault, per list request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Answer 503.
    pub server_error: f64,
    /// Answer normally after `slow_ms`.
    pub slow: f64,
    /// Delay of a slow answer.
    pub slow_ms: u64,
    /// Close the connection without an answer.
    pub drop: f64,
    /// Send the headers and half the body, then close.
    pub truncate: f64,
    /// Send a complete response whose body is not valid JSON.
    pub malformed: f64,
}

/// Everything the simulator serves.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a freshly generated CA and certificate.
    pub tls: bool,
    /// The API token clients must send (`Authorization: Token ...`).
    pub token: String,
    /// Entra application credentials the mock token endpoint accepts.
    pub client_id: String,
    /// Secret for `client_id`.
    pub client_secret: String,
    /// Lifetime of the mock Entra endpoint's tokens, in seconds; a token is
    /// refused (401) once it has expired.
    pub entra_token_seconds: u64,
    /// List requests allowed per rolling minute (`None`: no limit).
    pub requests_per_minute: Option<u32>,
    /// The window the request limit counts over (the API's is a minute;
    /// tests shorten it).
    pub rate_window: Duration,
    /// `Retry-After` seconds sent with 429 (the real API sends none).
    pub retry_after_seconds: Option<u64>,
    /// The activity stream.
    pub activities: StreamConfig,
    /// The alert stream.
    pub alerts: StreamConfig,
    /// Fault probabilities.
    pub faults: Faults,
    /// Seed for fault decisions.
    pub fault_seed: u64,
    /// The Microsoft Graph endpoints' settings.
    pub graph: GraphConfig,
    /// Render every record of the history once at start-up and serve the
    /// stored bytes, so that serving costs little more than the socket
    /// write (benchmarks use it to leave the CPU to the agent; it holds
    /// about 1.3 KB of memory per record).
    pub pregenerate: bool,
}

/// The API token the simulator accepts unless configured otherwise.
pub const DEFAULT_TOKEN: &str = crate::config::cli::DEFAULT_SIMULATOR_TOKEN;

impl SimulatorConfig {
    /// A tenant on loopback (any free port, plain HTTP) whose history starts
    /// `history` before `now_ms`, with 600 activities and 2 alerts a minute,
    /// indexing delays up to 5 minutes, same-millisecond bursts, hostile
    /// text in every 97th record, the API's 30 requests a minute, no faults.
    pub fn new(now_ms: i64, history: Duration) -> Self {
        let start_ms = now_ms - i64::try_from(history.as_millis()).unwrap_or(i64::MAX / 2);
        let stream = |kind, per_minute, seed| StreamConfig {
            kind,
            seed,
            start_ms,
            per_minute,
            max_index_delay_ms: 300_000,
            burst_every: 1000,
            burst_size: 40,
            hostile_every: 97,
        };
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            token: DEFAULT_TOKEN.to_owned(),
            client_id: "00000000-0000-0000-0000-00000000c1d0".to_owned(),
            client_secret: "simulator-secret".to_owned(),
            entra_token_seconds: ENTRA_TOKEN_SECONDS,
            requests_per_minute: Some(30),
            rate_window: Duration::from_secs(60),
            retry_after_seconds: None,
            activities: stream(DataType::Activities, 600, 1),
            alerts: stream(DataType::Alerts, 2, 2),
            faults: Faults::default(),
            fault_seed: 3,
            pregenerate: false,
            graph: GraphConfig::default(),
        }
    }
}

impl SimulatorConfig {
    /// Records of both streams with an event time before `now_ms` (an
    /// estimate of a backfill's size, for progress bars).
    pub fn expected_records(&self, now_ms: i64) -> u64 {
        self.activities.first_index_at_or_after(now_ms)
            + self.alerts.first_index_at_or_after(now_ms)
    }
}

/// Counters a test can read while the simulator runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// List requests received (all outcomes).
    pub list_requests: AtomicU64,
    /// Answered 200 with records.
    pub pages: AtomicU64,
    /// Records sent in 200 answers (before any truncation).
    pub records: AtomicU64,
    /// Body bytes of those answers (what a client downloads).
    pub body_bytes: AtomicU64,
    /// Answered 429.
    pub throttled: AtomicU64,
    /// Graph requests answered 400 (a hunting window too heavy or a
    /// result too large, or a request the simulator does not understand).
    pub graph_refused: AtomicU64,
    /// Answered 401.
    pub unauthorized: AtomicU64,
    /// Faults injected.
    pub faults: AtomicU64,
    /// Entra tokens issued.
    pub tokens_issued: AtomicU64,
    /// The least lifetime, in milliseconds, any accepted Entra token had
    /// left when it was used (`u64::MAX` until one is used): how early a
    /// client replaces its tokens.
    pub least_token_left_ms: AtomicU64,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    address: SocketAddr,
    tls: Option<TestPki>,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Simulator {
    /// Binds and starts serving on a background thread.
    pub fn start(config: SimulatorConfig) -> io::Result<Self> {
        // Before binding: clients find the port open only once it serves.
        let rendered = if config.pregenerate {
            let now = crate::clock::now_ms();
            [
                Rendered::history(&config.activities, now),
                Rendered::history(&config.alerts, now),
            ]
        } else {
            Default::default()
        };
        let listener = TcpListener::bind(config.listen)?;
        let address = listener.local_addr()?;
        let tls = if config.tls {
            Some(TestPki::generate().map_err(io::Error::other)?)
        } else {
            None
        };
        let tls_config = tls.as_ref().map(TestPki::server_config).transpose()?;
        let stats = Arc::new(Stats {
            least_token_left_ms: AtomicU64::new(u64::MAX),
            ..Stats::default()
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        let shared = Arc::new(Shared {
            base_url: format!("{scheme}://{address}"),
            rendered,
            token: Mutex::new(config.token.clone()),
            config,
            stats: Arc::clone(&stats),
            window: Mutex::new(VecDeque::new()),
            entra_tokens: Mutex::new(Vec::new()),
            sequence: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
        });
        let stop_flag = Arc::clone(&stopping);
        let thread_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("simulator-accept".into())
            .spawn(move || accept_loop(listener, thread_shared, tls_config, stop_flag))?;
        Ok(Self {
            address,
            tls,
            stats,
            stopping,
            acceptor: Some(acceptor),
            shared,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL clients use (`http://` or `https://`, host and port).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// The CA certificate (PEM) clients must trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(TestPki::ca_pem)
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Rotates the API token: from now on only `token` is accepted.
    pub fn set_token(&self, token: &str) {
        *self.shared.token.lock() = token.to_owned();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Records rendered at start-up (see [`SimulatorConfig::pregenerate`]):
/// record `i` is `bytes[ends[i - 1]..ends[i]]`.
#[derive(Default)]
struct Rendered {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Rendered {
    /// Every record of `stream` with an event time before `now_ms`.
    fn history(stream: &StreamConfig, now_ms: i64) -> Self {
        let count = stream.first_index_at_or_after(now_ms);
        let mut rendered = Self::default();
        for index in 0..count {
            stream.write_record(index, &mut rendered.bytes);
            rendered.ends.push(rendered.bytes.len());
        }
        rendered
    }

    /// Appends record `index`, from the store when it holds it.
    fn write_record(&self, stream: &StreamConfig, index: u64, out: &mut Vec<u8>) {
        let stored = usize::try_from(index).ok().and_then(|i| {
            let end = *self.ends.get(i)?;
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            Some(&self.bytes[start..end])
        });
        match stored {
            Some(bytes) => out.extend_from_slice(bytes),
            None => stream.write_record(index, out),
        }
    }
}

struct Shared {
    config: SimulatorConfig,
    /// The URL clients reach the simulator at (for `@odata.nextLink`).
    base_url: String,
    /// Pre-rendered activities and alerts (empty unless `pregenerate`).
    rendered: [Rendered; 2],
    /// The API token accepted now (starts as the configured one).
    token: Mutex<String>,
    stats: Arc<Stats>,
    /// Times of recent list requests, for the per-minute limit.
    window: Mutex<VecDeque<Instant>>,
    /// Issued Entra tokens and when they expire.
    entra_tokens: Mutex<Vec<(String, Instant)>>,
    /// Numbers list requests for fault decisions.
    sequence: AtomicU64,
    connections: AtomicUsize,
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopping: Arc<AtomicBool>,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .name("simulator-conn".into())
            .spawn(move || {
                let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
                let _ = stream.set_nodelay(true);
                let _ = match tls {
                    Some(config) => match rustls::ServerConnection::new(config) {
                        Ok(connection) => {
                            serve(rustls::StreamOwned::new(connection, stream), &shared)
                        }
                        Err(error) => Err(io::Error::other(error)),
                    },
                    None => serve(stream, &shared),
                };
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The closure (and its count) was dropped with the failed spawn.
            continue;
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    close: bool,
    body: Vec<u8>,
}

/// Serves requests on one connection until it closes.
fn serve<S: Read + Write>(stream: S, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    // Kept between a connection's requests: a fresh 7 MB buffer for every
    // backfill page cost the simulator more than copying the records.
    let mut page = Vec::new();
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        let keep_open = respond(&request, reader.get_mut(), shared, &mut page)?;
        if request.close || !keep_open {
            return Ok(());
        }
    }
}

fn read_request<S: Read>(reader: &mut BufReader<S>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = reader.read_until(b'\n', &mut head)?;
        if read == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::other("request head too large"));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(io::Error::other("malformed request")),
    }
    let mut length = 0usize;
    let mut authorization = None;
    let mut close = false;
    for header in parsed.headers.iter() {
        let value = String::from_utf8_lossy(header.value).trim().to_owned();
        if header.name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| io::Error::other("bad length"))?;
        } else if header.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value);
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other("chunked requests are not supported"));
        }
    }
    if length > MAX_REQUEST_BYTES {
        return Err(io::Error::other("request body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: parsed.path.unwrap_or("").to_owned(),
        authorization,
        close,
        body,
    }))
}

/// Which list a path names, if any.
fn list_kind(path: &str) -> Option<DataType> {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/cas/api/v1/"))?;
    match rest {
        "activities" => Some(DataType::Activities),
        "alerts" => Some(DataType::Alerts),
        _ => None,
    }
}

fn write_response<W: Write>(
    out: &mut W,
    status: &str,
    extra_headers: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn json_error(message: &str) -> Vec<u8> {
    let mut text = String::from("{\"error\":");
    super::data::json_string(&mut text, message);
    text.push('}');
    text.into_bytes()
}

/// Answers one request (a page is built in `page_buffer`); returns whether the
/// connection may stay open.
fn respond<W: Write>(
    request: &Request,
    out: &mut W,
    shared: &Shared,
    page_buffer: &mut Vec<u8>,
) -> io::Result<bool> {
    if request.method == "POST" && request.path.ends_with("/oauth2/v2.0/token") {
        return entra_token(request, out, shared);
    }
    if graph::is_graph_path(&request.path) {
        let (status, headers, body) = graph_answer(request, shared);
        write_response(out, status, &headers, &body)?;
        return Ok(true);
    }
    let Some(kind) = list_kind(&request.path) else {
        write_response(out, "404 Not Found", "", &json_error("no such endpoint"))?;
        return Ok(true);
    };
    if request.method != "POST" && request.method != "GET" {
        write_response(
            out,
            "405 Method Not Allowed",
            "",
            &json_error("use POST or GET"),
        )?;
        return Ok(true);
    }
    let stats = &shared.stats;
    stats.list_requests.fetch_add(1, Ordering::Relaxed);
    if !authorized(request.authorization.as_deref(), shared) {
        stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        write_response(out, "401 Unauthorized", "", &json_error("Invalid token"))?;
        return Ok(true);
    }
    if throttled(shared) {
        stats.throttled.fetch_add(1, Ordering::Relaxed);
        let retry = shared
            .config
            .retry_after_seconds
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        write_response(
            out,
            "429 Too Many Requests",
            &retry,
            &json_error("Too many requests"),
        )?;
        return Ok(true);
    }
    let body = if request.body.iter().all(u8::is_ascii_whitespace) {
        simd_json::OwnedValue::object()
    } else {
        let mut bytes = request.body.clone();
        match simd_json::to_owned_value(&mut bytes) {
            Ok(value) => value,
            Err(error) => {
                let message = format!("request body is not JSON: {error}");
                write_response(out, "400 Bad Request", "", &json_error(&message))?;
                return Ok(true);
            }
        }
    };
    let (stream, rendered) = match kind.family() {
        Family::Activity => (&shared.config.activities, &shared.rendered[0]),
        Family::Alert => (&shared.config.alerts, &shared.rendered[1]),
    };
    let query = match Query::parse(&body, kind) {
        Ok(query) => query,
        Err(error) => {
            write_response(out, "400 Bad Request", "", &json_error(&error.to_string()))?;
            return Ok(true);
        }
    };
    let page = query::run(stream, &query, crate::clock::now_ms());
    page_json(stream, rendered, &page, page_buffer);
    inject_faults(out, page_buffer, shared, page.records.len() as u64)
}

/// Answers a request to one of the Graph endpoints.
fn graph_answer(request: &Request, shared: &Shared) -> graph::Answer {
    let config = &shared.config;
    let stats = &shared.stats;
    stats.list_requests.fetch_add(1, Ordering::Relaxed);
    let (path, query) = request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""));
    // Graph takes Entra bearer tokens only.
    let bearer = request
        .authorization
        .as_deref()
        .filter(|header| header.starts_with("Bearer "));
    if !authorized(bearer, shared) {
        stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        let body = graph::error_body(
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
        return ("401 Unauthorized", String::new(), body);
    }
    if let Some(denied) = graph::denied(path, &config.graph) {
        return denied;
    }
    if throttled(shared) {
        stats.throttled.fetch_add(1, Ordering::Relaxed);
        return graph::throttled(path, config.retry_after_seconds);
    }
    let now = crate::clock::now_ms();
    let answer = match (request.method.as_str(), path) {
        ("GET", ALERTS_PATH) => {
            graph::alerts(&config.alerts, &config.graph, query, &shared.base_url, now)
        }
        ("POST", HUNTING_PATH) => {
            graph::hunting(&config.activities, &config.graph, &request.body, now)
        }
        _ => (
            "405 Method Not Allowed",
            String::new(),
            graph::error_body("BadRequest", "alerts_v2 takes GET, runHuntingQuery POST"),
        ),
    };
    if answer.0.starts_with("400") {
        stats.graph_refused.fetch_add(1, Ordering::Relaxed);
    }
    if answer.0.starts_with("200") {
        stats.pages.fetch_add(1, Ordering::Relaxed);
        stats
            .body_bytes
            .fetch_add(answer.2.len() as u64, Ordering::Relaxed);
    }
    answer
}

/// Sends `response` as a 200, or one of the configured faults instead.
fn inject_faults<W: Write>(
    out: &mut W,
    response: &[u8],
    shared: &Shared,
    records: u64,
) -> io::Result<bool> {
    let faults = &shared.config.faults;
    let sequence = shared.sequence.fetch_add(1, Ordering::Relaxed);
    let roll = |salt: u64| (mix(shared.config.fault_seed, sequence, salt) % 1_000_000) as f64 / 1e6;
    let stats = &shared.stats;
    if roll(1) < faults.drop {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        return Ok(false);
    }
    if roll(2) < faults.server_error {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        write_response(out, "503 Service Unavailable", "", &json_error("try again"))?;
        return Ok(true);
    }
    if roll(3) < faults.slow {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(faults.slow_ms));
    }
    if roll(4) < faults.truncate {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            response.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(&response[..response.len() / 2])?;
        out.flush()?;
        return Ok(false);
    }
    if roll(5) < faults.malformed {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        write_response(out, "200 OK", "", &response[..response.len() / 2])?;
        return Ok(true);
    }
    stats.pages.fetch_add(1, Ordering::Relaxed);
    stats.records.fetch_add(records, Ordering::Relaxed);
    stats
        .body_bytes
        .fetch_add(response.len() as u64, Ordering::Relaxed);
    write_response(out, "200 OK", "", response)?;
    Ok(true)
}

/// `{"data":[...],"hasNext":..,"total":..[,"nextQueryFilters":..]}`, into
/// `out` (cleared first).
fn page_json(stream: &StreamConfig, rendered: &Rendered, page: &query::Page, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"data\":[");
    for (n, &index) in page.records.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        rendered.write_record(stream, index, out);
    }
    out.extend_from_slice(
        format!("],\"hasNext\":{},\"total\":{}", page.has_next, page.total).as_bytes(),
    );
    if let Some(next) = &page.next_filters {
        out.extend_from_slice(b",\"nextQueryFilters\":");
        out.extend_from_slice(next.encode().as_bytes());
    }
    out.push(b'}');
}

fn authorized(header: Option<&str>, shared: &Shared) -> bool {
    let Some(header) = header else { return false };
    if let Some(token) = header.strip_prefix("Token ") {
        return token == *shared.token.lock();
    }
    if let Some(token) = header.strip_prefix("Bearer ") {
        let now = Instant::now();
        let left = shared
            .entra_tokens
            .lock()
            .iter()
            .find(|(issued, expires)| issued == token && *expires > now)
            .map(|(_, expires)| expires.duration_since(now));
        if let Some(left) = left {
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            shared
                .stats
                .least_token_left_ms
                .fetch_min(ms, Ordering::Relaxed);
        }
        return left.is_some();
    }
    false
}

/// Records this request in the rolling window; true when over the limit.
fn throttled(shared: &Shared) -> bool {
    let Some(limit) = shared.config.requests_per_minute else {
        return false;
    };
    let now = Instant::now();
    let mut window = shared.window.lock();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= shared.config.rate_window)
    {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        return true;
    }
    window.push_back(now);
    false
}

/// The mock Entra client-credentials endpoint.
fn entra_token<W: Write>(request: &Request, out: &mut W, shared: &Shared) -> io::Result<bool> {
    let field = |name: &str| {
        form_urlencoded::parse(&request.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let config = &shared.config;
    let valid = field("grant_type").as_deref() == Some("client_credentials")
        && field("client_id").as_deref() == Some(config.client_id.as_str())
        && field("client_secret").as_deref() == Some(config.client_secret.as_str())
        && field("scope").is_some_and(|s| s.ends_with("/.default"));
    if !valid {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        write_response(out, "401 Unauthorized", "", body)?;
        return Ok(true);
    }
    let issued = shared.stats.tokens_issued.fetch_add(1, Ordering::Relaxed);
    let token = format!(
        "sim.{:016x}.{:016x}",
        mix(config.fault_seed, issued, 99),
        issued
    );
    let now = Instant::now();
    let lifetime = config.entra_token_seconds;
    let expires = now + Duration::from_secs(lifetime);
    let mut tokens = shared.entra_tokens.lock();
    // Expired tokens are useless; dropping them keeps a long run bounded.
    tokens.retain(|(_, until)| *until > now);
    tokens.push((token.clone(), expires));
    drop(tokens);
    let body = format!(
        r#"{{"token_type":"Bearer","expires_in":{lifetime},"ext_expires_in":{lifetime},"access_token":"{token}"}}"#
    );
    write_response(out, "200 OK", "", body.as_bytes())?;
    Ok(true)
}
