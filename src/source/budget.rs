//! Staying inside the tenant's request limit.
//!
//! The API allows 30 requests a minute per tenant and answers 429 beyond
//! that. All data types of a tenant share one [`RequestBudget`], which
//! spaces requests evenly (the default 25 a minute leaves room for other
//! tools using the same tenant). Retries after 429, 5xx and network errors
//! are spaced by [`crate::retry::Backoff`].

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
        self.reserve_at(Instant::now())
    }

    /// [`Self::reserve`] at `now`.
    fn reserve_at(&self, now: Instant) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_spaces_requests() {
        let budget = RequestBudget::new(60); // one a second
        let start = Instant::now();
        // Reservations at one instant: the n-th waits exactly n seconds.
        let waits: Vec<Duration> = (0..4).map(|_| budget.reserve_at(start)).collect();
        let seconds = |n| Duration::from_secs(n);
        assert_eq!(waits, [seconds(0), seconds(1), seconds(2), seconds(3)]);
        // Half a second later, the next slot is 3.5 s away.
        let later = start + Duration::from_millis(500);
        assert_eq!(budget.reserve_at(later), Duration::from_millis(3_500));
        // Long after, a request goes at once.
        assert_eq!(budget.reserve_at(start + seconds(60)), Duration::ZERO);
        assert_eq!(RequestBudget::new(0).reserve(), Duration::ZERO);
    }
}
