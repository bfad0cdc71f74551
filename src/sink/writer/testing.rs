//! A writer on its own thread, fed and watched by a unit test, and the
//! plans the tests give it: so each link kind's file can test the state
//! machine against a real socket on loopback.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sink::Returned;

use super::SyslogWriter;
use crate::sink::{Batch, Feed, LinkState, Protocol, SinkError, SinkHealth, SinkPlan};
use crate::syslog::Framing;

/// How long the test writers' RELP frames wait for an answer: long enough
/// for a loaded machine, short enough for the test of a silent receiver.
pub(super) const RELP_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a test waits for something that should happen at once.
pub(super) const PATIENCE: Duration = Duration::from_secs(30);

/// A plan for a receiver on 127.0.0.1.
pub(super) fn plan(protocol: Protocol, port: u16, framing: Framing) -> SinkPlan {
    SinkPlan {
        host: "127.0.0.1".to_owned(),
        port,
        protocol,
        framing,
        max_message: None,
        tls: None,
        relp_window: 4,
        relp_answer_timeout: RELP_ANSWER_TIMEOUT,
        resend_bytes: crate::sink::DEFAULT_RESEND_BYTES,
    }
}

/// A writer thread and the test's ends of its channels.
pub(super) struct Running {
    feed: Option<Feed>,
    returned: Returned,
    pub(super) health: Arc<SinkHealth>,
    thread: Option<JoinHandle<Result<(), SinkError>>>,
}

impl Running {
    /// Starts a writer for `plan`.
    pub(super) fn start(plan: SinkPlan) -> Self {
        let health = Arc::new(SinkHealth::default());
        let writer = SyslogWriter::new(plan, Arc::clone(&health), "test").expect("event loop");
        let (batches_in, batches_out) = crossbeam_channel::bounded(8);
        let (returned_in, returned_out) =
            crossbeam_channel::bounded(crate::sink::returns::RETURNED_BATCHES);
        let (returned_in, returned) = crate::sink::returns::connect(returned_in, returned_out);
        let feed = Feed::new(batches_in, Some(writer.waker()));
        let thread = std::thread::spawn(move || writer.run(batches_out, returned_in));
        Self {
            feed: Some(feed),
            returned,
            health,
            thread: Some(thread),
        }
    }

    /// Sends a batch of `lines` (each gets its LF) tagged `ticket`.
    pub(super) fn send(&self, ticket: u64, lines: &[&str]) {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        let feed = self.feed.as_ref().expect("not finished");
        self.health
            .counters
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        feed.send(Batch {
            bytes,
            ticket,
            lines: Some(lines.len() as u64),
        })
        .expect("the writer runs");
    }

    /// The next batch the writer confirmed.
    pub(super) fn confirmed(&self) -> Batch {
        self.returned
            .channel()
            .recv_timeout(PATIENCE)
            .expect("a batch confirmed in time")
    }

    /// Whether a batch came back within `wait`.
    pub(super) fn confirmed_within(&self, wait: Duration) -> Option<Batch> {
        self.returned.channel().recv_timeout(wait).ok()
    }

    /// Waits until the writer reports `state`; its error text.
    pub(super) fn wait_for_state(&self, state: LinkState) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (now, error, _) = self.health.state();
            if now == state {
                return error;
            }
            assert!(
                Instant::now() < deadline,
                "the writer stayed {now:?}, expected {state:?} (last error: {error:?})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the channel and waits for the writer to end.
    pub(super) fn finish(mut self) -> Result<(), SinkError> {
        drop(self.feed.take());
        let thread = self.thread.take().expect("running");
        thread.join().expect("the writer does not panic")
    }

    /// A counter's value.
    pub(super) fn count(
        &self,
        counter: impl Fn(&SinkHealth) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        counter(&self.health).load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave the writer retrying forever.
        self.health.abandon();
    }
}
