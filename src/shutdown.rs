//! A stop request shared by the threads of one tenant (or the whole
//! service). Threads that wait, for the request budget, a retry backoff or
//! the next poll, wait on it, so a stop takes effect at once instead of
//! after the longest sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A clonable stop flag that sleeping threads wake up for.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<(Mutex<bool>, Condvar)>);

impl StopSignal {
    /// A signal that has not been raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes every thread sleeping on it.
    pub fn stop(&self) {
        let (flag, wake) = &*self.0;
        *flag.lock() = true;
        wake.notify_all();
    }

    /// Whether the signal has been raised.
    pub fn is_stopped(&self) -> bool {
        *self.0 .0.lock()
    }

    /// Sleeps for `duration`, or less if the signal is raised meanwhile;
    /// true when it has been.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.sleep_until(Instant::now() + duration)
    }

    /// Sleeps until `deadline` or until the signal is raised; true when it
    /// has been.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let (flag, wake) = &*self.0;
        let mut stopped = flag.lock();
        while !*stopped {
            if wake.wait_until(&mut stopped, deadline).timed_out() {
                break;
            }
        }
        *stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
