//! A stop request shared by the threads of one tenant (or the whole
//! service). Threads that wait, for the request budget, a retry backoff or
//! the next poll, wait on it, so a stop takes effect at once instead of
//! after the longest sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A clonable stop flag that sleeping threads wake up for. It can also be
/// nudged: a wake-up that stops nothing, for a waiter that has something
/// to look at (the supervisor, when a tenant's threads end).
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<(Mutex<Flags>, Condvar)>);

#[derive(Debug, Default)]
struct Flags {
    stopped: bool,
    /// Nudges so far.
    nudges: u64,
}

impl StopSignal {
    /// A signal that has not been raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes every thread sleeping on it.
    pub fn stop(&self) {
        let (flags, wake) = &*self.0;
        flags.lock().stopped = true;
        wake.notify_all();
    }

    /// Wakes [`Self::sleep_or_nudge`] without raising the signal.
    pub fn nudge(&self) {
        let (flags, wake) = &*self.0;
        flags.lock().nudges += 1;
        wake.notify_all();
    }

    /// Whether the signal has been raised.
    pub fn is_stopped(&self) -> bool {
        self.0 .0.lock().stopped
    }

    /// Sleeps for `duration`, or less if the signal is raised meanwhile;
    /// true when it has been.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.sleep_until(Instant::now() + duration)
    }

    /// Sleeps until `deadline` or until the signal is raised; true when it
    /// has been.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let (flags, wake) = &*self.0;
        let mut flags = flags.lock();
        while !flags.stopped {
            if wake.wait_until(&mut flags, deadline).timed_out() {
                break;
            }
        }
        flags.stopped
    }

    /// Like [`Self::sleep`], but also ends at a nudge: one after the nudge
    /// count `seen`, which is updated (so a nudge that came between two
    /// sleeps ends the next one at once). True when the signal is raised.
    pub fn sleep_or_nudge(&self, duration: Duration, seen: &mut u64) -> bool {
        let deadline = Instant::now() + duration;
        let (flags, wake) = &*self.0;
        let mut flags = flags.lock();
        while !flags.stopped && flags.nudges == *seen {
            if wake.wait_until(&mut flags, deadline).timed_out() {
                break;
            }
        }
        *seen = flags.nudges;
        flags.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nudge_ends_that_sleep_and_stops_nothing() {
        let signal = StopSignal::new();
        let mut seen = 0;
        // A nudge before the sleep is not lost.
        signal.nudge();
        assert!(!signal.sleep_or_nudge(Duration::from_secs(600), &mut seen));
        assert_eq!(seen, 1);
        let other = signal.clone();
        let sleeper = std::thread::spawn(move || {
            let mut seen = 1;
            (
                other.sleep_or_nudge(Duration::from_secs(600), &mut seen),
                seen,
            )
        });
        std::thread::sleep(Duration::from_millis(20));
        signal.nudge();
        assert_eq!(sleeper.join().expect("sleeper finished"), (false, 2));
        assert!(!signal.is_stopped());
        // A plain sleep is not ended by nudges.
        assert!(!signal.sleep(Duration::from_millis(5)));
    }

    #[test]
    fn a_sleep_ends_early_when_stopped() {
        let signal = StopSignal::new();
        assert!(!signal.sleep(Duration::from_millis(5)), "not raised yet");
        let other = signal.clone();
        let sleeper = std::thread::spawn(move || {
            let started = Instant::now();
            (other.sleep(Duration::from_secs(600)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        signal.stop();
        let (stopped, slept) = sleeper.join().expect("sleeper finished");
        assert!(stopped);
        assert!(slept < Duration::from_secs(600));
        assert!(signal.is_stopped() && signal.sleep(Duration::from_secs(600)));
    }
}
