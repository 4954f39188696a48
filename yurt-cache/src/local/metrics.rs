//! Prometheus counters of local (offline) serving, registered by the caller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A request answered locally.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabels {
    /// Kubernetes verb (`get` for documents).
    pub verb: String,
    /// Resource (empty for documents).
    pub resource: String,
    /// Client component.
    pub component: String,
}

/// Counters of one [`LocalServer`](super::LocalServer); clones share them.
#[derive(Clone, Debug, Default)]
pub struct LocalMetrics {
    /// Requests answered from the store, by verb, resource and component.
    pub served: Family<ServedLabels, Counter>,
    /// Requests sent upstream that fell back to the store when the upstream failed first.
    pub fallbacks: Counter,
    /// Offline writes recorded in the journal.
    pub journaled: Counter,
    /// Offline watches open now.
    pub open_watches: Gauge,
}

impl LocalMetrics {
    /// Registers every metric under the prefix `yurt_local` (e.g.
    /// `yurt_local_served_total{verb="list",resource="pods",component="kubelet"}`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_local");
        r.register(
            "served",
            "Requests answered from the local cache while the cloud was unreachable",
            self.served.clone(),
        );
        r.register(
            "fallbacks",
            "In-flight reads that fell back to the local cache when the upstream failed",
            self.fallbacks.clone(),
        );
        r.register(
            "journaled",
            "Offline writes recorded for replay upstream",
            self.journaled.clone(),
        );
        r.register(
            "open_watches",
            "Offline watches open now",
            self.open_watches.clone(),
        );
    }

    pub(crate) fn served(&self, verb: &str, resource: &str, component: &str) {
        self.served
            .get_or_create(&ServedLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                component: component.to_owned(),
            })
            .inc();
    }

    /// The `served` count of one label set (tests).
    pub fn served_count(&self, verb: &str, resource: &str, component: &str) -> u64 {
        self.served
            .get_or_create(&ServedLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                component: component.to_owned(),
            })
            .get()
    }
}
