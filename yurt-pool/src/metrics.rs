//! Prometheus metrics of the manager, named as controller-runtime names them so existing
//! dashboards and alerts for upstream yurt-manager keep working:
//!
//! - `controller_runtime_reconcile_total{controller,result}`: reconciles by outcome
//!   (`success`, `requeue_after`, `error`);
//! - `controller_runtime_reconcile_errors_total{controller}`: failed reconciles;
//! - `controller_runtime_active_workers{controller}`: reconciles running right now;
//! - `leader_election_master_status{name}`: 1 while this process holds the manager's Lease;
//! - `controller_runtime_webhook_latency_seconds{webhook}`: webhook request latency (histogram);
//! - `controller_runtime_webhook_requests_total{webhook,code}`: webhook requests by HTTP code;
//! - `controller_runtime_webhook_requests_in_flight{webhook}`: webhook requests being served;
//! - `workqueue_depth{name}`: objects a controller has been asked to reconcile and has not
//!   started on yet (kube-runtime keeps its queue private, so the controllers count it themselves
//!   around their trigger streams and the start of each reconcile).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming one controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// Canonical controller name, such as `nodepool-controller`.
    pub controller: String,
}

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Canonical controller name.
    pub controller: String,
    /// `success`, `requeue_after` or `error`.
    pub result: String,
}

/// Labels naming a Lease (`yurt-manager`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabel {
    /// The Lease's name.
    pub name: String,
}

/// Labels naming one webhook (its path, such as `/validate-core-openyurt-io-v1-node`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// The webhook's path.
    pub webhook: String,
}

/// Labels of a webhook answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookCodeLabels {
    /// The webhook's path.
    pub webhook: String,
    /// HTTP status code of the answer.
    pub code: String,
}

/// Makes one latency histogram: 1 ms to ~16 s in doubling buckets.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Labels naming a controller's work queue (controller-runtime names it after the controller).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// Canonical controller name.
    pub name: String,
}

/// The manager's metric families, registered in one [`Registry`].
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Reconciles by controller and result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Failed reconciles by controller.
    pub errors: Family<ControllerLabel, Counter>,
    /// Reconciles in progress by controller.
    pub active: Family<ControllerLabel, Gauge>,
    /// 1 while this process leads.
    pub leader: Family<LeaseLabel, Gauge>,
    /// Webhook latency by webhook path.
    pub webhook_latency: Family<WebhookLabel, Histogram, fn() -> Histogram>,
    /// Webhook answers by webhook path and HTTP code.
    pub webhook_requests: Family<WebhookCodeLabels, Counter>,
    /// Webhook requests in progress by webhook path.
    pub webhook_in_flight: Family<WebhookLabel, Gauge>,
    /// Objects waiting to be reconciled, by controller.
    pub queue_depth: Family<QueueLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ControllerLabel, Counter>::default();
        let active = Family::<ControllerLabel, Gauge>::default();
        let leader = Family::<LeaseLabel, Gauge>::default();
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            errors.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
            leader.clone(),
        );
        let webhook_latency =
            Family::<WebhookLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let webhook_requests = Family::<WebhookCodeLabels, Counter>::default();
        let webhook_in_flight = Family::<WebhookLabel, Gauge>::default();
        registry.register(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            webhook_latency.clone(),
        );
        registry.register(
            "controller_runtime_webhook_requests",
            "Total number of admission requests by HTTP status code",
            webhook_requests.clone(),
        );
        registry.register(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served",
            webhook_in_flight.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            queue_depth.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            active,
            leader,
            webhook_latency,
            webhook_requests,
            webhook_in_flight,
            queue_depth,
        }
    }

    /// The metrics in the Prometheus text exposition format (what `/metrics` serves).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Total reconciles of `controller` (all results); handy for tests and benches.
    pub fn reconcile_count(&self, controller: &str) -> u64 {
        ["success", "requeue_after", "error"]
            .iter()
            .map(|result| {
                self.reconciles
                    .get_or_create(&ResultLabels {
                        controller: controller.to_owned(),
                        result: (*result).to_owned(),
                    })
                    .get()
            })
            .sum()
    }

    /// Failed reconciles of `controller`.
    pub fn error_count(&self, controller: &str) -> u64 {
        self.errors
            .get_or_create(&ControllerLabel {
                controller: controller.to_owned(),
            })
            .get()
    }

    /// Webhook requests answered at `path` with HTTP `code`; handy for tests.
    pub fn webhook_request_count(&self, path: &str, code: u16) -> u64 {
        self.webhook_requests
            .get_or_create(&WebhookCodeLabels {
                webhook: path.to_owned(),
                code: code.to_string(),
            })
            .get()
    }

    /// Objects waiting in `controller`'s work queue now.
    pub fn queue_depth(&self, controller: &str) -> i64 {
        self.queue_depth
            .get_or_create(&QueueLabel {
                name: controller.to_owned(),
            })
            .get()
    }
}
