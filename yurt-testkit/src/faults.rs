//! Request-level fault injection: a blackhole that never answers, a fixed delay, failing the
//! next N requests with a chosen HTTP code, and failing every request of one method and path
//! (one object's writes) with a chosen code until cleared. Connection-level faults (going down, restarting)
//! live with the listener in [`crate::server`].
//!
//! Every request passes [`Faults::gate`] before it is handled, so a fault applies to every path
//! (health checks and discovery included), as a real network or apiserver failure would.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use yurt_core::status::{Status, StatusReason};

/// The longest a blackhole holds a connection or request; after that the connection is dropped
/// (or the request failed with 503), still without a normal answer.
pub(crate) const BLACKHOLE_LIMIT: Duration = Duration::from_secs(3600);

/// The request-level faults in force.
#[derive(Debug)]
pub(crate) struct Faults {
    blackhole: watch::Sender<bool>,
    delay: Mutex<Duration>,
    fail: Mutex<Option<(u32, u16)>>,
    /// (method, path, code): every matching request fails.
    fail_paths: Mutex<Vec<(String, String, u16)>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            blackhole: watch::channel(false).0,
            delay: Mutex::new(Duration::ZERO),
            fail: Mutex::new(None),
            fail_paths: Mutex::new(Vec::new()),
        }
    }
}

impl Faults {
    /// Starts or stops the blackhole.
    pub(crate) fn set_blackhole(&self, on: bool) {
        self.blackhole.send_replace(on);
    }

    /// Whether the blackhole is on.
    pub(crate) fn blackholed(&self) -> bool {
        *self.blackhole.borrow()
    }

    /// Sets the delay added before every request is handled.
    pub(crate) fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// Fails the next `n` requests with `code`.
    pub(crate) fn fail_next(&self, n: u32, code: u16) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = (n > 0).then_some((n, code));
    }

    /// Fails every `method` request to exactly `path` with `code` (until [`clear`](Self::clear)).
    pub(crate) fn fail_path(&self, method: &str, path: &str, code: u16) {
        self.fail_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((method.to_ascii_uppercase(), path.to_owned(), code));
    }

    /// Clears every request-level fault.
    pub(crate) fn clear(&self) {
        self.set_blackhole(false);
        self.set_delay(Duration::ZERO);
        self.fail_next(0, 0);
        self.fail_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Waits while the blackhole is on (at most [`BLACKHOLE_LIMIT`]); true if it lifted.
    pub(crate) async fn hold_while_blackholed(&self) -> bool {
        let mut rx = self.blackhole.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the blackhole lifts.
        tokio::time::timeout(BLACKHOLE_LIMIT, rx.wait_for(|on| !*on))
            .await
            .is_ok()
    }

    /// Applies the faults to one request: waits out a blackhole and the delay, then returns the
    /// Status to fail it with, if a failure is pending.
    pub(crate) async fn gate(&self, method: &str, path: &str) -> Option<Status> {
        if self.blackholed() && !self.hold_while_blackholed().await {
            return Some(injected(503));
        }
        let delay = *self.delay.lock().unwrap_or_else(|e| e.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some((_, _, code)) = self
            .fail_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(m, p, _)| m == method && p == path)
        {
            return Some(injected(*code));
        }
        let mut fail = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        let (left, code) = (*fail)?;
        *fail = (left > 1).then_some((left - 1, code));
        Some(injected(code))
    }
}

/// The Status an injected failure answers with: the reason Kubernetes pairs with `code`.
pub(crate) fn injected(code: u16) -> Status {
    let reason = match code {
        400 => StatusReason::BadRequest,
        401 => StatusReason::Unauthorized,
        403 => StatusReason::Forbidden,
        404 => StatusReason::NotFound,
        409 => StatusReason::Conflict,
        410 => StatusReason::Expired,
        422 => StatusReason::Invalid,
        429 => StatusReason::TooManyRequests,
        503 => StatusReason::ServiceUnavailable,
        504 => StatusReason::Timeout,
        _ => StatusReason::InternalError,
    };
    let mut st = Status::failure(
        reason,
        format!("fault injected by the test apiserver (HTTP {code})"),
    )
    .with_code(code);
    if matches!(code, 429 | 503) {
        st = st.with_retry_after(1);
    }
    st
}
