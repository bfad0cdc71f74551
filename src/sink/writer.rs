//! The syslog writer's event loop on mio: one socket, non-blocking connect,
//! writes until `WouldBlock`, confirmation tracking, and reconnects.
//!
//! Batches wait in `pending` from the moment they are taken off the channel
//! until every line in them is confirmed. For each batch the loop keeps two
//! offsets, both on line boundaries: how far it has been handed to the
//! connection (`framed`) and how far it is confirmed (`confirmed`). When a
//! connection fails, `framed` falls back to `confirmed` and the rest is
//! sent again on the next connection.
//!
//! What confirms a line depends on the transport:
//! - TCP and TLS: the bytes are written in chunks; after a chunk is
//!   completely in the socket, a *mark* records the connection's byte count
//!   at its end. A mark is reached once the peer's TCP stack has
//!   acknowledged that many bytes (written minus `SIOCOUTQ`). Nothing raises
//!   an event when an acknowledgement arrives, so the loop polls the queue
//!   while marks are outstanding, more slowly the longer nothing moves.
//! - RELP: each message is a transaction; `rsp 200` confirms it.
//! - UDP: sending is all there is.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};

use super::relp::{self, ServerFrame};
use super::{
    outq, Batch, LinkState, Protocol, SinkError, SinkHealth, SinkPlan, CONNECT_TIMEOUT,
    MAX_UNCONFIRMED_BYTES, RECONNECT_BASE, RECONNECT_MAX,
};
use crate::retry::Backoff;
use crate::syslog::{truncate_message, write_octet_counted, Framing};

/// Bytes framed and written as one unit on TCP and TLS.
const CHUNK_BYTES: usize = 256 * 1024;
/// First wait before looking at the send queue again after writing.
const ACK_POLL_MIN: Duration = Duration::from_millis(1);
/// Longest wait between looks at the send queue while bytes are unconfirmed.
const ACK_POLL_MAX: Duration = Duration::from_millis(100);
/// How long a RELP `close` waits for its answer at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer for what the receiver sends us.
const READ_BYTES: usize = 16 * 1024;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// The writer for one syslog destination. Create it, hand its
/// [`waker`](Self::waker) to the [`Feed`](super::Feed), and call
/// [`run`](Self::run) on the writer thread.
pub struct SyslogWriter {
    plan: SinkPlan,
    poll: Poll,
    waker: Arc<Waker>,
    health: Arc<SinkHealth>,
    /// Names the writer in log lines (the tenant).
    label: String,
}

impl SyslogWriter {
    /// Sets up the event loop (no connection is made yet).
    pub fn new(plan: SinkPlan, health: Arc<SinkHealth>, label: &str) -> Result<Self, SinkError> {
        let poll = Poll::new().map_err(SinkError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(SinkError::Poll)?);
        health.set_waker(Arc::clone(&waker));
        Ok(Self {
            plan,
            poll,
            waker,
            health,
            label: label.to_owned(),
        })
    }

    /// Wakes the loop when a batch has been sent or the channel closed.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Delivers batches from `batches` until the channel is closed and
    /// everything taken from it is confirmed; each batch goes back on
    /// `confirmed` once all its lines are. Connection failures are retried
    /// forever; only a failure of the event loop itself ends the run early.
    pub fn run(self, batches: Receiver<Batch>, confirmed: Sender<Batch>) -> Result<(), SinkError> {
        let mut state = Loop {
            label: self.label,
            plan: self.plan,
            poll: self.poll,
            health: self.health,
            batches,
            confirmed,
            pending: VecDeque::new(),
            next_seq: 0,
            pending_bytes: 0,
            closed: false,
            link: None,
            retry_at: Instant::now(),
            backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX),
            connected_before: false,
            chunk: None,
            frame: Vec::new(),
            marks: VecDeque::new(),
            relp_inflight: VecDeque::new(),
            read_buffer: Vec::new(),
            ack_poll: ACK_POLL_MIN,
            udp_failing: false,
        };
        state.run()
    }
}

/// A batch being delivered.
struct Pending {
    batch: Batch,
    /// Position in the writer's sequence of batches.
    seq: u64,
    /// Bytes of the batch handed to the connection (a line boundary).
    framed: usize,
    /// Bytes of the batch confirmed (a line boundary).
    confirmed: usize,
}

