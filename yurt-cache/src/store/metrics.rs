//! Prometheus metrics of one store, registered by the caller into its own registry.
//!
//! The store never registers itself globally: the hub (or a test) calls
//! [`StoreMetrics::register`] on the registry it serves. Metrics are cheap atomics shared by
//! clones, so a `StoreMetrics` can be created before the store opens (to count a quarantine
//! during open) and handed to it through [`StoreConfig`](super::StoreConfig).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a cache file was moved aside.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuarantineLabels {
    /// `corrupt` (integrity check failed or the open panicked), `schema` (unknown schema
    /// version or table layout) or `foreign` (written for another node).
    pub reason: String,
}

/// Counters of one store.
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics {
    /// Cache files moved aside on open, by reason.
    pub quarantined: Family<QuarantineLabels, Counter>,
    /// Durable write transactions committed.
    pub commits: Counter,
    /// Write operations executed inside a transaction (one per object put or deleted, per watch
    /// event, per non-resource document); counted when executed, so a transaction that then fails
    /// to commit still counts (see `failed_commits`).
    pub write_ops: Counter,
    /// Writes refused because the stored object had a newer resourceVersion.
    pub stale_writes: Counter,
    /// Write transactions that failed (every operation in them was reported failed).
    pub failed_commits: Counter,
    /// I/O errors that closed the file for a reopen (one per recovery episode).
    pub io_errors: Counter,
    /// Successful reopens after an I/O error.
    pub reopens: Counter,
    /// Failed reopen attempts (the open or its probe write failed).
    pub reopen_failures: Counter,
    /// 1 while the file is closed for recovery (writes fail), else 0.
    pub unavailable: Gauge,
}

impl StoreMetrics {
    /// Registers every metric under the prefix `yurt_cache_store` (e.g.
    /// `yurt_cache_store_quarantined_total{reason="corrupt"}`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_cache_store");
        r.register(
            "quarantined",
            "Cache files moved aside on open, by reason",
            self.quarantined.clone(),
        );
        r.register(
            "commits",
            "Durable write transactions committed",
            self.commits.clone(),
        );
        r.register(
            "write_ops",
            "Write operations applied",
            self.write_ops.clone(),
        );
        r.register(
            "stale_writes",
            "Writes refused because the stored resourceVersion was newer",
            self.stale_writes.clone(),
        );
        r.register(
            "failed_commits",
            "Write transactions that failed",
            self.failed_commits.clone(),
        );
        r.register(
            "io_errors",
            "I/O errors that closed the cache file for a reopen",
            self.io_errors.clone(),
        );
        r.register(
            "reopens",
            "Cache file reopened after an I/O error",
            self.reopens.clone(),
        );
        r.register(
            "reopen_failures",
            "Failed attempts to reopen the cache file after an I/O error",
            self.reopen_failures.clone(),
        );
        r.register(
            "unavailable",
            "1 while the cache file is closed for recovery after an I/O error",
            self.unavailable.clone(),
        );
    }

    /// Number of quarantines for `reason` (`corrupt`, `schema`, `foreign`).
    pub fn quarantined_count(&self, reason: &str) -> u64 {
        self.quarantined
            .get_or_create(&QuarantineLabels {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// Number of quarantines for every reason.
    pub fn quarantined_total(&self) -> u64 {
        ["corrupt", "schema", "foreign"]
            .iter()
            .map(|r| self.quarantined_count(r))
            .sum()
    }
}
