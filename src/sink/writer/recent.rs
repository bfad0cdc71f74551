//! The lines a TCP or TLS receiver acknowledged last, kept to be sent again
//! when its connection ends.
//!
//! A TCP acknowledgement says the receiver's kernel holds the bytes, not
//! that its application read them. A receiver that stops (a restart, a
//! crash, `kill -9`) with bytes still unread in its socket throws them
//! away: the kernel answers with a reset, and nothing tells the sender
//! which acknowledged bytes were lost. They can only be among the last ones
//! acknowledged, so the writer keeps a copy of those: the lines
//! acknowledged in the [`RESEND_WINDOW`] before the latest acknowledgement,
//! at most the plan's `resend_bytes`. A receiver's socket holds at most its
//! receive buffer unread, which Linux grows to 6 MiB by default
//! (`net.ipv4.tcp_rmem`). When a connection ends while it was busy
//! (lines were waiting for it, or it acknowledged some within the window),
//! they go out again on the next connection: possible duplicates, counted
//! as resent, instead of a silent loss. A connection that ends after a
//! long idle spell (a firewall timing it out, say) sends nothing again: its
//! receiver has long since read what it got.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back from the latest acknowledgement lines are kept: a receiver
/// reads its socket within milliseconds unless it stalls (and a stalled
/// receiver stops acknowledging, which [`Recent::take`] sees), so this
/// covers one that lags far behind, and a quiet tenant gives the room back
/// soon after its burst.
pub(super) const RESEND_WINDOW: Duration = Duration::from_secs(10);
/// The least room kept for lines once some came.
const MIN_ROOM: usize = 64 * 1024;
/// Acknowledgement times kept; when they are all in use, a new one joins
/// the latest, which keeps its older time (sending a little more again).
const ACK_TIMES: usize = 256;

/// One acknowledgement: the stream offset its lines end at, and when.
#[derive(Clone, Copy, Debug)]
struct Acknowledged {
    end: u64,
    at: Instant,
}

/// The recently acknowledged lines of the current connection.
#[derive(Debug)]
pub(super) struct Recent {
    /// Whole lines, each ending in LF, oldest first.
    bytes: VecDeque<u8>,
    /// Stream offset of `bytes[0]`: offsets count every byte ever kept.
    start: u64,
    acks: VecDeque<Acknowledged>,
    limit: usize,
    window: Duration,
}

impl Recent {
    /// Keeps up to `limit` bytes (0: keeps nothing, for the transports that
    /// confirm lines in other ways). Room is made as lines come (see
    /// [`fit`](Self::fit)): a steady stream keeps the same room and does
    /// not allocate; a quiet connection gives it back (see
    /// [`release_if_quiet`](Self::release_if_quiet)).
    pub(super) fn new(limit: usize, window: Duration) -> Self {
        Self {
            bytes: VecDeque::new(),
            start: 0,
            acks: VecDeque::new(),
            limit,
            window,
        }
    }

    /// When the lines kept stop being worth sending again, unless written
    /// bytes wait for an acknowledgement in the meantime.
    pub(super) fn quiet_at(&self) -> Option<Instant> {
        self.acks.back().map(|latest| latest.at + self.window)
    }

    /// Forgets the lines kept and gives their room back once the
    /// connection has been quiet for the window (nothing acknowledged, and
    /// nothing written waiting for an acknowledgement), or when nothing is
    /// kept: an idle tenant, or one whose receiver is down, holds no copy
    /// of what it sent last.
    pub(super) fn release_if_quiet(&mut self, now: Instant, stuck_since: Option<Instant>) {
        let quiet = match self.quiet_at() {
            Some(at) => now > at && stuck_since.is_none(),
            // Nothing kept since the last connection ended.
            None => self.bytes.capacity() > 0,
        };
        if quiet {
            self.start += self.bytes.len() as u64;
            self.bytes = VecDeque::new();
            self.acks = VecDeque::new();
        }
    }

