//! The writer thread ([`crate::sink`] does the writing) and the encoder's
//! handle on it: the batch channel, the way back for confirmed batches
//! (both bounded), and a pool of empty batches so that steady state does
//! not allocate them.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::sink::returns::RETURNED_BATCHES;
use crate::sink::{
    Batch, Destination, Feed, Returned, Returns, SinkError, SinkHealth, SyslogWriter,
    WriterStopped, BATCH_BYTES, BATCH_SLACK_BYTES, MAX_UNCONFIRMED_BYTES,
};

/// Batches waiting in the channel to the writer.
pub const SINK_CHANNEL_BATCHES: usize = 8;
/// Empty batches kept for reuse, at most: as many full ones as can be out
/// at once (in the channel, unconfirmed in the writer, kept by a TCP writer
/// to send again after a reset, and in the encode stage's window of
/// pieces). Keeping fewer freed the batches a burst of
/// confirmations brought back, only to allocate them again a page later:
/// an allocation per page in a backfill. A tailing tenant keeps one (see
/// [`SinkHandle::recycle`]).
pub const MAX_SPARE_BATCHES: usize = SINK_CHANNEL_BATCHES
    + MAX_UNCONFIRMED_BYTES.div_ceil(BATCH_BYTES)
    + crate::sink::DEFAULT_RESEND_BYTES.div_ceil(BATCH_BYTES)
    + super::helper::PIECES_AHEAD
    + 3;
/// Small batches returned in a row after which the spare batches are
/// shrunk to one: a tenant that tails sends a small batch per page.
const SMALL_BATCHES_FOR_TAILING: usize = 4;
/// Smallest capacity a shrunk buffer keeps.
pub const MIN_BUFFER_BYTES: usize = 16 << 10;

/// The running writer thread and both ends the producer uses.
pub struct SinkHandle {
    feed: Option<Feed>,
    returned: Returned,
    thread: Option<JoinHandle<Result<(), SinkError>>>,
    /// The writer's state and counters.
    pub health: Arc<SinkHealth>,
    /// Empty batches to reuse.
    spare: Vec<Batch>,
    /// Small batches returned in a row: the tenant is tailing.
    small_in_a_row: usize,
    /// Tickets of batches [`Self::batch`] took back from the writer, not
    /// yet settled by the producer.
    confirmed: Vec<u64>,
}

/// Starts the writer thread for `destination`; `label` names it in log
/// lines (the tenant).
pub fn spawn_sink(destination: Destination, label: &str) -> Result<SinkHandle, SinkError> {
    match destination {
        Destination::Stdout => spawn_writer("writer-stdout", |batches, returned, health| {
            // Locked per batch (by each write), not for the writer's life:
            // every tenant sending to stdout has a writer of its own, and a
            // batch is written whole, so lines never interleave.
            crate::sink::write_stdout(batches, returned, &mut io::stdout(), health)
        }),
        Destination::Syslog(plan) => {
            let health = Arc::new(SinkHealth::default());
            let writer = SyslogWriter::new(plan, Arc::clone(&health), label)?;
            let waker = writer.waker();
            start(
                "writer-syslog",
                health,
                Some(waker),
                move |batches, returned, _| writer.run(batches, returned),
            )
        }
    }
}

/// Starts a writer thread named `name` that runs `write`: it takes batches
/// from the first channel, hands each back on the second once its lines
/// are confirmed, and keeps the health's counters. [`spawn_sink`] uses it
/// for stdout; tests and benchmarks use it to stand in for a receiver.
pub fn spawn_writer<W>(name: &str, write: W) -> Result<SinkHandle, SinkError>
where
    W: FnOnce(Receiver<Batch>, Returns, &SinkHealth) -> Result<(), SinkError> + Send + 'static,
{
    start(name, Arc::new(SinkHealth::default()), None, write)
}

/// Makes the channels and starts the thread; `waker` wakes the writer's
/// event loop when a batch is sent (a blocking writer needs none).
fn start<W>(
    name: &str,
    health: Arc<SinkHealth>,
    waker: Option<Arc<mio::Waker>>,
    write: W,
) -> Result<SinkHandle, SinkError>
where
    W: FnOnce(Receiver<Batch>, Returns, &SinkHealth) -> Result<(), SinkError> + Send + 'static,
{
    let (batches_in, batches_out) = crossbeam_channel::bounded(SINK_CHANNEL_BATCHES);
    let (returned_in, returned_out) = crossbeam_channel::bounded(RETURNED_BATCHES);
    let (returned_in, returned) = crate::sink::returns::connect(returned_in, returned_out);
    let thread_health = Arc::clone(&health);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || write(batches_out, returned_in, &thread_health))
        .map_err(SinkError::Spawn)?;
    Ok(SinkHandle {
        feed: Some(Feed::new(batches_in, waker)),
        returned,
        thread: Some(thread),
        health,
        // Both lists have room for every batch from the start, so that
        // keeping one never allocates.
        spare: Vec::with_capacity(MAX_SPARE_BATCHES),
        small_in_a_row: 0,
        confirmed: Vec::with_capacity(MAX_SPARE_BATCHES),
    })
}

