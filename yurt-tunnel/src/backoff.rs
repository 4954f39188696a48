//! Reconnect backoff: exponential with jitter, I/O-free (the caller supplies the random draw),
//! so the schedule is a unit test and a test configuration can make it deterministic.

use std::time::Duration;

/// Backoff schedule settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per failure.
    pub multiplier: f64,
    /// Fraction of each delay that is randomised (0 = deterministic, 0.5 = +-50%).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

/// The state of one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    current: Duration,
}

impl Backoff {
    /// Starts at `config.initial`.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            current: config.initial,
        }
    }

    /// The next delay; `unit` is a uniform draw in `[0, 1)` used for jitter.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.current.min(self.config.max);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        let next = self.current.as_secs_f64() * self.config.multiplier.max(1.0);
        self.current = Duration::from_secs_f64(next.min(self.config.max.as_secs_f64()));
        Duration::from_secs_f64(base.as_secs_f64() * factor).min(self.config.max)
    }

    /// Back to the initial delay (after a session that registered).
    pub fn reset(&mut self) {
        self.current = self.config.initial;
    }
}

/// A tiny non-cryptographic generator for jitter draws (splitmix64).
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.0,
        };
        let mut b = Backoff::new(cfg);
        let got: Vec<u64> = (0..5)
            .map(|_| b.next_delay(0.9).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_band() {
        let mut b = Backoff::new(BackoffConfig {
            jitter: 0.5,
            ..BackoffConfig::default()
        });
        let mut j = Jitter::new(7);
        let d = b.next_delay(j.unit());
        assert!(
            d >= Duration::from_millis(250) && d <= Duration::from_millis(750),
            "{d:?}"
        );
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
        for _ in 0..20 {
            assert!(b.next_delay(j.unit()) <= Duration::from_secs(30));
        }
    }
}
