use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock, so tests can pause and advance it; outside a paused runtime it is the
// monotonic system clock.
use tokio::time::Instant;

/// When kubelet last renewed its lease through the hub; see the [module docs](super). Cheap to
/// clone: clones share the state.
#[derive(Debug, Clone)]
pub struct KubeletLiveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    grace: Duration,
    last: Mutex<Instant>,
}

impl KubeletLiveness {
    /// Kubelet is dead once `grace` (`--kubelet-health-grace-period`) passes without a
    /// renewal. Creation counts as a renewal (the start-up rule).
    pub fn new(grace: Duration) -> Self {
        KubeletLiveness {
            inner: Arc::new(Inner {
                grace,
                last: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Kubelet renewed its lease now.
    pub fn renewed(&self) {
        *self.inner.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Whether the last renewal (or the creation) is less than the grace period ago.
    pub fn is_alive(&self) -> bool {
        let last = *self.inner.last.lock().unwrap_or_else(|e| e.into_inner());
        last.elapsed() < self.inner.grace
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.inner.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn alive_for_one_grace_period_after_creation_then_until_renewed() {
        let l = KubeletLiveness::new(Duration::from_millis(200));
        assert!(l.is_alive(), "kubelet may start after the hub");
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(l.is_alive(), "still within the grace period");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!l.is_alive(), "no renewal within the grace period");
        l.clone().renewed();
        assert!(l.is_alive(), "a clone's renewal counts");
        assert!(!KubeletLiveness::new(Duration::ZERO).is_alive());
    }
}