    /// Lines kept.
    #[cfg(test)]
    fn kept(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    /// Keeps `lines` (whole lines), acknowledged at `at`, dropping what is
    /// now too old or too much.
    pub(super) fn keep(&mut self, lines: &[u8], at: Instant) {
        if self.limit == 0 || lines.is_empty() {
            return;
        }
        if self.acks.capacity() < ACK_TIMES {
            self.acks.reserve_exact(ACK_TIMES - self.acks.len());
        }
        while let Some(oldest) = self.acks.front() {
            if at.saturating_duration_since(oldest.at) <= self.window {
                break;
            }
            let end = oldest.end;
            self.acks.pop_front();
            self.drop_through(end);
        }
        // Lines beyond the limit on their own: keep their end, and nothing
        // older (it would leave a gap).
        let mut lines = lines;
        if lines.len() > self.limit {
            self.drop_through(self.start + self.bytes.len() as u64);
            self.acks.clear();
            let cut = lines.len() - self.limit;
            let after = memchr::memchr(b'\n', &lines[cut - 1..]).map_or(lines.len(), |n| cut + n);
            lines = &lines[after..];
            if lines.is_empty() {
                return;
            }
        }
        let excess = (self.bytes.len() + lines.len()).saturating_sub(self.limit);
        if excess > 0 {
            self.drop_lines(excess);
            while self
                .acks
                .front()
                .is_some_and(|oldest| oldest.end <= self.start)
            {
                self.acks.pop_front();
            }
        }
        self.fit(self.bytes.len() + lines.len());
        self.bytes.extend(lines.iter());
        let end = self.start + self.bytes.len() as u64;
        let full = self.acks.len() == ACK_TIMES;
        match self.acks.back_mut() {
            Some(latest) if full => latest.end = end,
            _ => self.acks.push_back(Acknowledged { end, at }),
        }
    }

    /// Sizes the room for `needed` bytes. It grows by doubling, up to the
    /// limit, and shrinks when a burst is over, so that a quiet tenant's
    /// copy takes little memory: a ring writes all of its room over time,
    /// so its room, not its content, is what stays resident.
    fn fit(&mut self, needed: usize) {
        let room = self.bytes.capacity();
        if needed > room {
            let grown = needed.max(room * 2).max(MIN_ROOM).min(self.limit);
            self.bytes.reserve_exact(grown - self.bytes.len());
        } else if room > MIN_ROOM && needed < room / 4 {
            self.bytes.shrink_to((needed * 2).max(MIN_ROOM));
        }
    }

    /// Drops the bytes before stream offset `end`.
    fn drop_through(&mut self, end: u64) {
        let count = usize::try_from(end.saturating_sub(self.start))
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        self.bytes.drain(..count);
        self.start += count as u64;
    }

    /// Drops at least `count` bytes from the front, through a line's end.
    fn drop_lines(&mut self, count: usize) {
        let count = count.min(self.bytes.len());
        let (first, second) = self.bytes.as_slices();
        let end = if count == 0 {
            0
        } else if count <= first.len() {
            memchr::memchr(b'\n', &first[count - 1..])
                .map(|n| count + n)
                .or_else(|| memchr::memchr(b'\n', second).map(|n| first.len() + n + 1))
                .unwrap_or(self.bytes.len())
        } else {
            let at = count - first.len();
            memchr::memchr(b'\n', &second[at - 1..])
                .map_or(self.bytes.len(), |n| first.len() + at + n)
        };
        self.drop_through(self.start + end as u64);
    }

    /// The connection ended at `now`: appends to `into` the lines to send
    /// again, and forgets everything. `stuck_since` is when written bytes
    /// began to wait for an acknowledgement that never came (a stalled
    /// receiver, when that began right after the latest acknowledgement;
    /// a connection that died while idle, when long after). Returns the
    /// bytes appended.
    pub(super) fn take(
        &mut self,
        now: Instant,
        stuck_since: Option<Instant>,
        into: &mut Vec<u8>,
    ) -> usize {
        let busy = self.acks.back().is_some_and(|latest| {
            let since = stuck_since.unwrap_or(now);
            since.saturating_duration_since(latest.at) <= self.window
        });
        let taken = if busy {
            let (first, second) = self.bytes.as_slices();
            into.extend_from_slice(first);
            into.extend_from_slice(second);
            self.bytes.len()
        } else {
            0
        };
        self.start += self.bytes.len() as u64;
        self.bytes.clear();
        self.acks.clear();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> Vec<u8> {
        let mut bytes = Vec::new();
        for n in range {
            bytes.extend_from_slice(format!("line {n}\n").as_bytes());
        }
        bytes
    }

    #[test]
    fn keeps_what_a_busy_connection_acknowledged_and_hands_it_over_once() {
        let start = Instant::now();
        let mut recent = Recent::new(1024, Duration::from_secs(30));
        recent.keep(&lines(0..3), start);
        recent.keep(&lines(3..5), start + Duration::from_secs(1));
        let mut again = Vec::new();
        let taken = recent.take(start + Duration::from_secs(2), None, &mut again);
        assert_eq!(again, lines(0..5));
        assert_eq!(taken, again.len());
        let mut twice = Vec::new();
        assert_eq!(recent.take(start, Some(start), &mut twice), 0);
        assert!(twice.is_empty(), "a second end sends nothing again");
    }

    #[test]
    fn keeps_only_the_window_before_the_latest_acknowledgement() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(30));
        recent.keep(&lines(0..10), start);
        recent.keep(&lines(10..20), start + Duration::from_secs(20));
        recent.keep(&lines(20..30), start + Duration::from_secs(40));
        assert_eq!(recent.kept(), lines(10..30));
        // A stalled receiver: lines wait, the latest acknowledgement is old,
        // and what came just before it goes out again.
        let mut again = Vec::new();
        let stuck = Some(start + Duration::from_secs(41));
        recent.take(start + Duration::from_secs(500), stuck, &mut again);
        assert_eq!(again, lines(10..30));
    }

