//! The token bucket behind [`ChaosLink::bandwidth`](super::ChaosLink::bandwidth).
//!
//! One bucket per direction, shared by every connection of the link, so the limit applies to the
//! link as a whole. It is a reservation (debt) bucket: a sender takes the tokens it needs at once,
//! possibly driving the balance negative, and waits until the debt would be repaid. Waiting in
//! arrival order keeps the aggregate rate exact without a queue.

use std::time::Duration;

use tokio::time::Instant;

/// Largest piece sent in one reservation, so a throttled stream trickles instead of bursting.
const MAX_PIECE: usize = 16 * 1024;

/// A per-direction rate limit.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

/// What a sender may do next.
#[derive(Debug, PartialEq)]
pub(super) enum Grant {
    /// Send `len` bytes after waiting `wait`.
    After { len: usize, wait: Duration },
    /// The rate is zero: nothing may be sent until the limit changes.
    Blocked,
}

impl Bucket {
    /// An unlimited bucket.
    pub(super) fn new() -> Self {
        Bucket {
            rate: None,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    /// Sets the rate in bytes per second (`None` = unlimited) and forgives any debt.
    pub(super) fn set_rate(&mut self, rate: Option<u64>) {
        self.rate = rate;
        self.last = Instant::now();
        self.tokens = self.capacity() as f64;
    }

    /// Burst size and piece size: a twentieth of a second's worth, within 1 B ..= 16 KiB.
    fn capacity(&self) -> usize {
        match self.rate {
            None => MAX_PIECE,
            Some(rate) => usize::try_from(rate / 20)
                .unwrap_or(MAX_PIECE)
                .clamp(1, MAX_PIECE),
        }
    }

    /// Reserves up to `want` bytes (at least one when `want > 0`) at `now`.
    pub(super) fn reserve(&mut self, want: usize, now: Instant) -> Grant {
        let Some(rate) = self.rate else {
            return Grant::After {
                len: want,
                wait: Duration::ZERO,
            };
        };
        if rate == 0 {
            return Grant::Blocked;
        }
        let capacity = self.capacity();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(capacity as f64);
        let len = want.min(capacity);
        self.tokens -= len as f64;
        let wait = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate as f64)
        };
        Grant::After { len, wait }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_grants_everything_at_once() {
        let mut bucket = Bucket::new();
        let now = Instant::now();
        assert_eq!(
            bucket.reserve(1 << 20, now),
            Grant::After {
                len: 1 << 20,
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn zero_rate_blocks() {
        let mut bucket = Bucket::new();
        bucket.set_rate(Some(0));
        assert_eq!(bucket.reserve(10, Instant::now()), Grant::Blocked);
    }

    fn granted(grant: Grant) -> (usize, f64) {
        match grant {
            Grant::After { len, wait } => (len, wait.as_secs_f64()),
            Grant::Blocked => panic!("blocked"),
        }
    }

    fn assert_grant(grant: Grant, len: usize, wait_secs: f64) {
        let (got_len, got_wait) = granted(grant);
        assert_eq!(got_len, len);
        assert!(
            (got_wait - wait_secs).abs() < 1e-6,
            "{got_wait} != {wait_secs}"
        );
    }

    #[test]
    fn debt_accumulates_at_the_configured_rate() {
        let mut bucket = Bucket::new();
        bucket.set_rate(Some(1000)); // capacity 50 B
        let now = bucket.last;
        // The first piece is covered by the initial burst.
        assert_grant(bucket.reserve(500, now), 50, 0.0);
        // Each further piece at the same instant owes 50 ms more.
        for i in 1..=3 {
            assert_grant(bucket.reserve(500, now), 50, 0.05 * f64::from(i));
        }
        // Time repays the debt.
        let later = now + Duration::from_millis(150);
        assert_grant(bucket.reserve(50, later), 50, 0.05);
        // Forgiven on a rate change.
        bucket.set_rate(Some(1000));
        assert_grant(bucket.reserve(50, bucket.last), 50, 0.0);
    }
}