/// Where a chunk's bytes are.
enum ChunkSource {
    /// Straight from the batch: LF framing needs no copy.
    Batch { start: usize },
    /// Re-framed into `Loop::frame`.
    Frame,
}

/// The unit written on TCP and TLS.
struct Chunk {
    seq: u64,
    /// Batch offset after the chunk's last line.
    end: usize,
    source: ChunkSource,
    len: usize,
    /// Bytes of the chunk the connection has accepted.
    done: usize,
}

/// "Confirmed through `end` of batch `seq` once `position` bytes of this
/// connection are acknowledged."
struct Mark {
    position: u64,
    seq: u64,
    end: usize,
}

/// A RELP message awaiting its answer.
struct RelpInFlight {
    txnr: u32,
    seq: u64,
    end: usize,
    answered: bool,
}

enum Phase {
    /// TCP connect in progress; `rest` are the addresses still to try.
    Connecting { rest: Vec<SocketAddr> },
    /// TLS handshake in progress.
    Handshaking,
    /// RELP `open` sent, answer awaited.
    RelpOpening,
    /// Delivering.
    Ready,
}

enum Socket {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// One connection to the receiver.
struct Link {
    socket: Socket,
    tls: Option<rustls::ClientConnection>,
    phase: Phase,
    deadline: Instant,
    address: SocketAddr,
    /// The socket can take more bytes (until the next `WouldBlock`).
    writable: bool,
    /// Bytes written to the socket on this connection (ciphertext for TLS).
    written: u64,
    /// Next RELP transaction number.
    txnr: u32,
}

/// Why a connection is given up.
struct Failure {
    state: LinkState,
    message: String,
}

impl Failure {
    fn connect(message: impl Into<String>) -> Self {
        Self {
            state: LinkState::ConnectionError,
            message: message.into(),
        }
    }

    fn send(message: impl Into<String>) -> Self {
        Self {
            state: LinkState::SendError,
            message: message.into(),
        }
    }
}

/// The message of a line: without its LF, cut to the size limit (and
/// counted when cut).
fn message<'a>(line: &'a [u8], max: Option<usize>, health: &SinkHealth) -> &'a [u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    match max {
        Some(max) if line.len() > max => {
            SinkHealth::count(&health.counters.truncated, 1);
            truncate_message(line, max)
        }
        _ => line,
    }
}

fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

impl Link {
    /// A new connection in `phase`. A UDP socket can send at once; a TCP
    /// connect has `CONNECT_TIMEOUT` to finish (with its handshakes).
    fn new(socket: Socket, address: SocketAddr, phase: Phase) -> Self {
        let udp = matches!(socket, Socket::Udp(_));
        Self {
            socket,
            tls: None,
            phase,
            deadline: Instant::now() + CONNECT_TIMEOUT,
            address,
            writable: udp,
            written: 0,
            txnr: 1,
        }
    }

    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match &mut self.socket {
            Socket::Tcp(stream) => Some(stream),
            Socket::Udp(_) => None,
        }
    }

    /// Writes pending TLS records; true when none are left.
    fn flush(&mut self) -> io::Result<bool> {
        let Some(tls) = &mut self.tls else {
            return Ok(true);
        };
        let Socket::Tcp(stream) = &mut self.socket else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(n) => self.written += n as u64,
                Err(e) if would_block(&e) => {
                    self.writable = false;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Hands bytes to the connection; returns how many it took, or
    /// `WouldBlock` when it can take none now.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            let Socket::Tcp(stream) = &mut self.socket else {
                return Err(io::Error::other("not a stream"));
            };
            return match stream.write(data) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket took nothing",
                )),
                Ok(n) => {
                    self.written += n as u64;
                    Ok(n)
                }
                Err(e) => {
                    if would_block(&e) {
                        self.writable = false;
                    }
                    Err(e)
                }
            };
        }
        for _ in 0..2 {
            let taken = match &mut self.tls {
                Some(tls) => tls.writer().write(data)?,
                None => 0,
            };
            let flushed = self.flush()?;
            if taken > 0 {
                return Ok(taken);
            }
            if !flushed {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the TLS session takes no more data",
        ))
    }

    /// Reads what the receiver sent; plaintext goes to `into`. `Ok(false)`
    /// means the receiver closed the connection.
    fn read(&mut self, into: &mut Vec<u8>) -> Result<bool, String> {
        let mut scratch = [0u8; READ_BYTES];
        loop {
            match (&mut self.socket, &mut self.tls) {
                (Socket::Tcp(stream), None) => match stream.read(&mut scratch) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        if into.len() + n > relp::MAX_RESPONSE_FRAME * 4 {
                            return Err("the receiver sends more than it should".into());
                        }
                        into.extend_from_slice(&scratch[..n]);
                    }
                    Err(e) if would_block(&e) => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.to_string()),
                },
                (Socket::Tcp(stream), Some(tls)) => {
                    match tls.read_tls(stream) {
                        Ok(0) => return Ok(false),
                        Ok(_) => {}
                        Err(e) if would_block(&e) => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                    let state = tls.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
                    let mut plaintext = state.plaintext_bytes_to_read();
                    while plaintext > 0 {
                        let n = tls.reader().read(&mut scratch).map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        into.extend_from_slice(&scratch[..n]);
                        plaintext = plaintext.saturating_sub(n);
                    }
                    if state.peer_has_closed() {
                        return Ok(false);
                    }
                    // Handshake replies and alerts.
                    self.flush().map_err(|e| e.to_string())?;
                }
                (Socket::Udp(socket), _) => {
                    // Only ICMP errors arrive here; they surface on send.
                    return match socket.recv(&mut scratch) {
                        Ok(_) => Ok(true),
                        Err(e) if would_block(&e) => Ok(true),
                        Err(_) => Ok(true),
                    };
                }
            }
        }
    }
}

