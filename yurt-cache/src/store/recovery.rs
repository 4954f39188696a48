//! Recovery from I/O errors: the store closes and reopens its file instead of failing forever.
//!
//! After redb meets an I/O error (a full disk, `EIO`) it refuses every later read and write of
//! that `Database` ("close and re-open the database"), even once the cause is gone. So the
//! writer thread treats an I/O error (its own, or one a reader reports) as the start of a
//! recovery episode:
//!
//! 1. the store is marked *broken*: writes fail at once with [`StoreError::Unavailable`]
//!    instead of queueing behind a file that cannot take them (the cache tee gives up on that
//!    response and the client, served from upstream, never notices);
//! 2. after a backoff (doubling from [`StoreConfig::reopen_backoff`] up to
//!    [`StoreConfig::reopen_backoff_max`]) the writer closes the file, opens it again with the
//!    usual open checks (integrity check, quarantine of a damaged file) and commits a small
//!    probe write (reopening a file on a full disk succeeds, its first write does not). When
//!    the probe commits, writes are let through again;
//! 3. the episode ends with the first write of a caller that commits. Until then every
//!    failure counts: each I/O error, each failed reopen attempt, and each write that fails
//!    again after a reopen (a small probe may fit where an object does not). Once
//!    [`StoreConfig::unhealthy_after_reopen_failures`] failures have added up the store
//!    reports [`StoreHealth::Failed`], and keeps doing so until a write commits (the hub's
//!    `/v1/healthz` then fails, so kubelet or systemd restart it). Attempts go on at the
//!    capped interval, so a disk that frees up later still brings the store back without a
//!    restart.
//!
//! The counters are `io_errors`, `reopens`, `reopen_failures` and the gauge `unavailable` of
//! [`StoreMetrics`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::StoreError;
use super::metrics::StoreMetrics;
#[cfg(doc)]
use super::redb_store::StoreConfig;

/// The store's condition, for liveness checks ([`RedbStore::health`](super::RedbStore::health)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreHealth {
    /// Reads and writes work.
    Healthy,
    /// An I/O error closed the file; it is being reopened (writes fail meanwhile), or it was
    /// reopened and no write has committed since.
    Recovering {
        /// Failures in this episode so far: the I/O errors and failed reopen attempts.
        failures: u32,
        /// The last error.
        error: String,
    },
    /// The episode has seen too many failures
    /// ([`StoreConfig::unhealthy_after_reopen_failures`]); attempts go on, and the first
    /// write that commits makes the store healthy again.
    Failed {
        /// Failures in this episode so far.
        failures: u32,
        /// The last error.
        error: String,
    },
}

impl StoreHealth {
    /// Whether the store gave up recovering on its own (a restart is the next step).
    pub fn is_failed(&self) -> bool {
        matches!(self, StoreHealth::Failed { .. })
    }
}

/// Backoff and threshold of the recovery.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReopenPolicy {
    pub(crate) backoff: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) unhealthy_after: u32,
}

impl ReopenPolicy {
    /// The wait before the attempt that follows `failures` failures (at least 1).
    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(self.backoff_max.max(self.backoff))
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    error: String,
    next_attempt: Option<Instant>,
}

/// Shared between the writer (which runs the recovery) and the store's handles (which read the
/// health and report readers' I/O errors).
#[derive(Debug)]
pub(crate) struct Recovery {
    broken: AtomicBool,
    /// An episode is running (failures > 0): the next committed write ends it.
    degraded: AtomicBool,
    /// A reader's I/O error is on its way to the writer (one message per episode is enough).
    reported: AtomicBool,
    state: Mutex<State>,
    policy: ReopenPolicy,
    metrics: StoreMetrics,
}

