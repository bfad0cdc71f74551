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
//!
//! A TCP acknowledgement does not mean the receiving application read the
//! bytes; [`recent`] keeps the lines acknowledged last, and a busy
//! connection that ends sends them again.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::{Events, Poll, Token, Waker};

use super::returns::RETRY_RETURNS;
use super::{
    Batch, Protocol, Returns, SinkError, SinkHealth, SinkPlan, MAX_UNCONFIRMED_BYTES,
    RECONNECT_BASE, RECONNECT_MAX,
};
use crate::retry::Backoff;

mod connect;
mod link;
mod recent;
mod relp;
mod stream;
#[cfg(test)]
mod testing;
mod udp;

use link::{Failure, Link, Phase, Socket};
use recent::{Recent, RESEND_WINDOW};

/// Bytes framed and written as one unit on TCP and TLS.
const CHUNK_BYTES: usize = 256 * 1024;
/// First wait before looking at the send queue again after writing.
const ACK_POLL_MIN: Duration = Duration::from_millis(1);
/// Unconfirmed batches the writer holds at most (its queue has room for
/// them from the start): full batches up to the unconfirmed limit, twice
/// over.
const PENDING_BATCHES: usize = 2 * MAX_UNCONFIRMED_BYTES.div_ceil(super::BATCH_BYTES);
/// Longest wait between looks at the send queue while bytes are unconfirmed.
const ACK_POLL_MAX: Duration = Duration::from_millis(100);
/// How long a RELP `close` waits for its answer at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a receiver may reset the connection while the writer
/// closes it before the writer stops sending the last lines again.
const MAX_RESETS_AT_CLOSE: u32 = 3;
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
    /// `confirmed` once all its lines are. Over TCP and TLS only its ticket
    /// goes back then, in a batch without bytes, and its buffer follows a
    /// little later with ticket 0 (it is kept to be sent again if the
    /// connection ends while busy). Connection failures are retried
    /// forever; only a failure of the event loop itself ends the run early.
    pub fn run(self, batches: Receiver<Batch>, confirmed: Returns) -> Result<(), SinkError> {
        let relp_window = self.plan.relp_window.max(1);
        let stream = matches!(self.plan.protocol, Protocol::Tcp | Protocol::Tls);
        let resend_bytes = self.plan.resend_bytes;
        let mut state = Loop {
            label: self.label,
            plan: self.plan,
            poll: self.poll,
            health: self.health,
            batches,
            confirmed,
            // Room for the batches a backfill keeps unconfirmed, so the
            // queue does not grow (allocate) while they pile up.
            pending: VecDeque::with_capacity(PENDING_BATCHES),
            next_seq: 0,
            pending_bytes: 0,
            closed: false,
            link: None,
            retry_at: Instant::now(),
            backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX),
            connected_before: false,
            chunk: None,
            frame: Vec::new(),
            // A mark per chunk written and not acknowledged: a chunk ends
            // at its size or a batch's end.
            marks: VecDeque::with_capacity(
                MAX_UNCONFIRMED_BYTES.div_ceil(CHUNK_BYTES) + PENDING_BATCHES,
            ),
            relp_inflight: VecDeque::with_capacity(relp_window),
            relp_answer_due: None,
            read_buffer: Vec::new(),
            ack_poll: ACK_POLL_MIN,
            udp_failing: false,
            recent: Recent::new(if stream { resend_bytes } else { 0 }, RESEND_WINDOW),
            stuck_since: None,
            resets_at_close: 0,
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
    /// Bytes of the batch counted as confirmed: `confirmed` falls back
    /// below it when lines go out again (see [`recent`]), and they are not
    /// counted twice.
    counted: usize,
    /// Its ticket has gone back already: it is a kept batch sent again.
    ticket_returned: bool,
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

impl Chunk {
    /// The RELP frames in `Loop::frame`, `len` bytes: they carry no batch
    /// position, since RELP lines are confirmed by their answers.
    fn relp_frames(len: usize) -> Self {
        Self {
            seq: u64::MAX,
            end: 0,
            source: ChunkSource::Frame,
            len,
            done: 0,
        }
    }
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

struct Loop {
    plan: SinkPlan,
    poll: Poll,
    health: Arc<SinkHealth>,
    label: String,
    batches: Receiver<Batch>,
    confirmed: Returns,
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
    /// When the oldest unanswered RELP frame has waited too long (moved on
    /// by every answer).
    relp_answer_due: Option<Instant>,
    read_buffer: Vec<u8>,
    ack_poll: Duration,
    /// The last UDP send failed (the status shows a send error until one
    /// succeeds).
    udp_failing: bool,
    /// Batches the current TCP/TLS connection acknowledged last.
    recent: Recent,
    /// Since when written bytes have waited for an acknowledgement without
    /// any arriving (None: nothing waits).
    stuck_since: Option<Instant>,
    /// Times the receiver reset the connection while the writer closed it.
    resets_at_close: u32,
}

impl Loop {
    fn run(&mut self) -> Result<(), SinkError> {
        let mut events = Events::with_capacity(16);
        loop {
            self.take_batches();
            if self.closed && self.pending.is_empty() {
                match self.finish() {
                    Some(failure) if self.resets_at_close < MAX_RESETS_AT_CLOSE => {
                        // The receiver threw away what it had not read:
                        // send the last lines again, then close again.
                        self.resets_at_close += 1;
                        self.fail(failure);
                        if self.pending.is_empty() {
                            return Ok(());
                        }
                        continue;
                    }
                    _ => return Ok(()),
                }
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
            if let Err(failure) = self.check_relp_answers(Instant::now()) {
                self.fail(failure);
            }
            // Delivering may have finished the work, or made room for more.
            let done = self.closed && self.pending.is_empty();
            let room = !self.closed && self.has_room() && !self.batches.is_empty();
            if done || room {
                continue;
            }
            self.confirmed.flush();
            let mut timeout = self.timeout();
            if self.confirmed.waiting() {
                // Batches wait for room on the way back: look again soon.
                timeout = Some(timeout.map_or(RETRY_RETURNS, |t| t.min(RETRY_RETURNS)));
            }
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
        let returns = &mut self.confirmed;
        self.recent
            .release_if_quiet(now, self.stuck_since, &mut |batch| {
                give_back(returns, batch)
            });
        let quiet_in = self
            .recent
            .quiet_at()
            .map(|at| at.saturating_duration_since(now) + Duration::from_millis(1));
        let timeout = self.link_timeout(now);
        match (timeout, quiet_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long to sleep for the link's sake.
    fn link_timeout(&mut self, now: Instant) -> Option<Duration> {
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
        self.relp_answer_due
            .map(|due| due.saturating_duration_since(now))
    }

    /// Whether the writer takes another batch: it holds fewer unconfirmed
    /// bytes than [`MAX_UNCONFIRMED_BYTES`], in fewer batches than
    /// [`PENDING_BATCHES`] (small batches, one per page of a tailing
    /// tenant, would otherwise pile up by the thousand while the receiver
    /// is down, each with its buffer).
    fn has_room(&self) -> bool {
        self.pending_bytes < MAX_UNCONFIRMED_BYTES && self.pending.len() < PENDING_BATCHES
    }

    fn take_batches(&mut self) {
        while !self.closed && self.has_room() {
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
                        counted: 0,
                        ticket_returned: false,
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

    /// Gives up the connection: everything not confirmed will be sent again.
    fn fail(&mut self, failure: Failure) {
        self.drop_link();
        self.chunk = None;
        self.frame.clear();
        self.marks.clear();
        self.relp_inflight.clear();
        self.relp_answer_due = None;
        self.read_buffer.clear();
        let mut resent = 0;
        for pending in &mut self.pending {
            if pending.framed > pending.confirmed {
                resent +=
                    super::line_count(&pending.batch.bytes[pending.confirmed..pending.framed]);
                pending.framed = pending.confirmed;
            }
        }
        let recent = self.send_recent_again();
        resent += recent;
        SinkHealth::count(&self.health.counters.resent, resent);
        let delay = self.backoff.next_delay(None);
        self.retry_at = Instant::now() + delay;
        self.health.counters.failures_in_a_row.store(
            u64::from(self.backoff.attempts()),
            std::sync::atomic::Ordering::Relaxed,
        );
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
        if recent > 0 {
            tracing::info!(
                "{}: syslog: sending {recent} line(s) again that the receiver acknowledged in the last {} s of the connection: it may not have read them",
                self.label,
                RESEND_WINDOW.as_secs()
            );
        }
    }

    /// Puts the batches the ended connection acknowledged last (see
    /// [`recent`]) in front of everything pending, with the confirmed part
    /// of the first pending batch; the number of lines that go again.
    fn send_recent_again(&mut self) -> u64 {
        let busy = self.recent.busy(Instant::now(), self.stuck_since.take());
        let mut lines = 0;
        if busy {
            // Only the first pending batch can be confirmed in part.
            if let Some(front) = self.pending.front_mut() {
                lines += super::line_count(&front.batch.bytes[..front.confirmed]);
                front.confirmed = 0;
                front.framed = 0;
            }
        }
        let Self {
            recent,
            confirmed: returns,
            pending,
            pending_bytes,
            next_seq,
            ..
        } = self;
        recent.end(busy, &mut |batch| give_back(returns, batch), &mut |batch| {
            lines += batch.lines();
            *pending_bytes += batch.bytes.len();
            let seq = pending.front().map_or(*next_seq, |p| p.seq).wrapping_sub(1);
            pending.push_front(Pending {
                counted: batch.bytes.len(),
                batch,
                seq,
                framed: 0,
                confirmed: 0,
                ticket_returned: true,
            });
        });
        lines
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

    /// Batch `seq` is confirmed through byte `end`.
    fn confirm(&mut self, seq: u64, end: usize) {
        let Some(front) = self.pending.front() else {
            return;
        };
        let index = usize::try_from(seq.wrapping_sub(front.seq)).unwrap_or(usize::MAX);
        if let Some(pending) = self.pending.get_mut(index) {
            if end > pending.confirmed {
                pending.confirmed = end;
                self.recent.acknowledged(Instant::now());
                if end <= pending.counted {
                    // Lines sent again: counted already. (Nor do they
                    // reset the backoff: a receiver that throws away what
                    // each connection brings would be reconnected to at
                    // once, forever.)
                    return;
                }
                // Lines are counted once the batch is whole, from the
                // encoder's count: no pass over the bytes.
                if end == pending.batch.bytes.len() {
                    SinkHealth::count(&self.health.counters.confirmed, pending.batch.lines());
                }
                SinkHealth::count(
                    &self.health.counters.confirmed_bytes,
                    (end - pending.counted) as u64,
                );
                pending.counted = end;
                // New lines got through on this connection: it works, and
                // the next failure starts the backoff over.
                self.backoff.reset();
                self.health
                    .counters
                    .failures_in_a_row
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Returns fully confirmed batches, oldest first. Over TCP and TLS the
    /// ticket goes back at once and the buffer is kept (see [`recent`]).
    fn release(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.confirmed >= p.batch.bytes.len())
        {
            let Some(done) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= done.batch.bytes.len();
            if !self.recent.enabled() {
                self.confirmed.send(done.batch);
                continue;
            }
            if !done.ticket_returned {
                self.confirmed.send(Batch {
                    bytes: Vec::new(),
                    ticket: done.batch.ticket,
                    lines: done.batch.lines,
                });
            }
            let returns = &mut self.confirmed;
            self.recent.keep(done.batch, Instant::now(), &mut |batch| {
                give_back(returns, batch);
            });
        }
    }

    /// Everything is confirmed and nothing more will come: close politely.
    /// A TCP or TLS receiver that resets the connection instead of closing
    /// it threw away bytes it had acknowledged: that is the failure
    /// returned, when the writer keeps lines to send again.
    fn finish(&mut self) -> Option<Failure> {
        let relp = matches!(self.plan.protocol, Protocol::Relp | Protocol::RelpTls);
        // A reset matters only where acknowledged lines can go again.
        let resend = self.recent.enabled();
        let target = self.plan.target();
        let link = self.link.as_mut()?;
        if !matches!(link.phase, Phase::Ready) {
            return None;
        }
        if relp {
            let mut close = Vec::new();
            crate::sink::relp::write_frame(&mut close, link.txnr, "close", b"");
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
                if !wait_a_little(&mut self.poll, &mut events, deadline) {
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
        link.tcp()?;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut events = Events::with_capacity(4);
        let mut discard = Vec::new();
        while Instant::now() < deadline {
            discard.clear();
            match link.read(&mut discard) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) if resend => {
                    return Some(Failure::send(format!(
                        "{target} ({}): while closing: {error}",
                        link.address
                    )));
                }
                Err(_) => break,
            }
            if !wait_a_little(&mut self.poll, &mut events, deadline) {
                break;
            }
        }
        None
    }
}

/// Sends a kept batch's buffer back to the producer, for reuse: its
/// ticket went back when it was confirmed.
fn give_back(returns: &mut Returns, mut batch: Batch) {
    batch.ticket = 0;
    returns.send(batch);
}

/// Waits for an event, at most 100 ms and not past `deadline`; false when
/// polling fails.
fn wait_a_little(poll: &mut Poll, events: &mut Events, deadline: Instant) -> bool {
    let wait = deadline.saturating_duration_since(Instant::now());
    poll.poll(events, Some(wait.min(Duration::from_millis(100))))
        .is_ok()
}
