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
}
