//! Prometheus counters of the reconnect task.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The outcome of one replayed journal entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    /// `applied`, `coalesced`, `conflict`, `gone`, `rejected` or `retry`.
    pub outcome: String,
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

    /// The `replayed` count of one outcome (tests, demo).
    pub fn replayed_count(&self, outcome: &str) -> u64 {
        self.replayed
            .get_or_create(&ReplayLabels {
                outcome: outcome.to_owned(),
            })
            .get()
    }
}
