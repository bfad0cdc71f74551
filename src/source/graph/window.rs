//! The cursor of both Graph data types: time windows that lose nothing.
//!
//! Graph records become visible some time after they happen, and neither
//! `alerts_v2` nor a hunting query has a paging token that survives a
//! restart. So the cursor works on time alone (the spec's **decision**):
//!
//! - a window is asked for only once `settle` has passed its end, so
//!   records that arrive a little late are there the first time;
//! - every poll asks again for the `late` span before the window, and the
//!   records of that span already delivered are remembered (their time and
//!   dedupe key) so that a record is delivered once, however often it is
//!   seen; a record that shows up later than `settle + late` after its
//!   time is missed, and the README says so;
//! - an answer that may have been cut (as many rows as the query's `take`,
//!   or a full page) is not trusted: its window is split in two and each
//!   half asked for in turn, left first, until the answers fit. A window of
//!   one millisecond cannot be split; the caller then pages through it.
//!
//! Nothing assumes an order of the records within an answer. The cursor is
//! saved after every confirmed answer, as the legacy cursors are
//! ([`crate::state::checkpoint`]); a restart from a saved cursor asks again
//! from `position - late`, and the remembered keys keep what was delivered
//! from being delivered twice. The property test below restarts from the
//! saved cursor after every answer.

use std::collections::BTreeSet;

/// How far the windows trail the clock, fixed at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    /// A window is asked for once this long has passed its end (ms).
    pub settle_ms: i64,
    /// Every poll asks again for this long before the new window (ms).
    pub late_ms: i64,
}

/// A half-open span of record times, `[from, to)`, in epoch ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The first millisecond asked for.
    pub from: i64,
    /// The first millisecond not asked for.
    pub to: i64,
}

impl Window {
    /// Milliseconds the window spans.
    pub fn span(&self) -> i64 {
        self.to - self.from
    }

    /// Whether `time` falls in the window.
    pub fn contains(&self, time: i64) -> bool {
        (self.from..self.to).contains(&time)
    }
}

/// A record delivered, as the cursor remembers it: its time, then its
/// dedupe key (the alert id, the id and update time, or the `ReportId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seen {
    /// The record's time (epoch ms).
    pub time_ms: i64,
    /// Its dedupe key.
    pub key: String,
}

/// Where a Graph data type stands: what its checkpoint is to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowCursor {
    /// Every record time before this has been asked for at least once.
    pub position: i64,
    /// The earliest time ever asked for: the late span never reaches
    /// before it (a first start does not look behind its backfill).
    pub floor: i64,
    /// Records delivered with times from `position - late` on.
    pub seen: BTreeSet<Seen>,
}

/// What the walk over one poll's windows does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask for this window.
    Ask(Window),
    /// The poll is done: every window is answered.
    Done,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// An answer came for a window the walk did not ask for.
    #[error("an answer for {got:?} while {asked:?} was asked for")]
    NotAsked {
        /// The window answered.
        got: Window,
        /// The window asked for.
        asked: Option<Window>,
    },
}

impl WindowCursor {
    /// A first start: nothing asked for yet; the backfill reaches back to
    /// `from`.
    pub fn start(from: i64) -> Self {
        Self {
            position: from,
            floor: from,
            seen: BTreeSet::new(),
        }
    }

    /// The walk of a poll at `now`: the late span before `position` and
    /// every settled millisecond after it. `None` when nothing new has
    /// settled since the last poll (asking again would only repeat the
    /// late span).
    pub fn poll(&self, now: i64, plan: WindowPlan) -> Option<WindowWalk> {
        let to = now.saturating_sub(plan.settle_ms);
        if to <= self.position {
            return None;
        }
        let from = self.position.saturating_sub(plan.late_ms).max(self.floor);
        Some(WindowWalk {
            pending: vec![Window { from, to }],
            late_ms: plan.late_ms,
        })
    }

