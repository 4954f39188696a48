//! What every controller shares: the API client, the manager's settings, the metrics, a
//! Kubernetes Event recorder and the shared informers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::informers::Informers;
use crate::metrics::Metrics;

/// Settings of the manager that controllers read (the yurt-manager flags they depend on).
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Namespace of the manager's own objects (Lease, webhook Secret): `--working-namespace`.
    pub working_namespace: String,
    /// Push NodePool `spec.labels/annotations/taints` onto member nodes:
    /// `--enable-sync-nodepool-configurations`.
    pub enable_sync_nodepool_configurations: bool,
    /// Largest NodeBucket: `--max-nodes-per-bucket`.
    pub max_nodes_per_bucket: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            working_namespace: "kube-system".to_owned(),
            enable_sync_nodepool_configurations: true,
            max_nodes_per_bucket: 100,
        }
    }
}

/// The state shared by every controller of one manager.
#[derive(Clone)]
pub struct Context {
    /// Client of the cluster's apiserver.
    pub client: Client,
    /// The manager's settings.
    pub config: ManagerConfig,
    /// The manager's metrics.
    pub metrics: Metrics,
    /// One watch per resource type, shared by the controllers.
    pub informers: Informers,
    recorder: Recorder,
    backoff: Arc<Mutex<HashMap<String, u32>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("informers", &self.informers)
            .finish_non_exhaustive()
    }
}

/// First retry delay after a failed reconcile (controller-runtime's default).
const BACKOFF_BASE: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures (controller-runtime's default).
const BACKOFF_MAX: Duration = Duration::from_secs(1000);

impl Context {
    /// A context for `client` with `config` and fresh metrics and informers. Events are
    /// reported as `yurt-manager`.
    pub fn new(client: Client, config: ManagerConfig) -> Context {
        let reporter = Reporter {
            controller: "yurt-manager".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics: Metrics::new(),
            informers: Informers::default(),
            backoff: Arc::default(),
        }
    }

    /// Publishes a Kubernetes Event about `object`; failures are logged, never fatal (events
    /// are advisory).
    pub async fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
        action: &str,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, object).await {
            tracing::debug!(error = %err, reason, "could not publish event");
        }
    }

    /// The delay before retrying `key` after its `n`-th consecutive failure: 5 ms doubling per
    /// failure up to 1000 s (controller-runtime's per-item exponential limiter).
    pub fn backoff_delay(failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        Self::backoff_delay(*n)
    }

    /// Forgets the failures of `key` after it reconciled successfully.
    pub fn forget_failures(&self, key: &str) {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_and_caps_at_1000s() {
        assert_eq!(Context::backoff_delay(1), Duration::from_millis(5));
        assert_eq!(Context::backoff_delay(2), Duration::from_millis(10));
        assert_eq!(Context::backoff_delay(5), Duration::from_millis(80));
        assert_eq!(Context::backoff_delay(40), Duration::from_secs(1000));
    }
}
