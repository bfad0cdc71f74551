//! The way back for confirmed batches: a bounded channel from the writer to
//! the producer, so that no channel of the pipeline grows without bound,
//! and a queue on the writer's side for the batches that do not fit.
//!
//! The writer must never block on it: the producer may itself be blocked
//! sending the writer its next batch, and each would wait for the other.
//! So a batch that finds the channel full waits, in order, in the writer's
//! queue, and goes on at the next send or [`Returns::flush`]. The queue
//! keeps its allocation, so the steady state allocates nothing. What still
//! waits when the writer ends is left where [`Returned::finish`] finds it,
//! after the channel's batches, so the producer sees every ticket in
//! order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::Batch;

/// Confirmed batches the channel holds at most: a few pages' worth of full
/// batches. More wait in the writer's queue.
pub const RETURNED_BATCHES: usize = 32;

/// How soon a writer looks again at batches waiting for room.
pub const RETRY_RETURNS: Duration = Duration::from_millis(20);

/// The writer's end.
pub struct Returns {
    channel: Sender<Batch>,
    waiting: VecDeque<Batch>,
    left: Arc<Mutex<Vec<Batch>>>,
}

/// The producer's end.
pub struct Returned {
    channel: Receiver<Batch>,
    left: Arc<Mutex<Vec<Batch>>>,
}

/// The two ends of the way back, over a bounded channel (of
/// [`RETURNED_BATCHES`]: `pipeline` makes it, as it makes every channel).
pub fn connect(sender: Sender<Batch>, receiver: Receiver<Batch>) -> (Returns, Returned) {
    let left = Arc::new(Mutex::new(Vec::new()));
    let returns = Returns {
        channel: sender,
        waiting: VecDeque::new(),
        left: Arc::clone(&left),
    };
    let returned = Returned {
        channel: receiver,
        left,
    };
    (returns, returned)
}

impl Returns {
    /// Sends a confirmed batch back, or queues it behind those waiting.
    /// Never blocks. A producer that has gone away takes nothing: the batch
    /// is then dropped.
    pub fn send(&mut self, batch: Batch) {
        self.waiting.push_back(batch);
        self.flush();
    }

    /// Moves waiting batches into the channel while it has room.
    pub fn flush(&mut self) {
        while let Some(batch) = self.waiting.pop_front() {
            match self.channel.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(batch)) => {
                    self.waiting.push_front(batch);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.waiting.clear();
                    return;
                }
            }
        }
    }

    /// Whether batches wait for room (the writer then looks again soon).
    pub fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

impl Drop for Returns {
    fn drop(&mut self) {
        self.flush();
        if !self.waiting.is_empty() {
            self.left.lock().extend(self.waiting.drain(..));
        }
    }
}

impl Returned {
    /// The channel of confirmed batches.
    pub fn channel(&self) -> &Receiver<Batch> {
        &self.channel
    }

    /// Once the writer has ended: every batch not yet taken, in the order
    /// the writer confirmed them.
    pub fn finish(&self) -> Vec<Batch> {
        let mut batches: Vec<Batch> = self.channel.try_iter().collect();
        batches.append(&mut self.left.lock());
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ticket: u64) -> Batch {
        Batch {
            bytes: Vec::new(),
            ticket,
            lines: Some(0),
        }
    }

    fn tickets(batches: impl IntoIterator<Item = Batch>) -> Vec<u64> {
        batches.into_iter().map(|b| b.ticket).collect()
    }

    /// A way back whose channel holds `capacity` batches.
    fn returns_holding(capacity: usize) -> (Returns, Returned) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        connect(sender, receiver)
    }

    #[test]
    fn batches_past_the_channel_wait_in_order_and_none_is_lost() {
        let (mut returns, returned) = returns_holding(3);
        for ticket in 1..=5 {
            returns.send(batch(ticket));
        }
        assert!(returns.waiting());
        assert_eq!(tickets(returned.channel().try_iter().take(2)), [1, 2]);
        returns.flush();
        returns.send(batch(6));
        assert_eq!(tickets(returned.channel().try_iter()), [3, 4, 5]);
        returns.send(batch(7));
        drop(returns);
        assert_eq!(tickets(returned.finish()), [6, 7]);
    }

    #[test]
    fn what_waits_when_the_writer_ends_comes_after_the_channel() {
        let (mut returns, returned) = returns_holding(2);
        for ticket in 1..=6 {
            returns.send(batch(ticket));
        }
        drop(returns);
        assert_eq!(tickets(returned.finish()), [1, 2, 3, 4, 5, 6]);
        assert!(returned.finish().is_empty());
    }

    #[test]
    fn a_producer_that_has_gone_takes_nothing_and_the_writer_goes_on() {
        let (mut returns, returned) = returns_holding(1);
        drop(returned);
        for ticket in 1..=3 {
            returns.send(batch(ticket));
        }
        assert!(!returns.waiting());
    }
}