struct Loop {
    plan: SinkPlan,
    poll: Poll,
    health: Arc<SinkHealth>,
    label: String,
    batches: Receiver<Batch>,
    confirmed: Sender<Batch>,
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// Bytes of all pending batches.
    pending_bytes: usize,
    /// The channel is closed: finish what is pending, then stop.
    closed: bool,
    link: Option<Link>,
    retry_at: Instant,
    backoff: Backoff,
    connected_before: bool,
    chunk: Option<Chunk>,
    /// Framed bytes: the current TCP/TLS chunk, or RELP frames.
    frame: Vec<u8>,
    marks: VecDeque<Mark>,
    relp_inflight: VecDeque<RelpInFlight>,
    read_buffer: Vec<u8>,
    ack_poll: Duration,
    /// The last UDP send failed (the status shows a send error until one
    /// succeeds).
    udp_failing: bool,
}

impl Loop {
    fn run(&mut self) -> Result<(), SinkError> {
        let mut events = Events::with_capacity(16);
        loop {
            self.take_batches();
            if self.closed && self.pending.is_empty() {
                self.finish();
                return Ok(());
            }
            if self.health.abandoned() {
                // The producer may be blocked sending to a full channel:
                // returning drops the receiving end, which unblocks it.
                return Ok(());
            }
            if self.link.is_none() && Instant::now() >= self.retry_at {
                if let Err(failure) = self.connect() {
                    self.fail(failure);
                }
            }
            if let Err(failure) = self.progress() {
                self.fail(failure);
            }
            // Delivering may have finished the work, or made room for more.
            let done = self.closed && self.pending.is_empty();
            let room = !self.closed
                && self.pending_bytes < MAX_UNCONFIRMED_BYTES
                && !self.batches.is_empty();
            if done || room {
                continue;
            }
            let timeout = self.timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(SinkError::Poll(error));
                }
            }
            for event in events.iter() {
                if event.token() != SOCKET {
                    continue;
                }
                if let Some(link) = &mut self.link {
                    if event.is_writable() {
                        link.writable = true;
                    }
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(failure) = self.on_readable() {
                        self.fail(failure);
                    }
                }
            }
        }
    }

    /// How long to sleep in `poll`.
    fn timeout(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let Some(link) = &self.link else {
            return Some(self.retry_at.saturating_duration_since(now));
        };
        if !matches!(link.phase, Phase::Ready) {
            return Some(link.deadline.saturating_duration_since(now));
        }
        if !self.marks.is_empty() {
            let wait = self.ack_poll;
            self.ack_poll = (self.ack_poll * 2).min(ACK_POLL_MAX);
            return Some(wait);
        }
        None
    }

    fn take_batches(&mut self) {
        while !self.closed && self.pending_bytes < MAX_UNCONFIRMED_BYTES {
            match self.batches.try_recv() {
                Ok(batch) => {
                    self.health
                        .counters
                        .queued
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    self.pending_bytes += batch.bytes.len();
                    self.pending.push_back(Pending {
                        batch,
                        seq: self.next_seq,
                        framed: 0,
                        confirmed: 0,
                    });
                    self.next_seq += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.closed = true,
            }
        }
        // Empty batches are confirmed as soon as their turn comes.
        self.release();
    }

    /// Resolves the host (again, every time) and starts connecting.
    fn connect(&mut self) -> Result<(), Failure> {
        let target = self.plan.target();
        let addresses: Vec<SocketAddr> = (self.plan.host.as_str(), self.plan.port)
            .to_socket_addrs()
            .map_err(|e| Failure::connect(format!("{target}: cannot resolve: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(Failure::connect(format!("{target}: no address")));
        }
        if self.plan.protocol == Protocol::Udp {
            return self.open_udp(&addresses);
        }
        self.start_tcp(addresses)
    }

    fn open_udp(&mut self, addresses: &[SocketAddr]) -> Result<(), Failure> {
        let mut last = String::new();
        for &address in addresses {
            let local: SocketAddr = if address.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let opened = UdpSocket::bind(local).and_then(|mut socket| {
                socket.connect(address)?;
                self.poll.registry().register(
                    &mut socket,
                    SOCKET,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(socket)
            });
            match opened {
                Ok(socket) => {
                    self.link = Some(Link::new(Socket::Udp(socket), address, Phase::Ready));
                    self.on_ready();
                    return Ok(());
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(Failure::connect(format!("{}: {last}", self.plan.target())))
    }

    /// Starts a non-blocking connect to the first address; the others are
    /// tried in turn if it fails.
    fn start_tcp(&mut self, mut addresses: Vec<SocketAddr>) -> Result<(), Failure> {
        addresses.reverse();
        let mut last = String::new();
        while let Some(address) = addresses.pop() {
            let started = TcpStream::connect(address).and_then(|mut stream| {
                self.poll.registry().register(
                    &mut stream,
                    SOCKET,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    let phase = Phase::Connecting { rest: addresses };
                    self.link = Some(Link::new(Socket::Tcp(stream), address, phase));
                    return Ok(());
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(Failure::connect(format!("{}: {last}", self.plan.target())))
    }

    /// Moves the connection along: connect, handshakes, then delivery.
    fn progress(&mut self) -> Result<(), Failure> {
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if !matches!(link.phase, Phase::Ready) && Instant::now() >= link.deadline {
            return Err(Failure::connect(format!(
                "{} ({}): timed out connecting",
                self.plan.target(),
                link.address
            )));
        }
        if let Phase::Connecting { rest } = &mut link.phase {
            if !link.writable {
                return Ok(());
            }
            let Socket::Tcp(stream) = &mut link.socket else {
                return Ok(());
            };
            let outcome = match stream.take_error() {
                Ok(Some(error)) | Err(error) => Err(error),
                Ok(None) => stream.peer_addr().map(|_| ()),
            };
            match outcome {
                Ok(()) => {}
                // Not connected yet: a spurious wake-up.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    link.writable = false;
                    return Ok(());
                }
                Err(e) => {
                    let rest = std::mem::take(rest);
                    let message = format!("{} ({}): {e}", self.plan.target(), link.address);
                    self.drop_link();
                    if rest.is_empty() {
                        return Err(Failure::connect(message));
                    }
                    return self.start_tcp(rest);
                }
            }
            let _ = stream.set_nodelay(true);
            if let Some(client) = &self.plan.tls {
                let mut tls = rustls::ClientConnection::new(
                    client.config.clone(),
                    client.server_name.clone(),
                )
                .map_err(|e| Failure::connect(format!("TLS: {e}")))?;
                tls.set_buffer_limit(Some(CHUNK_BYTES * 2));
                link.tls = Some(tls);
                link.phase = Phase::Handshaking;
            } else {
                self.after_transport()?;
            }
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if matches!(link.phase, Phase::Handshaking) {
            link.flush()
                .map_err(|e| Failure::connect(format!("TLS: {e}")))?;
            if link.tls.as_ref().is_some_and(|tls| !tls.is_handshaking()) {
                self.after_transport()?;
            } else {
                return Ok(());
            }
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        match link.phase {
            Phase::RelpOpening => {
                link.flush().map_err(|e| Failure::connect(e.to_string()))?;
                self.write_frames()
                    .map_err(|f| Failure::connect(f.message))?;
                Ok(())
            }
            Phase::Ready => self.deliver(),
            _ => Ok(()),
        }
    }

    /// The byte stream is up (TCP connected, TLS handshake done).
    fn after_transport(&mut self) -> Result<(), Failure> {
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if relp {
            self.frame.clear();
            relp::write_frame(&mut self.frame, 1, "open", relp::OPEN_OFFERS.as_bytes());
            link.txnr = relp::next_txnr(1);
            link.phase = Phase::RelpOpening;
            self.chunk = Some(Chunk {
                seq: u64::MAX,
                end: 0,
                source: ChunkSource::Frame,
                len: self.frame.len(),
                done: 0,
            });
            return self.write_frames().map_err(|f| Failure::connect(f.message));
        }
        link.phase = Phase::Ready;
        self.on_ready();
        Ok(())
    }

    fn on_ready(&mut self) {
        let Some(link) = &self.link else { return };
        self.backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
        if self.connected_before {
            super::SinkHealth::count(&self.health.counters.reconnects, 1);
        }
        self.connected_before = true;
        if self.health.set(LinkState::Connected, None) {
            tracing::info!(
                "{}: syslog: connected to {} ({}, {:?})",
                self.label,
                self.plan.target(),
                link.address,
                self.plan.protocol
            );
        }
    }

    /// Gives up the connection: everything not confirmed will be sent again.
    fn fail(&mut self, failure: Failure) {
        self.drop_link();
        self.chunk = None;
        self.frame.clear();
        self.marks.clear();
        self.relp_inflight.clear();
        self.read_buffer.clear();
        let mut resent = 0;
        for pending in &mut self.pending {
            if pending.framed > pending.confirmed {
                resent +=
                    super::line_count(&pending.batch.bytes[pending.confirmed..pending.framed]);
                pending.framed = pending.confirmed;
            }
        }
        SinkHealth::count(&self.health.counters.resent, resent);
        let delay = self.backoff.next_delay(None);
        self.retry_at = Instant::now() + delay;
        if self
            .health
            .set(failure.state, Some(failure.message.clone()))
        {
            tracing::warn!(
                "{}: syslog: {}: {}; {} line(s) waiting; retrying with backoff",
                self.label,
                failure.state.describe(),
                failure.message,
                self.pending
                    .iter()
                    .map(|p| super::line_count(&p.batch.bytes[p.confirmed..]))
                    .sum::<u64>()
            );
        }
    }

    fn drop_link(&mut self) {
        if let Some(mut link) = self.link.take() {
            let registry = self.poll.registry();
            let _ = match &mut link.socket {
                Socket::Tcp(stream) => registry.deregister(stream),
                Socket::Udp(socket) => registry.deregister(socket),
            };
        }
    }

    fn on_readable(&mut self) -> Result<(), Failure> {
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        if matches!(link.phase, Phase::Connecting { .. }) {
            // The connect's outcome is read in `progress`.
            link.writable = true;
            return Ok(());
        }
        // Failing before the link is up (a TLS handshake refused, say) is a
        // connection error; after that, a send error.
        let failure = if matches!(link.phase, Phase::Ready) {
            Failure::send
        } else {
            Failure::connect
        };
        let open = link
            .read(&mut self.read_buffer)
            .map_err(|e| failure(format!("{} ({}): {e}", self.plan.target(), link.address)))?;
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        if relp {
            self.on_relp_answers()?;
        } else {
            // A syslog receiver has nothing to say; ignore what it sends.
            self.read_buffer.clear();
        }
        if !open {
            let address = self.link.as_ref().map(|l| l.address);
            return Err(failure(format!(
                "{} ({}): the receiver closed the connection",
                self.plan.target(),
                address.map(|a| a.to_string()).unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn on_relp_answers(&mut self) -> Result<(), Failure> {
        let mut used = 0;
        loop {
            let frame = relp::parse_frame(&self.read_buffer[used..])
                .map_err(|e| Failure::send(e.to_string()))?;
            let Some((frame, length)) = frame else { break };
            used += length;
            match frame {
                ServerFrame::ServerClose => {
                    return Err(Failure::send("the receiver closed the RELP session"));
                }
                ServerFrame::Response { txnr, code, text } => {
                    let Some(link) = &mut self.link else { break };
                    if matches!(link.phase, Phase::RelpOpening) {
                        if txnr != 1 || code != 200 {
                            return Err(Failure::connect(format!(
                                "RELP open refused: {code} {text}"
                            )));
                        }
                        link.phase = Phase::Ready;
                        self.on_ready();
                        continue;
                    }
                    if code != 200 {
                        return Err(Failure::send(format!(
                            "the receiver refused a message: {code} {text}"
                        )));
                    }
                    let Some(entry) = self.relp_inflight.iter_mut().find(|m| m.txnr == txnr) else {
                        // The answer to our `close`, or a stray: nothing to confirm.
                        continue;
                    };
                    entry.answered = true;
                }
            }
        }
        self.read_buffer.drain(..used);
        while self.relp_inflight.front().is_some_and(|m| m.answered) {
            if let Some(done) = self.relp_inflight.pop_front() {
                self.confirm(done.seq, done.end);
            }
        }
        self.release();
        Ok(())
    }

    /// Sends what can be sent and collects confirmations.
    fn deliver(&mut self) -> Result<(), Failure> {
        match self.plan.protocol {
            Protocol::Udp => self.deliver_udp(),
            Protocol::Relp | Protocol::RelpTls => {
                self.frame_relp();
                self.write_frames()
            }
            Protocol::Tcp | Protocol::Tls => {
                self.deliver_stream()?;
                self.check_acknowledged()
            }
        }
    }

    /// The next line of the first batch with lines not yet handed over:
    /// (index in `pending`, start, end including the LF).
    fn next_line(&self) -> Option<(usize, usize, usize)> {
        let index = self
            .pending
            .iter()
            .position(|p| p.framed < p.batch.bytes.len())?;
        let pending = &self.pending[index];
        let bytes = &pending.batch.bytes;
        let start = pending.framed;
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |at| start + at + 1);
        Some((index, start, end))
    }

    fn deliver_udp(&mut self) -> Result<(), Failure> {
        while let Some((index, start, end)) = self.next_line() {
            let Some(Link {
                socket: Socket::Udp(socket),
                writable,
                ..
            }) = &mut self.link
            else {
                return Ok(());
            };
            if !*writable {
                return Ok(());
            }
            let line = &self.pending[index].batch.bytes[start..end];
            let message = message(line, self.plan.max_message, &self.health);
            // An earlier datagram's ICMP error is reported on a later send,
            // which then did not go out: try it once more.
            let mut sent = socket.send(message);
            if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
                sent = socket.send(message);
            }
            match sent {
                Ok(_) => {
                    if self.udp_failing {
                        self.udp_failing = false;
                        if self.health.set(LinkState::Connected, None) {
                            tracing::info!(
                                "{}: syslog: {}: UDP sends succeed again",
                                self.label,
                                self.plan.target()
                            );
                        }
                    }
                }
                Err(e) if would_block(&e) => {
                    *writable = false;
                    return Ok(());
                }
                Err(e) => {
                    self.udp_failing = true;
                    SinkHealth::count(&self.health.counters.dropped, 1);
                    if self
                        .health
                        .set(LinkState::SendError, Some(format!("UDP: {e}")))
                    {
                        tracing::warn!(
                            "{}: syslog: {}: {}: {e}; UDP datagrams are being lost",
                            self.label,
                            LinkState::SendError.describe(),
                            self.plan.target()
                        );
                    }
                }
            }
            let seq = self.pending[index].seq;
            self.pending[index].framed = end;
            self.confirm(seq, end);
            self.release();
        }
        Ok(())
    }

    /// Writes chunks on TCP or TLS until the socket is full or nothing is
    /// left, leaving a mark behind each chunk that is completely out.
    fn deliver_stream(&mut self) -> Result<(), Failure> {
        loop {
            if self.chunk.is_none() && !self.next_chunk() {
                return Ok(());
            }
            if !self.write_chunk()? {
                return Ok(());
            }
            let (Some(link), Some(chunk)) = (&self.link, self.chunk.take()) else {
                return Ok(());
            };
            self.marks.push_back(Mark {
                position: link.written,
                seq: chunk.seq,
                end: chunk.end,
            });
            self.ack_poll = ACK_POLL_MIN;
        }
    }

    /// Writes the rest of the current chunk (from its batch or from
    /// `frame`) and any TLS records it left; true when all of it is in the
    /// socket, false when the socket is full for now.
    fn write_chunk(&mut self) -> Result<bool, Failure> {
        let (Some(link), Some(chunk)) = (&mut self.link, &mut self.chunk) else {
            return Ok(false);
        };
        let failed = |link: &Link, e: io::Error| {
            Failure::send(format!("{} ({}): {e}", self.plan.target(), link.address))
        };
        while chunk.done < chunk.len {
            if !link.writable {
                return Ok(false);
            }
            let data = match chunk.source {
                ChunkSource::Frame => &self.frame[chunk.done..chunk.len],
                ChunkSource::Batch { start } => {
                    let Some(front) = self.pending.front() else {
                        return Ok(false);
                    };
                    let index = usize::try_from(chunk.seq - front.seq).unwrap_or(usize::MAX);
                    let Some(pending) = self.pending.get(index) else {
                        return Ok(false);
                    };
                    &pending.batch.bytes[start + chunk.done..start + chunk.len]
                }
            };
            match link.write(data) {
                Ok(n) => chunk.done += n,
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(failed(link, e)),
            }
        }
        link.flush().map_err(|e| failed(link, e))
    }

    /// Prepares the next chunk; false when every line has been handed over.
    fn next_chunk(&mut self) -> bool {
        let Some(index) = self
            .pending
            .iter()
            .position(|p| p.framed < p.batch.bytes.len())
        else {
            return false;
        };
        let plain_lf = self.plan.framing == Framing::Lf && self.plan.max_message.is_none();
        let pending = &mut self.pending[index];
        let start = pending.framed;
        if plain_lf {
            let end = pending.batch.bytes.len();
            pending.framed = end;
            self.chunk = Some(Chunk {
                seq: pending.seq,
                end,
                source: ChunkSource::Batch { start },
                len: end - start,
                done: 0,
            });
            return true;
        }
        let seq = pending.seq;
        self.frame.clear();
        let mut at = start;
        while at < self.pending[index].batch.bytes.len() && self.frame.len() < CHUNK_BYTES {
            let bytes = &self.pending[index].batch.bytes;
            let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |n| at + n + 1);
            let message = message(&bytes[at..end], self.plan.max_message, &self.health);
            match self.plan.framing {
                Framing::Lf => {
                    self.frame.extend_from_slice(message);
                    self.frame.push(b'\n');
                }
                Framing::OctetCounting => write_octet_counted(&mut self.frame, message),
            }
            at = end;
        }
        self.pending[index].framed = at;
        self.chunk = Some(Chunk {
            seq,
            end: at,
            source: ChunkSource::Frame,
            len: self.frame.len(),
            done: 0,
        });
        true
    }

    /// Confirms every mark the receiver's TCP stack has acknowledged.
    fn check_acknowledged(&mut self) -> Result<(), Failure> {
        if self.marks.is_empty() {
            return Ok(());
        }
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        let written = link.written;
        let address = link.address;
        let Some(stream) = link.tcp() else {
            return Ok(());
        };
        let queued = outq::unacknowledged(stream)
            .map_err(|e| Failure::send(format!("{address}: send queue: {e}")))?;
        let acknowledged = written.saturating_sub(queued);
        let mut moved = false;
        while let Some(mark) = self.marks.front() {
            if mark.position > acknowledged {
                break;
            }
            let (seq, end) = (mark.seq, mark.end);
            self.marks.pop_front();
            self.confirm(seq, end);
            moved = true;
        }
        if moved {
            self.ack_poll = ACK_POLL_MIN;
            self.release();
        }
        Ok(())
    }

    /// Frames RELP `syslog` messages up to the window, once the previous
    /// frames are all written.
    fn frame_relp(&mut self) {
        if self.chunk.is_some() {
            return;
        }
        self.frame.clear();
        while self.relp_inflight.len() < self.plan.relp_window.max(1) {
            let Some((index, start, end)) = self.next_line() else {
                break;
            };
            let Some(link) = &mut self.link else { return };
            let txnr = link.txnr;
            link.txnr = relp::next_txnr(txnr);
            let line = &self.pending[index].batch.bytes[start..end];
            let message = message(line, self.plan.max_message, &self.health);
            relp::write_frame(&mut self.frame, txnr, "syslog", message);
            let pending = &mut self.pending[index];
            pending.framed = end;
            self.relp_inflight.push_back(RelpInFlight {
                txnr,
                seq: pending.seq,
                end,
                answered: false,
            });
        }
        if !self.frame.is_empty() {
            self.chunk = Some(Chunk {
                seq: u64::MAX,
                end: 0,
                source: ChunkSource::Frame,
                len: self.frame.len(),
                done: 0,
            });
        }
    }

    /// Writes the framed RELP bytes in `frame`, and frames more while the
    /// window has room.
    fn write_frames(&mut self) -> Result<(), Failure> {
        while self.chunk.is_some() && self.write_chunk()? {
            self.chunk = None;
            if !self
                .link
                .as_ref()
                .is_some_and(|l| matches!(l.phase, Phase::Ready))
            {
                break;
            }
            self.frame_relp();
        }
        Ok(())
    }

    /// Batch `seq` is confirmed through byte `end`.
    fn confirm(&mut self, seq: u64, end: usize) {
        let Some(front) = self.pending.front() else {
            return;
        };
        let index = usize::try_from(seq.wrapping_sub(front.seq)).unwrap_or(usize::MAX);
        if let Some(pending) = self.pending.get_mut(index) {
            if end > pending.confirmed {
                let newly = &pending.batch.bytes[pending.confirmed..end];
                SinkHealth::count(&self.health.counters.confirmed, super::line_count(newly));
                SinkHealth::count(&self.health.counters.confirmed_bytes, newly.len() as u64);
                pending.confirmed = end;
            }
        }
    }

    /// Returns fully confirmed batches, oldest first.
    fn release(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.confirmed >= p.batch.bytes.len())
        {
            if let Some(done) = self.pending.pop_front() {
                self.pending_bytes -= done.batch.bytes.len();
                // The producer may have stopped listening; the batch is then done.
                let _ = self.confirmed.send(done.batch);
            }
        }
    }

    /// Everything is confirmed and nothing more will come: close politely.
    fn finish(&mut self) {
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        let Some(link) = &mut self.link else { return };
        if !matches!(link.phase, Phase::Ready) {
            return;
        }
        if relp {
            let mut close = Vec::new();
            relp::write_frame(&mut close, link.txnr, "close", b"");
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            let mut written = 0;
            let mut events = Events::with_capacity(4);
            while Instant::now() < deadline {
                while written < close.len() {
                    match link.write(&close[written..]) {
                        Ok(n) => written += n,
                        Err(_) => break,
                    }
                }
                let _ = link.flush();
                let mut answer = Vec::new();
                match link.read(&mut answer) {
                    Ok(true) if answer.is_empty() => {}
                    // An answer, or the receiver closed: done either way.
                    _ => break,
                }
                let wait = deadline.saturating_duration_since(Instant::now());
                if self
                    .poll
                    .poll(&mut events, Some(wait.min(Duration::from_millis(100))))
                    .is_err()
                {
                    break;
                }
            }
        }
        if let Some(tls) = &mut link.tls {
            tls.send_close_notify();
            let _ = link.flush();
        }
        if let Some(stream) = link.tcp() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        // Closing a socket with unread bytes in it (TLS session tickets,
        // say) sends a reset, and a reset can make the receiver drop what
        // its kernel had already acknowledged. Read until the receiver
        // closes its side, bounded in time.
        if link.tcp().is_none() {
            return;
        }
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut events = Events::with_capacity(4);
        let mut discard = Vec::new();
        while Instant::now() < deadline {
            discard.clear();
            match link.read(&mut discard) {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if self
                .poll
                .poll(&mut events, Some(wait.min(Duration::from_millis(100))))
                .is_err()
            {
                break;
            }
        }
    }
}
