//! The batches a TCP or TLS receiver acknowledged last, kept to be sent
//! again when its connection ends.
//!
//! A TCP acknowledgement says the receiver's kernel holds the bytes, not
//! that its application read them. A receiver that stops (a restart, a
//! crash, `kill -9`) with bytes still unread in its socket throws them
//! away: the kernel answers with a reset, and nothing tells the sender
//! which acknowledged bytes were lost. They can only be among the last ones
//! acknowledged, so the writer keeps those batches a little longer: the
//! ones acknowledged in the [`RESEND_WINDOW`] before the latest
//! acknowledgement, about the plan's `resend_bytes` (a Linux receiver's
//! socket holds up to 6 MiB unread by default, `net.ipv4.tcp_rmem`). Their
//! tickets go back to the producer as soon as they are confirmed, so the
//! checkpoint does not wait; only their buffers stay, and go back when they
//! leave the window. No byte is copied: keeping them costs memory, not
//! time.
//!
//! When a connection ends while it was busy (it acknowledged lines within
//! the window, or written bytes were waiting for a stalled receiver), the
//! kept batches go out again on the next connection: possible duplicates,
//! counted as resent, instead of a silent loss. A connection that ends
//! after a quiet spell (a firewall timing it out, say) sends nothing again:
//! its receiver has long since read what it got.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sink::Batch;

/// How far back from the latest acknowledgement batches are kept: a
/// receiver reads its socket within milliseconds unless it stalls (and a
/// stalled receiver stops acknowledging, which [`Recent::busy`] sees), so
/// this covers one that lags far behind, and a quiet tenant gives the
/// buffers back soon after its burst.
pub(super) const RESEND_WINDOW: Duration = Duration::from_secs(10);
/// Batches kept at most, whatever their size: a tailing tenant sends a
/// small batch per page. (Room for them is made at the start.)
const MAX_KEPT_BATCHES: usize = 64;

/// A confirmed batch, and when its last byte was acknowledged.
#[derive(Debug)]
struct Kept {
    batch: Batch,
    at: Instant,
}

/// The recently acknowledged batches of the current connection.
#[derive(Debug)]
pub(super) struct Recent {
    batches: VecDeque<Kept>,
    /// Bytes of the kept batches.
    bytes: usize,
    limit: usize,
    window: Duration,
    /// When the connection last acknowledged bytes.
    last_ack: Option<Instant>,
}

impl Recent {
    /// Keeps about `limit` bytes (0: keeps nothing, for the transports
    /// that confirm lines in other ways).
    pub(super) fn new(limit: usize, window: Duration) -> Self {
        Self {
            batches: VecDeque::with_capacity(if limit == 0 { 0 } else { MAX_KEPT_BATCHES }),
            bytes: 0,
            limit,
            window,
            last_ack: None,
        }
    }

    /// Whether batches are kept at all.
    pub(super) fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The connection acknowledged bytes at `at`.
    pub(super) fn acknowledged(&mut self, at: Instant) {
        if self.enabled() {
            self.last_ack = Some(at);
        }
    }

    /// Keeps a batch acknowledged whole at `at`; the batches that leave
    /// the window or go over the limit go to `give_back`, oldest first.
    pub(super) fn keep(&mut self, batch: Batch, at: Instant, give_back: &mut impl FnMut(Batch)) {
        if self.batches.len() == MAX_KEPT_BATCHES {
            self.give_back_oldest(give_back);
        }
        self.bytes += batch.bytes.len();
        self.batches.push_back(Kept { batch, at });
        while let Some(oldest) = self.batches.front() {
            let too_old = at.saturating_duration_since(oldest.at) > self.window;
            // Over the limit even without the oldest: it is not needed.
            let too_much = self.bytes - oldest.batch.bytes.len() >= self.limit;
            if !(too_old || too_much) {
                break;
            }
            self.give_back_oldest(give_back);
        }
    }

