//! Staying inside the tenant's request limit, and backing off when told to.
//!
//! The API allows 30 requests a minute per tenant and answers 429 beyond
//! that. All data types of a tenant share one [`RequestBudget`], which
//! spaces requests evenly (the default 25 a minute leaves room for other
//! tools using the same tenant). [`Backoff`] spaces retries after 429, 5xx
//! and network errors: exponential, capped, with full jitter so that several
//! agents do not retry in lockstep, and `Retry-After` when the server sends
//! one.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Requests per minute when none is configured.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 25;

/// Even spacing of requests, shared by every puller of a tenant.
#[derive(Debug)]
pub struct RequestBudget {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RequestBudget {
    /// A budget of `per_minute` requests (0 means unlimited).
    pub fn new(per_minute: u32) -> Self {
        let interval = match per_minute {
            0 => Duration::ZERO,
            n => Duration::from_secs(60) / n,
        };
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Reserves the next request slot and returns how long to wait for it.
    /// The caller sleeps (so it can also watch for shutdown).
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut next = self.next.lock();
        let slot = match *next {
            Some(at) if at > now => at,
            _ => now,
        };
        *next = Some(slot + self.interval);
        slot - now
    }

    /// Waits for the next request slot.
    pub fn wait(&self) {
        let delay = self.reserve();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
}

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
    fn budget_spaces_requests() {
        let budget = RequestBudget::new(60); // one a second
        let waits: Vec<Duration> = (0..4).map(|_| budget.reserve()).collect();
        assert_eq!(waits[0], Duration::ZERO);
        for (n, wait) in waits.iter().enumerate().skip(1) {
            // Reservations made back to back: the n-th waits about n seconds.
            let expected = Duration::from_secs(n as u64);
            assert!(
                *wait <= expected && *wait + Duration::from_millis(500) >= expected,
                "{wait:?}"
            );
        }
        assert_eq!(RequestBudget::new(0).reserve(), Duration::ZERO);
    }

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