    /// Whether a record with this time and key must be delivered: not when
    /// it was delivered before.
    pub fn is_new(&self, time_ms: i64, key: &str) -> bool {
        // From the first key of that millisecond on (an empty key sorts
        // first and costs no allocation), so no key is copied per record.
        let first = Seen {
            time_ms,
            key: String::new(),
        };
        !self
            .seen
            .range(first..)
            .take_while(|seen| seen.time_ms == time_ms)
            .any(|seen| seen.key == key)
    }
}

impl WindowCursor {
    /// Remembers a record as delivered.
    pub fn remember(&mut self, time_ms: i64, key: &str) {
        self.seen.insert(Seen {
            time_ms,
            key: key.to_owned(),
        });
    }

    /// Every record of `window` is delivered: the position moves past it,
    /// and the records that have left the late span (`late_ms` before the
    /// position) are forgotten.
    pub fn close(&mut self, window: Window, late_ms: i64) {
        // Windows are answered in time order, so the end of this one is
        // the end of everything asked so far.
        self.position = self.position.max(window.to);
        let keep_from = self.position.saturating_sub(late_ms);
        self.seen = self.seen.split_off(&Seen {
            time_ms: keep_from,
            key: String::new(),
        });
    }
}

/// The windows one poll still has to ask for, next first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowWalk {
    /// Windows not yet answered; the last one is asked for next.
    pending: Vec<Window>,
    late_ms: i64,
}

impl WindowWalk {
    /// What to do next.
    pub fn next(&self) -> Step {
        self.pending.last().map_or(Step::Done, |&w| Step::Ask(w))
    }

    /// The answer for `window` may have been cut off: ask for its halves
    /// instead, the earlier one first. False when it cannot be split (a
    /// single millisecond): the caller must page through it.
    pub fn split(&mut self, window: Window) -> Result<bool, WindowError> {
        self.expect(window)?;
        if window.span() < 2 {
            return Ok(false);
        }
        self.pending.pop();
        let middle = window.from + window.span() / 2;
        self.pending.push(Window {
            from: middle,
            to: window.to,
        });
        self.pending.push(Window {
            from: window.from,
            to: middle,
        });
        Ok(true)
    }

    /// `window` was answered whole, and these records of it delivered
    /// (times and keys): the cursor moves past it and remembers them, and
    /// forgets what has left the late span. Records outside the window are
    /// the caller's to drop (they are asked for with their own window).
    pub fn answered(
        &mut self,
        window: Window,
        cursor: &mut WindowCursor,
        delivered: impl IntoIterator<Item = Seen>,
    ) -> Result<(), WindowError> {
        self.expect(window)?;
        cursor.seen.extend(delivered);
        cursor.close(window, self.late_ms);
        self.done(window)
    }

    /// `window` was answered and the cursor closed over it (by
    /// [`WindowCursor::close`], on the thread that saw its records): the
    /// walk goes on with the next window.
    pub fn done(&mut self, window: Window) -> Result<(), WindowError> {
        self.expect(window)?;
        self.pending.pop();
        Ok(())
    }

    /// Asks for `window` in two parts cut at `at` (`from < at < to`), the
    /// earlier first: for a part that needs a request of its own (a
    /// millisecond crowded with more rows than a page). False when `at` is
    /// not inside the window.
    pub fn cut(&mut self, window: Window, at: i64) -> Result<bool, WindowError> {
        self.expect(window)?;
        if at <= window.from || at >= window.to {
            return Ok(false);
        }
        self.pending.pop();
        self.pending.push(Window {
            from: at,
            to: window.to,
        });
        self.pending.push(Window {
            from: window.from,
            to: at,
        });
        Ok(true)
    }

    /// `window` was answered up to `until` only (a hunting result cut at
    /// its `take` holds the earliest rows: everything before its last
    /// row's time is complete) and the cursor closed over `[from,
    /// until)`: the rest of the window is asked for next.
    pub fn resume(&mut self, window: Window, until: i64) -> Result<(), WindowError> {
        self.expect(window)?;
        if until <= window.from || until >= window.to {
            return self.done(window);
        }
        self.pending.pop();
        self.pending.push(Window {
            from: until,
            to: window.to,
        });
        Ok(())
    }