    fn give_back_oldest(&mut self, give_back: &mut impl FnMut(Batch)) {
        if let Some(oldest) = self.batches.pop_front() {
            self.bytes -= oldest.batch.bytes.len();
            give_back(oldest.batch);
        }
    }

    /// When the kept batches stop being worth sending again, unless
    /// written bytes wait for an acknowledgement in the meantime.
    pub(super) fn quiet_at(&self) -> Option<Instant> {
        if self.batches.is_empty() {
            return None;
        }
        self.last_ack.map(|at| at + self.window)
    }

    /// Gives every kept batch back once the connection has been quiet for
    /// the window (nothing acknowledged, and nothing written waiting for an
    /// acknowledgement): an idle tenant holds no buffers for this.
    pub(super) fn release_if_quiet(
        &mut self,
        now: Instant,
        stuck_since: Option<Instant>,
        give_back: &mut impl FnMut(Batch),
    ) {
        if stuck_since.is_none() && self.quiet_at().is_some_and(|at| now > at) {
            while !self.batches.is_empty() {
                self.give_back_oldest(give_back);
            }
        }
    }

    /// Whether the connection, ending at `now`, was busy: it acknowledged
    /// bytes within the window, or written bytes began to wait
    /// (`stuck_since`) within the window after its latest acknowledgement
    /// (a stalled receiver, rather than a connection found dead after an
    /// idle spell).
    pub(super) fn busy(&self, now: Instant, stuck_since: Option<Instant>) -> bool {
        self.last_ack.is_some_and(|latest| {
            stuck_since.unwrap_or(now).saturating_duration_since(latest) <= self.window
        })
    }

    /// The connection ended: when `busy`, hands the kept batches that are
    /// within the window before its latest acknowledgement to `again`,
    /// newest first; gives the others back. Forgets the connection.
    pub(super) fn end(
        &mut self,
        busy: bool,
        give_back: &mut impl FnMut(Batch),
        again: &mut impl FnMut(Batch),
    ) {
        let since = match (busy, self.last_ack) {
            (true, Some(latest)) => latest.checked_sub(self.window),
            _ => None,
        };
        while let Some(newest) = self.batches.pop_back() {
            self.bytes -= newest.batch.bytes.len();
            let recent = busy && since.is_none_or(|since| newest.at >= since);
            if recent {
                again(newest.batch);
            } else {
                give_back(newest.batch);
            }
        }
        self.last_ack = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ticket: u64, size: usize) -> Batch {
        Batch {
            bytes: vec![b'x'; size],
            ticket,
            lines: None,
        }
    }

    fn tickets(batches: &[Batch]) -> Vec<u64> {
        batches.iter().map(|b| b.ticket).collect()
    }

