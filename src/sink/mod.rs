//! Delivery: the writer thread that hands CEF lines to the SIEM.
//!
//! Upstream stages send [`Batch`]es (whole lines, each ending in LF) over a
//! bounded channel and get each batch back, emptied of meaning but with its
//! buffer intact, once every line in it is *confirmed*:
//!
//! - stdout: written and flushed;
//! - TCP and TLS: acknowledged by the receiver's TCP stack (see [`outq`]);
//! - RELP: answered `rsp 200` by the receiving application;
//! - UDP: sent (UDP has no acknowledgements; nothing is guaranteed).
//!
//! A returned batch is the signal that moves a checkpoint, and its buffer
//! is reused for the next one, so steady state allocates nothing. Lines
//! that were written but not confirmed when a connection failed are sent
//! again on the next connection (and counted as possible duplicates). The
//! writer holds a bounded number of unconfirmed bytes; when the receiver is
//! down or slow it stops taking batches, the channel fills, and the
//! producers block: fetching pauses and memory stays bounded.

pub mod outq;
pub mod relp;
pub mod returns;
pub mod tls;
mod writer;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendError, Sender};
use parking_lot::Mutex;

pub use returns::{Returned, Returns};
pub use writer::SyslogWriter;

use crate::syslog::Framing;
use tls::TlsClient;

/// Bytes a producer should put in one batch before sending it.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Room a new batch has beyond [`BATCH_BYTES`] for the line that crosses
/// it, so that it does not grow.
pub const BATCH_SLACK_BYTES: usize = 16 << 10;
/// Unconfirmed bytes the writer holds before it stops taking batches.
pub const MAX_UNCONFIRMED_BYTES: usize = 8 << 20;
/// Reconnect delays start here and double, with jitter...
pub const RECONNECT_BASE: Duration = Duration::from_millis(200);
/// ... up to this.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A connection attempt (TCP connect plus TLS or RELP handshake) that takes
/// longer than this fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines on their way to the SIEM.
#[derive(Debug, Default)]
pub struct Batch {
    /// Whole lines, each ending in LF.
    pub bytes: Vec<u8>,
    /// The producer's tag for this batch (e.g. which checkpoint it
    /// completes); the writer hands it back untouched.
    pub ticket: u64,
    /// How many lines `bytes` holds, when the producer counted them as it
    /// wrote them (the encoder does); otherwise they are counted from the
    /// bytes when the batch is confirmed.
    pub lines: Option<u64>,
}

impl Batch {
    /// An empty batch with room for [`BATCH_BYTES`] and the line that
    /// crosses it.
    pub fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(BATCH_BYTES + BATCH_SLACK_BYTES),
            ticket: 0,
            lines: None,
        }
    }

    /// Number of lines in the batch: the producer's count, or counted.
    pub fn lines(&self) -> u64 {
        self.lines.unwrap_or_else(|| line_count(&self.bytes))
    }
}

/// LF-terminated lines in `bytes`.
pub(crate) fn line_count(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// The transport to the SIEM.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Syslog over UDP: one message per datagram, no delivery guarantee.
    Udp,
    /// Syslog over TCP.
    Tcp,
    /// Syslog over TLS (RFC 5425).
    Tls,
    /// RELP over TCP: every message acknowledged by the receiver.
    Relp,
    /// RELP over TLS.
    RelpTls,
}

impl Protocol {
    /// Whether the connection is wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::RelpTls)
    }

    /// The conventional port.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Udp | Protocol::Tcp => 514,
            Protocol::Tls => 6514,
            Protocol::Relp | Protocol::RelpTls => 2514,
        }
    }
}

