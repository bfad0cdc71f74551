//! Spacing retries: exponential delays, capped, with full jitter so that
//! several agents (or several tenants of one agent) do not retry in
//! lockstep, and the server's `Retry-After` when it sends one.
//!
//! Shared by the sources (after 429, 5xx and network errors) and the
//! syslog writer (between reconnects), so both back off the same way.

use std::time::Duration;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Delays grow from `base` to at most `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next try: `retry_after` when the server named
    /// one (capped), else a random delay up to the current ceiling.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        if let Some(wait) = retry_after {
            return wait.min(self.cap);
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter, but never less than half the base: a zero sleep
        // would hammer a struggling server.
        let floor = u64::try_from(self.base.as_nanos() / 2).unwrap_or(0);
        Duration::from_nanos(self.rng.u64(floor.min(nanos)..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_honours_retry_after() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..10 {
            let delay = backoff.next_delay(None);
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            assert!(delay >= Duration::from_millis(50));
            ceiling = (ceiling * 2).min(Duration::from_secs(2));
        }
        assert_eq!(backoff.attempts(), 10);
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(90))),
            Duration::from_secs(2)
        );
        backoff.reset();
        assert!(backoff.next_delay(None) <= Duration::from_millis(100));
    }
}