    #[test]
    fn an_idle_connection_that_ends_sends_nothing_again() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(30));
        recent.keep(&lines(0..10), start);
        let mut again = Vec::new();
        assert_eq!(
            recent.take(start + Duration::from_secs(31), None, &mut again),
            0
        );
        assert!(again.is_empty());
        // Nor when its first write after the idle spell finds it dead.
        recent.keep(&lines(0..10), start);
        let stuck = Some(start + Duration::from_secs(300));
        assert_eq!(
            recent.take(start + Duration::from_secs(301), stuck, &mut again),
            0
        );
        // And the next connection starts from nothing.
        recent.keep(&lines(10..12), start + Duration::from_secs(40));
        recent.take(start + Duration::from_secs(41), None, &mut again);
        assert_eq!(again, lines(10..12));
    }

    #[test]
    fn the_byte_limit_keeps_the_latest_whole_lines() {
        let start = Instant::now();
        let every = lines(0..100);
        for limit in [1, 7, 8, 9, 50, 64, 333, every.len() - 1, every.len()] {
            // One acknowledgement per line, and all lines in one.
            for split in [true, false] {
                let mut recent = Recent::new(limit, Duration::from_secs(30));
                if split {
                    for n in 0..100 {
                        recent.keep(&lines(n..n + 1), start);
                    }
                } else {
                    recent.keep(&every, start);
                }
                let kept = recent.kept();
                assert!(kept.len() <= limit, "{limit}: {}", kept.len());
                assert!(every.ends_with(&kept), "{limit}");
                assert!(
                    kept.is_empty()
                        || kept.len() == every.len()
                        || every[..every.len() - kept.len()].ends_with(b"\n"),
                    "{limit} {split}: whole lines only"
                );
                // At most one line short of the limit.
                assert!(limit - kept.len() <= "line 99\n".len(), "{limit} {split}");
            }
        }
    }

    #[test]
    fn many_acknowledgements_join_the_latest_and_the_limit_still_holds() {
        let start = Instant::now();
        let mut recent = Recent::new(4000, Duration::from_secs(30));
        for n in 0..2000 {
            recent.keep(
                &lines(n..n + 1),
                start + Duration::from_millis(u64::from(n)),
            );
        }
        let kept = recent.kept();
        assert!(kept.len() <= 4000 && kept.len() > 3900, "{}", kept.len());
        assert!(lines(0..2000).ends_with(&kept));
        assert!(kept.starts_with(b"line "), "whole lines only");
        assert!(recent.acks.len() <= ACK_TIMES);
    }

    #[test]
    fn a_quiet_connection_gives_its_room_back() {
        let start = Instant::now();
        let mut recent = Recent::new(1 << 20, Duration::from_secs(30));
        recent.keep(&lines(0..10), start);
        assert!(recent.bytes.capacity() >= MIN_ROOM);
        assert_eq!(recent.quiet_at(), Some(start + Duration::from_secs(30)));
        // Not yet quiet; then stuck (a stalled receiver keeps its lines).
        recent.release_if_quiet(start + Duration::from_secs(29), None);
        recent.release_if_quiet(start + Duration::from_secs(31), Some(start));
        assert_eq!(recent.kept(), lines(0..10));
        recent.release_if_quiet(start + Duration::from_secs(31), None);
        assert!(recent.kept().is_empty());
        assert_eq!(recent.bytes.capacity(), 0);
        assert_eq!(recent.quiet_at(), None);
        // The next lines reserve the room again.
        recent.keep(&lines(10..12), start + Duration::from_secs(40));
        let mut again = Vec::new();
        recent.take(start + Duration::from_secs(41), None, &mut again);
        assert_eq!(again, lines(10..12));
    }

    #[test]
    fn the_room_follows_the_content_within_the_limit() {
        let start = Instant::now();
        let limit = 1 << 20;
        let mut recent = Recent::new(limit, Duration::from_secs(30));
        let chunk = vec![b'x'; 4095]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        // A burst fills the room up to the limit, and no further.
        for n in 0..1000 {
            recent.keep(&chunk, start + Duration::from_millis(n));
        }
        assert_eq!(recent.bytes.capacity(), limit);
        assert_eq!(recent.kept().len(), limit);
        // A steady stream keeps the same room.
        for n in 1000..2000 {
            recent.keep(&chunk, start + Duration::from_millis(n));
            assert_eq!(recent.bytes.capacity(), limit);
        }
        // Once the burst has aged out, a trickle needs little room.
        let later = start + Duration::from_secs(60);
        recent.keep(b"one line\n", later);
        assert_eq!(recent.kept(), b"one line\n");
        assert!(
            recent.bytes.capacity() <= MIN_ROOM,
            "{}",
            recent.bytes.capacity()
        );
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let mut recent = Recent::new(0, Duration::from_secs(30));
        recent.keep(&lines(0..3), Instant::now());
        let mut again = Vec::new();
        assert_eq!(recent.take(Instant::now(), None, &mut again), 0);
    }
}