    #[test]
    fn a_busy_connection_hands_back_what_it_kept_newest_first_once() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(10));
        let (mut given, mut again) = (Vec::new(), Vec::new());
        for ticket in 1..=3 {
            let at = start + Duration::from_secs(ticket);
            recent.acknowledged(at);
            recent.keep(batch(ticket, 100), at, &mut |b| given.push(b));
        }
        assert!(given.is_empty());
        let end = start + Duration::from_secs(4);
        assert!(recent.busy(end, None));
        recent.end(true, &mut |b| given.push(b), &mut |b| again.push(b));
        assert_eq!(tickets(&again), [3, 2, 1]);
        assert!(given.is_empty());
        assert!(!recent.busy(end, None), "the next connection starts afresh");
        assert_eq!(recent.quiet_at(), None);
    }

    #[test]
    fn batches_leave_by_age_and_by_the_limit() {
        let start = Instant::now();
        let mut recent = Recent::new(250, Duration::from_secs(10));
        let mut given = Vec::new();
        recent.keep(batch(1, 100), start, &mut |b| given.push(b));
        recent.keep(batch(2, 100), start + Duration::from_secs(5), &mut |b| {
            given.push(b)
        });
        // 1 leaves by age (over 10 s before 3).
        recent.keep(batch(3, 100), start + Duration::from_secs(11), &mut |b| {
            given.push(b)
        });
        assert_eq!(tickets(&given), [1]);
        // 2, 3, 4 hold 300 bytes; without 2 they hold 200, under 250.
        recent.keep(batch(4, 100), start + Duration::from_secs(12), &mut |b| {
            given.push(b)
        });
        assert_eq!(tickets(&given), [1]);
        // 3, 4, 5 without 2 make 300, at least 250: 2 leaves.
        recent.keep(batch(5, 100), start + Duration::from_secs(12), &mut |b| {
            given.push(b)
        });
        assert_eq!(tickets(&given), [1, 2]);
        assert_eq!(recent.bytes, 300);
    }

    #[test]
    fn many_small_batches_are_bounded_in_number() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(10));
        let mut given = Vec::new();
        for ticket in 0..200 {
            recent.keep(batch(ticket, 10), start, &mut |b| given.push(b));
        }
        assert_eq!(recent.batches.len(), MAX_KEPT_BATCHES);
        assert_eq!(given.len(), 200 - MAX_KEPT_BATCHES);
        assert_eq!(recent.batches.capacity(), MAX_KEPT_BATCHES, "no growth");
    }

    #[test]
    fn only_the_window_before_the_latest_acknowledgement_goes_again() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(10));
        let (mut given, mut again) = (Vec::new(), Vec::new());
        recent.keep(batch(1, 10), start, &mut |b| given.push(b));
        recent.keep(batch(2, 10), start + Duration::from_secs(9), &mut |b| {
            given.push(b)
        });
        // The front batch's lines went on being acknowledged later.
        recent.acknowledged(start + Duration::from_secs(15));
        // A stalled receiver: written bytes wait since just after that.
        let stuck = Some(start + Duration::from_secs(16));
        let end = start + Duration::from_secs(300);
        assert!(recent.busy(end, stuck));
        recent.end(true, &mut |b| given.push(b), &mut |b| again.push(b));
        assert_eq!(tickets(&again), [2]);
        assert_eq!(tickets(&given), [1]);
    }

    #[test]
    fn a_connection_found_dead_after_a_quiet_spell_was_not_busy() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(10));
        recent.acknowledged(start);
        recent.keep(batch(1, 10), start, &mut |_| {});
        // Nothing waited, and the last acknowledgement is old.
        assert!(!recent.busy(start + Duration::from_secs(11), None));
        // The first write after the spell waits in vain.
        let stuck = Some(start + Duration::from_secs(300));
        assert!(!recent.busy(start + Duration::from_secs(301), stuck));
        let (mut given, mut again) = (Vec::new(), Vec::new());
        recent.end(false, &mut |b| given.push(b), &mut |b| again.push(b));
        assert!(again.is_empty());
        assert_eq!(tickets(&given), [1]);
    }

    #[test]
    fn a_quiet_connection_gives_every_buffer_back() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(10));
        let mut given = Vec::new();
        recent.acknowledged(start);
        recent.keep(batch(1, 10), start, &mut |b| given.push(b));
        assert_eq!(recent.quiet_at(), Some(start + Duration::from_secs(10)));
        recent.release_if_quiet(start + Duration::from_secs(9), None, &mut |b| given.push(b));
        // A stalled receiver keeps them.
        let stuck = Some(start + Duration::from_secs(1));
        recent.release_if_quiet(start + Duration::from_secs(11), stuck, &mut |b| {
            given.push(b)
        });
        assert!(given.is_empty());
        recent.release_if_quiet(start + Duration::from_secs(11), None, &mut |b| {
            given.push(b)
        });
        assert_eq!(tickets(&given), [1]);
        assert_eq!(recent.quiet_at(), None);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing_and_is_never_busy() {
        let mut recent = Recent::new(0, Duration::from_secs(10));
        assert!(!recent.enabled());
        recent.acknowledged(Instant::now());
        assert!(!recent.busy(Instant::now(), None));
    }
}
