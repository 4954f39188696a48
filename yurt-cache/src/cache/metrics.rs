//! Prometheus counters of the cache layer, registered by the caller into its own registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What was cached: `object` (get/create/update/patch), `list`, `watch` (events) or
/// `nonresource`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CachedLabels {
    /// The kind of response.
    pub verb: String,
}

/// Why a tee gave up on a response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TeeFailureLabels {
    /// `overflow` (the tee fell behind the client), `decode` (the body was not the expected
    /// JSON), `store` (a store write failed), `incomplete` (the body ended early or the client
    /// left before a list was complete) or `partial` (a page of a paginated list that cannot
    /// complete a chain: its earlier pages were not seen, or the chain is too large to hold).
    pub reason: String,
}

/// Counters of one cache layer; clones share them.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    /// Responses (for watches: events) that changed the store, by kind: objects created or
    /// updated, lists replaced, watch events that wrote or deleted, documents stored.
    pub cached: Family<CachedLabels, Counter>,
    /// Tees that gave up on a response, by reason. The client's response is never affected.
    pub tee_failures: Family<TeeFailureLabels, Counter>,
    /// Tee tasks running now (one per cached response whose body is still open or whose store
    /// writes are still resolving).
    pub active_tees: Gauge,
}

impl CacheMetrics {
    /// Registers every metric under the prefix `yurt_cache_layer` (e.g.
    /// `yurt_cache_layer_cached_total{verb="list"}`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_cache_layer");
        r.register(
            "cached",
            "Responses (watch: events) that changed the store, by kind",
            self.cached.clone(),
        );
        r.register(
            "tee_failures",
            "Responses the cache tee gave up on, by reason",
            self.tee_failures.clone(),
        );
        r.register(
            "active_tees",
            "Tee tasks running now",
            self.active_tees.clone(),
        );
    }

    pub(crate) fn cached(&self, verb: &str, n: u64) {
        self.cached
            .get_or_create(&CachedLabels {
                verb: verb.to_owned(),
            })
            .inc_by(n);
    }

    pub(crate) fn failed(&self, reason: &str) {
        self.tee_failures
            .get_or_create(&TeeFailureLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The `cached` count of one kind (tests, admin).
    pub fn cached_count(&self, verb: &str) -> u64 {
        self.cached
            .get_or_create(&CachedLabels {
                verb: verb.to_owned(),
            })
            .get()
    }

    /// The `tee_failures` count of one reason (tests, admin).
    pub fn failure_count(&self, reason: &str) -> u64 {
        self.tee_failures
            .get_or_create(&TeeFailureLabels {
                reason: reason.to_owned(),
            })
            .get()
    }
}