impl SinkHandle {
    /// An empty batch: a returned one when there is one. Without a spare,
    /// it takes back what the writer has confirmed meanwhile (their tickets
    /// wait for the producer to settle them); only then is a batch allocated,
    /// at full size. A backfill page fills about 16 batches, and allocating
    /// and growing new ones cost page faults and `mremap` TLB shootdowns
    /// (5% of the encode thread in `perf`).
    pub fn batch(&mut self) -> Batch {
        if self.spare.is_empty() {
            while let Ok(batch) = self.returned.channel().try_recv() {
                if batch.ticket != 0 {
                    self.confirmed.push(batch.ticket);
                }
                self.recycle(batch);
            }
        }
        let mut batch = self.spare.pop().unwrap_or_else(|| {
            self.health
                .counters
                .batches_made
                .fetch_add(1, Ordering::Relaxed);
            Batch {
                bytes: Vec::with_capacity(BATCH_BYTES + BATCH_SLACK_BYTES),
                ticket: 0,
                lines: None,
            }
        });
        batch.bytes.clear();
        batch.ticket = 0;
        batch.lines = None;
        batch
    }

    /// Keeps a returned batch's buffer for reuse (a few are enough). A
    /// buffer much larger than what it carried (a tail after a backfill)
    /// shrinks first.
    pub fn recycle(&mut self, mut batch: Batch) {
        if batch.bytes.capacity() == 0 {
            // Only a ticket: a TCP writer keeps the buffer a while longer.
            return;
        }
        let used = batch.bytes.len();
        self.small_in_a_row = if used < MIN_BUFFER_BYTES {
            self.small_in_a_row + 1
        } else {
            0
        };
        if self.small_in_a_row >= SMALL_BATCHES_FOR_TAILING {
            // Tailing: one more spare batch is plenty, and small; the
            // others were for a backfill. (One small batch is not enough
            // to tell: a backfill page's last batch can be small.)
            self.shed_spares();
        }
        if self.spare.len() < MAX_SPARE_BATCHES {
            if batch.bytes.capacity() > 4 * used.max(MIN_BUFFER_BYTES) {
                batch.bytes.shrink_to((2 * used).max(MIN_BUFFER_BYTES));
            }
            self.spare.push(batch);
        }
    }

    /// Keeps one small spare batch and frees the others: the producer
    /// knows its burst is over (a tailing tenant).
    pub fn shed_spares(&mut self) {
        self.spare.truncate(1);
        for spare in &mut self.spare {
            spare.bytes.clear();
            spare.bytes.shrink_to(MIN_BUFFER_BYTES);
        }
    }

    /// Sends a batch, blocking while the writer is behind. On failure the
    /// writer has stopped: [`finish`](Self::finish) says why.
    pub fn send(&mut self, batch: Batch) -> Result<(), WriterStopped> {
        let Some(feed) = &self.feed else {
            return Err(WriterStopped);
        };
        // Counted before the send: the writer may take it at once.
        let queued = &self.health.counters.queued;
        queued.fetch_add(1, Ordering::Relaxed);
        feed.send(batch).map_err(|_| {
            queued.fetch_sub(1, Ordering::Relaxed);
            WriterStopped
        })
    }

    /// Settles, oldest first, the tickets of the confirmed batches that
    /// [`batch`](Self::batch) took back; stops at the first error.
    pub fn settle_taken_back<E>(
        &mut self,
        mut settle: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        // The list keeps its allocation from one page to the next.
        let mut tickets = std::mem::take(&mut self.confirmed);
        let settled = tickets.iter().try_for_each(|&ticket| settle(ticket));
        tickets.clear();
        self.confirmed = tickets;
        settled
    }

    /// Batches the writer has confirmed.
    pub fn returned(&self) -> &Receiver<Batch> {
        self.returned.channel()
    }

    /// Closes the channel and waits until the writer has confirmed
    /// everything (forever, if the receiver never comes back, unless the
    /// writer is abandoned), returning the batches confirmed meanwhile.
    pub fn finish(&mut self) -> Result<Vec<Batch>, SinkError> {
        drop(self.feed.take());
        let result = match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(SinkError::Panicked)),
            None => Ok(()),
        };
        result.map(|()| self.returned.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_producer_that_does_not_take_back_batches_never_stalls_the_writer() {
        let batches = 10 * RETURNED_BATCHES as u64;
        let (done, finished) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut sink = spawn_writer("test-writer", |batches, mut returned, health| {
                for batch in batches {
                    health.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    returned.send(batch);
                }
                Ok(())
            })
            .expect("writer thread");
            for ticket in 1..=batches {
                let mut batch = Batch::new();
                batch.ticket = ticket;
                batch.lines = Some(0);
                sink.send(batch).expect("the writer runs");
            }
            let tickets: Vec<u64> = sink
                .finish()
                .expect("the writer ends well")
                .iter()
                .map(|b| b.ticket)
                .collect();
            let _ = done.send(tickets);
        });
        // A writer blocked on the way back would leave the producer blocked
        // on the way there: bounded waiting turns that hang into a failure.
        let tickets = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the producer and the writer finished");
        assert_eq!(tickets, (1..=batches).collect::<Vec<_>>());
    }
}
