//! Prometheus counters of the reconnect task.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The outcome of one replayed journal entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    /// `applied`, `coalesced`, `conflict`, `gone`, `rejected` or `retry` (one per attempt).
    pub outcome: String,
}

/// Why the replay gave up on a journal entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `client_error` (a 4xx), `retries_exhausted` (5xx or no answer, `replay_max_attempts`
    /// times) or `undecodable`.
    pub reason: String,
}

/// Counters of one [`Resync`](super::Resync); clones share them.
#[derive(Clone, Debug, Default)]
pub struct ResyncMetrics {
    /// Reconnect passes run.
    pub passes: Counter,
    /// Journal entries replayed, by outcome.
    pub replayed: Family<ReplayLabels, Counter>,
    /// Non-resource documents refreshed.
    pub documents: Counter,
    /// Cached kubelet pods dropped because the cloud no longer has them.
    pub pods_collected: Counter,
    /// Journal entries given up on, by reason.
    pub replay_rejected: Family<RejectLabels, Counter>,
    /// Age in seconds of the oldest journal entry left after the last replay pass (0 when it
    /// drained).
    pub replay_oldest_pending_seconds: Gauge,
    /// 1 while an entry has been retried for longer than `replay_stuck_after`.
    pub replay_stuck: Gauge,
}

impl ResyncMetrics {
    /// Registers every metric under the prefix `yurt_resync`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_resync");
        r.register("passes", "Reconnect passes run", self.passes.clone());
        r.register(
            "replayed",
            "Offline writes replayed upstream, by outcome",
            self.replayed.clone(),
        );
        r.register(
            "documents",
            "Non-resource documents refreshed after reconnect",
            self.documents.clone(),
        );
        r.register(
            "replay_rejected",
            "Offline writes the replay gave up on, by reason",
            self.replay_rejected.clone(),
        );
        r.register(
            "replay_oldest_pending_seconds",
            "Age of the oldest offline write left in the journal after the last replay pass",
            self.replay_oldest_pending_seconds.clone(),
        );
        r.register(
            "replay_stuck",
            "1 while an offline write has been retried for longer than the stuck bound",
            self.replay_stuck.clone(),
        );
        r.register(
            "pods_collected",
            "Cached kubelet pods dropped because the cloud no longer has them",
            self.pods_collected.clone(),
        );
    }

    pub(crate) fn replayed(&self, outcome: &str) {
        self.replayed
            .get_or_create(&ReplayLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.replay_rejected
            .get_or_create(&RejectLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The `replay_rejected` count of one reason (tests, demo).
    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.replay_rejected
            .get_or_create(&RejectLabels {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// The `replayed` count of one outcome (tests, demo).
    pub fn replayed_count(&self, outcome: &str) -> u64 {
        self.replayed
            .get_or_create(&ReplayLabels {
                outcome: outcome.to_owned(),
            })
            .get()
    }
}
