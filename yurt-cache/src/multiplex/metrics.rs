//! [`MultiplexMetrics`]: what the multiplexer serves and how many feeds it runs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::admin::RequestLabels;

/// Labels carrying one resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `group/version/resource`, the core group empty (`/v1/services`).
    pub resource: String,
}

/// The multiplexer's metrics; cheap to clone (clones share the values).
#[derive(Clone, Debug, Default)]
pub struct MultiplexMetrics {
    /// List and watch requests answered from a feed, until their body ends:
    /// `yurthub_multiplexed_in_flight_requests` (upstream's `aggregated_in_flight_requests`).
    pub in_flight: Family<RequestLabels, Gauge>,
    /// Running feeds (one upstream list+watch per resource): `yurthub_multiplexer_feeds`.
    pub feeds: Gauge,
    /// Watch events written to clients, summed over clients:
    /// `yurthub_multiplexer_events_fanned_out_total`.
    pub events_fanned_out: Family<ResourceLabels, Counter>,
    /// Watch events a feed received from upstream: `yurthub_multiplexer_events_received_total`.
    pub events_received: Family<ResourceLabels, Counter>,
    /// Lists a feed made (the first one and every re-list): `yurthub_multiplexer_lists_total`.
    pub lists: Family<ResourceLabels, Counter>,
    /// Requests answered 429 because a feed had not synced yet:
    /// `yurthub_multiplexer_not_synced_total`.
    pub not_synced: Family<ResourceLabels, Counter>,
}

impl MultiplexMetrics {
    /// Registers the metrics (prefix `yurthub_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "yurthub_multiplexed_in_flight_requests",
            "List and watch requests served from the multiplexer's shared caches, by verb, resource and component",
            self.in_flight.clone(),
        );
        registry.register(
            "yurthub_multiplexer_feeds",
            "Running multiplexer feeds (one upstream list+watch per resource)",
            self.feeds.clone(),
        );
        registry.register(
            "yurthub_multiplexer_events_fanned_out",
            "Watch events written to multiplexed clients, by resource",
            self.events_fanned_out.clone(),
        );
        registry.register(
            "yurthub_multiplexer_events_received",
            "Watch events the multiplexer's feeds received, by resource",
            self.events_received.clone(),
        );
        registry.register(
            "yurthub_multiplexer_lists",
            "Lists made by the multiplexer's feeds, by resource",
            self.lists.clone(),
        );
        registry.register(
            "yurthub_multiplexer_not_synced",
            "Requests answered 429 while a feed was not synced, by resource",
            self.not_synced.clone(),
        );
    }
}
