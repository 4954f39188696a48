//! Prometheus metrics of a health checker, registered by the caller into its own registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming one upstream server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The server's base URI.
    pub server: String,
}

/// Labels of one probe outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The server's base URI.
    pub server: String,
    /// `success` or `failure`.
    pub outcome: String,
}

/// Buckets of [`HealthMetrics::recovery`], in seconds.
const RECOVERY_BUCKETS: [f64; 10] = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0];

/// Gauges, counters and histograms of one checker; clones share them.
#[derive(Clone, Debug)]
pub struct HealthMetrics {
    /// 1 while a server is healthy, 0 otherwise (upstream's
    /// `node_yurthub_server_healthy_status{server}`).
    pub healthy: Family<ServerLabels, Gauge>,
    /// Probes run, by server and outcome.
    pub probes: Family<ProbeLabels, Counter>,
    /// Seconds from the start of a server's last failed probe to it turning healthy again:
    /// an upper bound on the time from the link's return to the hub using it again.
    pub recovery: Family<ServerLabels, Histogram>,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        HealthMetrics {
            healthy: Family::default(),
            probes: Family::default(),
            recovery: Family::new_with_constructor(|| Histogram::new(RECOVERY_BUCKETS)),
        }
    }
}

impl HealthMetrics {
    /// Registers every metric under the prefix `yurt_cache_health`
    /// (`yurt_cache_health_server_healthy{server}`,
    /// `yurt_cache_health_probes_total{server,outcome}`,
    /// `yurt_cache_health_recovery_seconds{server}`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_cache_health");
        r.register(
            "server_healthy",
            "1 while the upstream server is healthy",
            self.healthy.clone(),
        );
        r.register(
            "probes",
            "Health probes run, by server and outcome",
            self.probes.clone(),
        );
        r.register_with_unit(
            "recovery",
            "Time from the last failed probe of an unhealthy server to it turning healthy",
            prometheus_client::registry::Unit::Seconds,
            self.recovery.clone(),
        );
    }

    pub(super) fn record_recovery(&self, server: &str, took: std::time::Duration) {
        self.recovery
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub(super) fn record(&self, server: &str, ok: bool, healthy: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.probes
            .get_or_create(&ProbeLabels {
                server: server.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.healthy
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .set(i64::from(healthy));
    }
}