/// A validated syslog destination.
#[derive(Clone, Debug)]
pub struct SinkPlan {
    /// Host name or address, resolved again at every connection attempt.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Framing on TCP and TLS (RELP frames its own messages).
    pub framing: Framing,
    /// Messages longer than this are cut (on a character boundary) and
    /// counted; always set for UDP.
    pub max_message: Option<usize>,
    /// TLS settings, for `tls` and `relp-tls`.
    pub tls: Option<TlsClient>,
    /// RELP window: `syslog` frames sent and not yet answered.
    pub relp_window: usize,
    /// RELP: how long frames may wait for an answer before the connection
    /// is given up (a receiver that stops answering stalls delivery
    /// otherwise without a word).
    pub relp_answer_timeout: std::time::Duration,
    /// TCP and TLS: the most bytes of the lines a connection acknowledged
    /// last that are sent again when it ends while busy (0: none).
    pub resend_bytes: usize,
}

/// Bytes of the lines acknowledged last that are sent again after a busy
/// TCP or TLS connection ends, unless configured otherwise: about twice
/// what a receiver restarted while lagging behind had unread in the tests.
pub const DEFAULT_RESEND_BYTES: usize = 4 << 20;
/// The most that may be configured for that.
pub const MAX_RESEND_BYTES: usize = 64 << 20;

/// How long RELP frames wait for an answer unless configured otherwise.
pub const RELP_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl SinkPlan {
    /// `host:port` as the user wrote it, for messages.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where the lines go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A syslog receiver.
    Syslog(SinkPlan),
}

/// The writer's connection state, as the status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet.
    Connecting,
    /// Connected and delivering.
    Connected,
    /// The receiver cannot be reached ("Data server connection error").
    ConnectionError,
    /// A connection failed while sending ("Data server send error").
    SendError,
}

impl LinkState {
    /// The words the status and the log use.
    pub fn describe(self) -> &'static str {
        match self {
            LinkState::Connecting => "Connecting",
            LinkState::Connected => "Connected",
            LinkState::ConnectionError => "Data server connection error",
            LinkState::SendError => "Data server send error",
        }
    }
}

/// What the writer has done, readable while it runs.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Lines confirmed (see the module docs for what that means per
    /// transport).
    pub confirmed: AtomicU64,
    /// Bytes of confirmed lines.
    pub confirmed_bytes: AtomicU64,
    /// Lines sent again after a connection failed before they were
    /// confirmed: possible duplicates at the receiver.
    pub resent: AtomicU64,
    /// Lines cut to the maximum message size.
    pub truncated: AtomicU64,
    /// UDP datagrams the kernel refused (lost; UDP has no guarantee).
    pub dropped: AtomicU64,
    /// Connections made after the first.
    pub reconnects: AtomicU64,
    /// Connection failures since a line was last confirmed (the reconnect
    /// backoff grows with it; a connection that takes lines resets it).
    pub failures_in_a_row: AtomicU64,
    /// Batches in the channel to the writer, not taken yet.
    pub queued: AtomicUsize,
    /// Batches the producer has allocated: one more only when more are in
    /// flight at once than ever before, so after a warm-up this stays put
    /// (bounded by [`crate::pipeline::writer::MAX_SPARE_BATCHES`] while
    /// every batch is full).
    pub batches_made: AtomicU64,
}

/// The writer's state and counters, shared with whoever reports them.
#[derive(Debug)]
pub struct SinkHealth {
    /// Counters.
    pub counters: SinkCounters,
    state: Mutex<(LinkState, Option<String>, Instant)>,
    /// Set when the owner no longer waits for the rest to be confirmed.
    abandoned: AtomicBool,
    /// Wakes the writer's event loop, once it has one.
    waker: std::sync::OnceLock<Arc<mio::Waker>>,
}

impl Default for SinkHealth {
    fn default() -> Self {
        Self {
            counters: SinkCounters::default(),
            state: Mutex::new((LinkState::Connecting, None, Instant::now())),
            abandoned: AtomicBool::new(false),
            waker: std::sync::OnceLock::new(),
        }
    }
}