    /// How far back each poll asks again (ms).
    pub fn late_ms(&self) -> i64 {
        self.late_ms
    }

    fn expect(&self, window: Window) -> Result<(), WindowError> {
        let asked = self.pending.last().copied();
        if asked == Some(window) {
            Ok(())
        } else {
            Err(WindowError::NotAsked { got: window, asked })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const PLAN: WindowPlan = WindowPlan {
        settle_ms: 600_000,
        late_ms: 3_600_000,
    };

    #[test]
    fn a_window_waits_for_its_end_to_settle_and_reaches_back_over_the_late_span() {
        let cursor = WindowCursor::start(1_000_000_000);
        assert_eq!(cursor.poll(1_000_000_000 + PLAN.settle_ms, PLAN), None);
        let walk = cursor
            .poll(1_000_000_000 + PLAN.settle_ms + 5, PLAN)
            .expect("five settled ms");
        // No late span before the first start.
        assert_eq!(
            walk.next(),
            Step::Ask(Window {
                from: 1_000_000_000,
                to: 1_000_000_005
            })
        );
        let later = WindowCursor {
            position: 2_000_000_000,
            floor: 0,
            seen: BTreeSet::new(),
        };
        let walk = later
            .poll(2_000_000_000 + PLAN.settle_ms + 1, PLAN)
            .expect("settled");
        assert_eq!(
            walk.next(),
            Step::Ask(Window {
                from: 2_000_000_000 - PLAN.late_ms,
                to: 2_000_000_001
            })
        );
    }

    #[test]
    fn a_full_answer_splits_its_window_left_half_first_down_to_one_millisecond() {
        let cursor = WindowCursor::start(0);
        let mut walk = cursor.poll(10 + PLAN.settle_ms, PLAN).expect("settled");
        let whole = Window { from: 0, to: 10 };
        assert_eq!(walk.split(whole), Ok(true));
        assert_eq!(walk.next(), Step::Ask(Window { from: 0, to: 5 }));
        let one = Window { from: 0, to: 1 };
        let mut walk = WindowWalk {
            pending: vec![one],
            late_ms: 0,
        };
        assert_eq!(walk.split(one), Ok(false));
        assert_eq!(walk.next(), Step::Ask(one));
        assert!(walk.split(whole).is_err(), "not the window asked for");
    }

    /// A record of the simulated world: its time, key, and the time it
    /// becomes visible.
    #[derive(Clone, Debug)]
    struct Record {
        time: i64,
        key: String,
        visible_at: i64,
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        prop::collection::vec(
            (
                0i64..200_000,
                // Visible up to 3 s after it happens, sometimes much later.
                prop_oneof![8 => 0i64..3_000, 1 => 0i64..60_000],
                0u8..3,
            ),
            0..120,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (time, delay, _))| Record {
                    time,
                    key: format!("r{n}"),
                    visible_at: time + delay,
                })
                .collect()
        })
    }

    proptest! {
        /// Polling a world where records turn up late, with answers cut at
        /// a row cap and restarts from the saved cursor between polls:
        /// every record visible within `settle + late` of its time is
        /// delivered exactly once, and none twice.
        #[test]
        fn nothing_visible_in_time_is_lost_and_nothing_is_delivered_twice(
            world in records(),
            take in 1usize..6,
            poll_every in 200i64..20_000,
        ) {
            let plan = WindowPlan { settle_ms: 2_000, late_ms: 10_000 };
            let mut saved = WindowCursor::start(0);
            let mut delivered: BTreeMap<String, u32> = BTreeMap::new();
            let mut now = 0;
            while now < 300_000 {
                now += poll_every;
                // A restart: only the saved cursor survives.
                let mut cursor = saved.clone();
                let Some(mut walk) = cursor.poll(now, plan) else { continue };
                let mut asks = 0;
                while let Step::Ask(window) = walk.next() {
                    asks += 1;
                    prop_assert!(asks < 10_000, "the walk does not end");
                    let mut answer: Vec<&Record> = world
                        .iter()
                        .filter(|r| window.contains(r.time) && r.visible_at <= now)
                        .collect();
                    // The API promises no order.
                    answer.reverse();
                    if answer.len() >= take && walk.split(window).expect("asked") {
                        continue;
                    }
                    // A window of one millisecond is paged through whole.
                    let mut fresh = Vec::new();
                    for record in answer {
                        if cursor.is_new(record.time, &record.key)
                            && !fresh.iter().any(|s: &Seen| s.key == record.key)
                        {
                            *delivered.entry(record.key.clone()).or_default() += 1;
                            fresh.push(Seen { time_ms: record.time, key: record.key.clone() });
                        }
                    }
                    walk.answered(window, &mut cursor, fresh).expect("asked");
                    // Confirmed and checkpointed after every answer.
                    saved = cursor.clone();
                }
            }
            for record in &world {
                let count = delivered.get(&record.key).copied().unwrap_or(0);
                prop_assert!(count <= 1, "{} delivered {count} times", record.key);
                if record.visible_at - record.time <= plan.settle_ms + plan.late_ms
                    && record.time + plan.settle_ms + poll_every < 300_000
                {
                    prop_assert_eq!(count, 1, "{:?} lost", record);
                }
            }
        }

        /// The same world asked the hunting way: an answer holds the
        /// earliest `take` rows of its window (in no particular order), and
        /// a full one is used up to its latest row's time, the rest of the
        /// window asked again. Only a millisecond holding more than `take`
        /// rows can lose rows (the caller warns); none is delivered twice.
        #[test]
        fn full_answers_used_up_to_their_last_time_lose_nothing(
            world in records(),
            take in 2usize..6,
            poll_every in 200i64..20_000,
        ) {
            let plan = WindowPlan { settle_ms: 2_000, late_ms: 10_000 };
            let mut saved = WindowCursor::start(0);
            let mut delivered: BTreeMap<String, u32> = BTreeMap::new();
            let mut now = 0;
            while now < 300_000 {
                now += poll_every;
                let mut cursor = saved.clone();
                let Some(mut walk) = cursor.poll(now, plan) else { continue };
                let mut asks = 0;
                while let Step::Ask(window) = walk.next() {
                    asks += 1;
                    prop_assert!(asks < 10_000, "the walk does not end");
                    let mut answer: Vec<&Record> = world
                        .iter()
                        .filter(|r| window.contains(r.time) && r.visible_at <= now)
                        .collect();
                    answer.sort_by_key(|r| (r.time, r.key.clone()));
                    answer.truncate(take);
                    answer.reverse();
                    let until = if answer.len() == take {
                        let last = answer.iter().map(|r| r.time).max().unwrap_or(window.from);
                        last.max(window.from + 1)
                    } else {
                        window.to
                    };
                    for record in answer.iter().filter(|r| r.time < until) {
                        if cursor.is_new(record.time, &record.key) {
                            *delivered.entry(record.key.clone()).or_default() += 1;
                            cursor.remember(record.time, &record.key);
                        }
                    }
                    cursor.close(Window { from: window.from, to: until }, plan.late_ms);
                    walk.resume(window, until).expect("asked");
                    saved = cursor.clone();
                }
            }
            for record in &world {
                let count = delivered.get(&record.key).copied().unwrap_or(0);
                prop_assert!(count <= 1, "{} delivered {count} times", record.key);
                let crowded = world.iter().filter(|r| r.time == record.time).count() > take;
                if !crowded
                    && record.visible_at - record.time <= plan.settle_ms + plan.late_ms
                    && record.time + plan.settle_ms + poll_every < 300_000
                {
                    prop_assert_eq!(count, 1, "{:?} lost", record);
                }
            }
        }
    }
}
