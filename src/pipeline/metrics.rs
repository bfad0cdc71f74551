//! The metrics thread: a small HTTP server for `/metrics` (Prometheus)
//! and `/healthz`; what it answers is [`crate::status::metrics`]'s.
//!
//! One thread serves every connection from a mio event loop, so the
//! number of threads does not grow with the number of clients (a server
//! with a thread per connection held 2,000 threads for 2,000 idle
//! connections). Connections are capped at [`MAX_CONNECTIONS`] (the
//! longest idle one is closed to make room) and closed after
//! [`IDLE_TIMEOUT`] without a complete request; each answers one request
//! and closes (`Connection: close`), which is all a scraper needs.
//! Requests are parsed with `httparse`.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use parking_lot::RwLock;
use tracing::info;

use super::RunError;
use crate::status::{self, TenantStatus};

/// Connections served at once; a new one beyond closes the oldest.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection without a complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head read (a scraper's is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;

const LISTENER: Token = Token(usize::MAX);

/// One client connection: what it sent so far, and the answer being
/// written once its request is complete.
struct Connection {
    stream: TcpStream,
    opened: Instant,
    request: Vec<u8>,
    answer: Vec<u8>,
    written: usize,
}

/// Serves Prometheus metrics on `/metrics` and health on `/healthz` from a
/// thread of its own; the thread and the address it listens on (port 0
/// picks a free one). The server stops with the process.
pub(super) fn spawn_metrics(
    address: SocketAddr,
    registry: Arc<RwLock<Vec<Arc<TenantStatus>>>>,
) -> Result<(JoinHandle<()>, SocketAddr), RunError> {
    let failed = |error: io::Error| RunError::Metrics {
        address,
        reason: error.to_string(),
    };
    let mut listener = TcpListener::bind(address).map_err(failed)?;
    let poll = Poll::new().map_err(failed)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    info!("metrics on http://{local}/metrics");
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(poll, listener, &registry))
        .map_err(RunError::Spawn)?;
    Ok((thread, local))
}

/// The event loop. Errors of one connection close that connection only.
fn serve(mut poll: Poll, listener: TcpListener, registry: &RwLock<Vec<Arc<TenantStatus>>>) {
    let mut events = Events::with_capacity(128);
    let mut connections: Vec<Option<Connection>> = Vec::new();
    loop {
        if let Err(error) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("metrics: the event loop failed: {error}; metrics are off");
            return;
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&poll, &listener, &mut connections);
                continue;
            }
            let slot = event.token().0;
            let Some(Some(connection)) = connections.get_mut(slot) else {
                continue;
            };
            if !advance(connection, registry) {
                close(&poll, &mut connections, slot);
            } else if !connection.answer.is_empty() {
                let _ = poll.registry().reregister(
                    &mut connection.stream,
                    Token(slot),
                    Interest::WRITABLE,
                );
            }
        }
        // Idle connections are closed.
        for slot in 0..connections.len() {
            let idle = connections[slot]
                .as_ref()
                .is_some_and(|c| c.opened.elapsed() > IDLE_TIMEOUT);
            if idle {
                close(&poll, &mut connections, slot);
            }
        }
    }
}

/// Takes every waiting connection, closing the oldest ones beyond the cap.
fn accept(poll: &Poll, listener: &TcpListener, connections: &mut Vec<Option<Connection>>) {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => return,
        };
        let open = connections.iter().filter(|c| c.is_some()).count();
        if open >= MAX_CONNECTIONS {
            let oldest = connections
                .iter()
                .enumerate()
                .filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c.opened)))
                .min_by_key(|&(_, opened)| opened)
                .map(|(slot, _)| slot);
            if let Some(slot) = oldest {
                close(poll, connections, slot);
            }
        }
        let slot = match connections.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                connections.push(None);
                connections.len() - 1
            }
        };
        if poll
            .registry()
            .register(&mut stream, Token(slot), Interest::READABLE)
            .is_ok()
        {
            connections[slot] = Some(Connection {
                stream,
                opened: Instant::now(),
                request: Vec::new(),
                answer: Vec::new(),
                written: 0,
            });
        }
    }
}

fn close(poll: &Poll, connections: &mut [Option<Connection>], slot: usize) {
    if let Some(mut connection) = connections.get_mut(slot).and_then(Option::take) {
        let _ = poll.registry().deregister(&mut connection.stream);
    }
}

/// Reads what the client sent and writes the answer once the request is
/// complete; false when the connection is done (answered, closed, or
/// broken).
fn advance(connection: &mut Connection, registry: &RwLock<Vec<Arc<TenantStatus>>>) -> bool {
    if connection.answer.is_empty() {
        let mut buffer = [0u8; 1024];
        loop {
            match connection.stream.read(&mut buffer) {
                Ok(0) => return false,
                Ok(read) => {
                    connection.request.extend_from_slice(&buffer[..read]);
                    if connection.request.len() > MAX_REQUEST_BYTES {
                        return false;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&connection.request) {
            Ok(httparse::Status::Complete(_)) => {
                connection.answer = answer(request.method, request.path, registry);
            }
            Ok(httparse::Status::Partial) => return true,
            Err(_) => {
                connection.answer = response(400, "bad request\n", "text/plain");
            }
        }
    }
    while connection.written < connection.answer.len() {
        match connection
            .stream
            .write(&connection.answer[connection.written..])
        {
            Ok(0) => return false,
            Ok(written) => connection.written += written,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    false
}

/// The whole HTTP answer to a request.
fn answer(
    method: Option<&str>,
    path: Option<&str>,
    registry: &RwLock<Vec<Arc<TenantStatus>>>,
) -> Vec<u8> {
    if method != Some("GET") {
        return response(405, "only GET\n", "text/plain");
    }
    let path = path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let tenants = registry.read().clone();
    let (code, body, content_type) =
        status::metrics::answer(path, &tenants, crate::clock::now_ms());
    response(code, &body, content_type)
}

fn response(code: u16, body: &str, content_type: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;
    use crate::data_type::DataType;

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("answer");
        text
    }

    #[test]
    fn idle_connections_take_no_thread_and_do_not_starve_a_scrape() {
        let registry = Arc::new(RwLock::new(vec![Arc::new(TenantStatus::new(
            "t",
            &[DataType::Alerts],
        ))]));
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let (_server, address) = spawn_metrics(any_port, registry).expect("serves");
        let threads_before = std::fs::read_dir("/proc/self/task").expect("tasks").count();
        // Far more idle connections than the cap, none sending anything.
        let idle: Vec<std::net::TcpStream> = (0..3 * MAX_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(address).expect("connects"))
            .collect();
        let answer = get(address, "/metrics");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(
            answer.contains("siem_agent_records_fetched_total"),
            "{answer}"
        );
        let health = get(address, "/healthz?x=1");
        assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"));
        assert!(get(address, "/nope").starts_with("HTTP/1.1 404"));
        let threads_after = std::fs::read_dir("/proc/self/task").expect("tasks").count();
        // Other tests run threads of their own meanwhile: the bound is
        // loose, but a thread per connection would add 192.
        assert!(
            threads_after < threads_before + 64,
            "{threads_before} -> {threads_after} threads"
        );
        drop(idle);
    }
}