impl SinkHealth {
    /// Tells the writer to stop waiting for the receiver and return at
    /// once, whatever is still queued: what is unconfirmed stays
    /// unconfirmed, so its checkpoints are not saved and a restart sends it
    /// again. For a shutdown that cannot wait for a receiver that is down.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.get() {
            // A failed wake leaves the writer to its next poll timeout.
            let _ = waker.wake();
        }
    }

    /// Whether [`abandon`](Self::abandon) was called.
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Records the writer's waker so that `abandon` can wake it.
    pub(crate) fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// The current state, the last error, and since when.
    pub fn state(&self) -> (LinkState, Option<String>, Instant) {
        self.state.lock().clone()
    }

    /// Records a new state; true when it changed (worth a log line).
    fn set(&self, state: LinkState, error: Option<String>) -> bool {
        let mut current = self.state.lock();
        let changed = current.0 != state;
        if changed {
            current.2 = Instant::now();
        }
        current.0 = state;
        if error.is_some() {
            current.1 = error;
        }
        changed
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why the writer stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// stdout could not be written (other than the reader going away).
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// The reader of stdout went away (`| head`).
    #[error("the output was closed by its reader")]
    OutputClosed,
    /// The writer's event loop could not be set up or polled.
    #[error("syslog writer: {0}")]
    Poll(io::Error),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Spawn(io::Error),
    /// The writer thread panicked (a bug: please report it).
    #[error("the writer thread panicked")]
    Panicked,
}

/// A batch could not be sent: the writer has stopped (its thread's result
/// says why).
#[derive(Debug, thiserror::Error)]
#[error("the writer has stopped")]
pub struct WriterStopped;

/// The producers' end of the channel to the writer: sending wakes the
/// writer's event loop; dropping it tells the writer no more will come.
pub struct Feed {
    /// `None` only while dropping: the sender must be gone before the
    /// final wake, or the writer could look, find the channel still open,
    /// and sleep for good.
    batches: Option<Sender<Batch>>,
    waker: Option<Arc<mio::Waker>>,
}

impl Feed {
    /// Wraps the sending end of the channel `writer` reads from.
    pub fn new(batches: Sender<Batch>, waker: Option<Arc<mio::Waker>>) -> Self {
        Self {
            batches: Some(batches),
            waker,
        }
    }

    /// Sends a batch, blocking while the channel is full (backpressure).
    /// Fails only when the writer has stopped.
    pub fn send(&self, batch: Batch) -> Result<(), SendError<Batch>> {
        match &self.batches {
            Some(batches) => batches.send(batch)?,
            None => return Err(SendError(batch)),
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            // A failed wake leaves the writer to its next poll timeout.
            let _ = waker.wake();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        drop(self.batches.take());
        self.wake();
    }
}

/// Writes batches to stdout, flushing each, and returns each once flushed.
/// Ends when the channel closes, or with the first write error.
pub fn write_stdout(
    batches: Receiver<Batch>,
    mut confirmed: Returns,
    out: &mut dyn Write,
    health: &SinkHealth,
) -> Result<(), SinkError> {
    health.set(LinkState::Connected, None);
    loop {
        // Batches waiting for room on the way back are looked at again
        // soon, so their tickets do not wait for the next batch.
        let next = if confirmed.waiting() {
            match batches.recv_timeout(returns::RETRY_RETURNS) {
                Err(RecvTimeoutError::Timeout) => {
                    confirmed.flush();
                    continue;
                }
                next => next.ok(),
            }
        } else {
            batches.recv().ok()
        };
        let Some(batch) = next else { break };
        health.counters.queued.fetch_sub(1, Ordering::Relaxed);
        if let Err(error) = out.write_all(&batch.bytes).and_then(|()| out.flush()) {
            return Err(if error.kind() == io::ErrorKind::BrokenPipe {
                SinkError::OutputClosed
            } else {
                SinkError::Output(error)
            });
        }
        SinkHealth::count(&health.counters.confirmed, batch.lines());
        SinkHealth::count(&health.counters.confirmed_bytes, batch.bytes.len() as u64);
        confirmed.send(batch);
    }
    Ok(())
}