impl Recovery {
    pub(crate) fn new(policy: ReopenPolicy, metrics: StoreMetrics) -> Self {
        Recovery {
            broken: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            policy,
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the file is closed for recovery.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// The error writes get while the store is broken.
    pub(crate) fn unavailable(&self) -> StoreError {
        let s = self.state();
        StoreError::Unavailable(format!(
            "reopening the cache file after an I/O error ({} failures so far): {}",
            s.failures, s.error
        ))
    }

    /// Claims the right to tell the writer about a reader's I/O error; `false` when the writer
    /// already knows (broken) or was already told.
    pub(crate) fn claim_report(&self) -> bool {
        !self.is_broken() && !self.reported.swap(true, Ordering::SeqCst)
    }

    /// An I/O error: starts an episode (a no-op while one is running).
    pub(crate) fn io_error(&self, error: &dyn std::fmt::Display) {
        self.reported.store(false, Ordering::SeqCst);
        if self.is_broken() {
            return;
        }
        let mut s = self.state();
        s.failures = s.failures.saturating_add(1);
        s.error = error.to_string();
        let delay = self.policy.delay(s.failures);
        s.next_attempt = Some(Instant::now() + delay);
        self.broken.store(true, Ordering::SeqCst);
        self.degraded.store(true, Ordering::SeqCst);
        self.metrics.io_errors.inc();
        self.metrics.unavailable.set(1);
        tracing::error!(
            error = %error,
            retry_in = ?delay,
            "cache store hit an I/O error; closing the file and reopening it (proxying goes on, \
             caching pauses)"
        );
    }

    /// How long the writer may wait for commands before the next reopen attempt is due
    /// (`idle` when nothing is due).
    pub(crate) fn wait(&self, idle: Duration) -> Duration {
        if !self.is_broken() {
            return idle;
        }
        match self.state().next_attempt {
            Some(at) => at.saturating_duration_since(Instant::now()).min(idle),
            None => Duration::ZERO,
        }
    }

    /// Whether a reopen attempt is due now.
    pub(crate) fn due(&self) -> bool {
        self.is_broken() && self.wait(Duration::MAX).is_zero()
    }

    /// A reopen attempt (with its probe write) succeeded: writes are let through again.
    pub(crate) fn reopened(&self) {
        let failures = {
            let mut s = self.state();
            s.next_attempt = None;
            s.failures
        };
        self.broken.store(false, Ordering::SeqCst);
        self.reported.store(false, Ordering::SeqCst);
        self.metrics.reopens.inc();
        self.metrics.unavailable.set(0);
        tracing::info!(failures, "cache store reopened; caching resumes");
    }

    /// A caller's write committed: an episode still open is over.
    pub(crate) fn committed(&self) {
        if !self.degraded.load(Ordering::SeqCst) {
            return;
        }
        let failures = std::mem::take(&mut *self.state()).failures;
        self.degraded.store(false, Ordering::SeqCst);
        tracing::info!(failures, "cache store writes again");
    }

    /// A reopen attempt failed; the next one waits longer.
    pub(crate) fn attempt_failed(&self, error: &StoreError) {
        let mut s = self.state();
        s.failures = s.failures.saturating_add(1);
        s.error = error.to_string();
        let delay = self.policy.delay(s.failures);
        s.next_attempt = Some(Instant::now() + delay);
        self.metrics.reopen_failures.inc();
        if s.failures == self.policy.unhealthy_after {
            tracing::error!(
                failures = s.failures,
                error = %error,
                retry_in = ?delay,
                "cache store cannot be reopened; reporting unhealthy (attempts go on)"
            );
        } else {
            tracing::warn!(
                failures = s.failures,
                error = %error,
                retry_in = ?delay,
                "reopening the cache store failed"
            );
        }
    }

    /// The store's condition.
    pub(crate) fn health(&self) -> StoreHealth {
        if !self.degraded.load(Ordering::SeqCst) {
            return StoreHealth::Healthy;
        }
        let s = self.state();
        if s.failures == 0 {
            return StoreHealth::Healthy;
        }
        let (failures, error) = (s.failures, s.error.clone());
        if failures >= self.policy.unhealthy_after {
            StoreHealth::Failed { failures, error }
        } else {
            StoreHealth::Recovering { failures, error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = ReopenPolicy {
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            unhealthy_after: 3,
        };
        let d: Vec<u128> = (1..=6).map(|f| p.delay(f).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500, 500]);
        assert_eq!(p.delay(u32::MAX).as_millis(), 500);
    }

    #[test]
    fn health_follows_the_episode() {
        let p = ReopenPolicy {
            backoff: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            unhealthy_after: 2,
        };
        let r = Recovery::new(p, StoreMetrics::default());
        assert_eq!(r.health(), StoreHealth::Healthy);
        let e = StoreError::Closed;
        r.io_error(&e);
        assert!(matches!(
            r.health(),
            StoreHealth::Recovering { failures: 1, .. }
        ));
        // A second report of the same episode changes nothing.
        r.io_error(&e);
        assert!(matches!(
            r.health(),
            StoreHealth::Recovering { failures: 1, .. }
        ));
        r.attempt_failed(&e);
        assert!(r.health().is_failed());
        // Reopened: writes go through again, but only one that commits ends the episode.
        r.reopened();
        assert!(!r.is_broken());
        assert!(r.health().is_failed());
        r.committed();
        assert_eq!(r.health(), StoreHealth::Healthy);
        // The next episode starts from zero.
        r.io_error(&e);
        assert!(matches!(
            r.health(),
            StoreHealth::Recovering { failures: 1, .. }
        ));
        assert_eq!(r.metrics.io_errors.get(), 2);
        assert_eq!(r.metrics.reopen_failures.get(), 1);
        assert_eq!(r.metrics.reopens.get(), 1);
    }
}
