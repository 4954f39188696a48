//! The node's `Autonomy` condition, maintained when kubelet reads its own Node through the hub
//! (upstream YurtHub's autonomy proxy, reference §1.17).
//!
//! [`AutonomyLayer`] sits above the cache layer. For kubelet's `GET /api/v1/nodes/<this node>`
//! it reads the answer (online from the cloud, offline from the cache), computes the condition
//! of type `Autonomy`, and when its status differs from the Node's it sends a strategic merge
//! patch of that one condition to `nodes/<node>/status` (merged by condition type, so no other
//! condition is touched) and returns the patched Node; if the patch fails (offline, say) kubelet
//! gets the Node as read. The condition:
//!
//! - `False`, reason `autonomy disabled`, when the Node has neither annotation
//!   `node.beta.openyurt.io/autonomy` (other than `"false"`) nor
//!   `node.openyurt.io/autonomy-duration` (upstream ignores the latter, a known gap), or when
//!   it is labelled `openyurt.io/is-edge-worker=false`;
//! - otherwise `True`, reason `autonomy enabled successfully`, while the cache works, and
//!   `Unknown`, reason `cache failed`, after more than 3 consecutive reads that each saw new
//!   cache errors (failed store commits, tee store failures: [`AutonomyLayer::cache_errors`]).
//!
//! # Readiness and failure
//!
//! Ready when the inner service is. Other requests pass through untouched. The Node body is
//! read whole (it is one object, bounded by [`MAX_NODE_BYTES`]); if it cannot be read the
//! answer is a 502 Status. The status patch is bounded by a 5 s timeout.

mod service;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::watch;
use tower::Layer;

use crate::health::HealthSnapshot;

pub use service::AutonomyService;

/// The largest Node body the layer reads.
pub const MAX_NODE_BYTES: usize = 8 << 20;

/// A monotonically increasing count of cache errors.
pub type ErrorCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Wraps a service in [`AutonomyService`]; see the [module docs](self).
#[derive(Clone)]
pub struct AutonomyLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) node: String,
    pub(crate) errors: ErrorCount,
    /// The error count at the last observation.
    pub(crate) last_errors: AtomicU64,
    /// Consecutive observations that saw new errors.
    pub(crate) failing: AtomicU64,
    /// When set, no patch is attempted while no server is healthy.
    pub(crate) health: Option<watch::Receiver<HealthSnapshot>>,
}

impl std::fmt::Debug for AutonomyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutonomyLayer")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl AutonomyLayer {
    /// Maintains the condition of `node_name`; no cache errors are counted until
    /// [`cache_errors`](Self::cache_errors) says how.
    pub fn new(node_name: &str) -> Self {
        AutonomyLayer {
            shared: Arc::new(Shared {
                node: node_name.to_owned(),
                errors: Arc::new(|| 0),
                last_errors: AtomicU64::new(0),
                failing: AtomicU64::new(0),
                health: None,
            }),
        }
    }

    /// Skips the status patch while `health` says no server is healthy (offline, kubelet gets
    /// the cached Node as it is, like upstream).
    pub fn health(self, health: watch::Receiver<HealthSnapshot>) -> Self {
        AutonomyLayer {
            shared: Arc::new(Shared {
                node: self.shared.node.clone(),
                errors: self.shared.errors.clone(),
                last_errors: AtomicU64::new(0),
                failing: AtomicU64::new(0),
                health: Some(health),
            }),
        }
    }

    /// Where the count of cache errors comes from (e.g. the store's failed commits plus the
    /// cache layer's store failures).
    pub fn cache_errors(self, errors: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        AutonomyLayer {
            shared: Arc::new(Shared {
                node: self.shared.node.clone(),
                errors: Arc::new(errors),
                last_errors: AtomicU64::new(0),
                failing: AtomicU64::new(0),
                health: self.shared.health.clone(),
            }),
        }
    }
}

impl<S> Layer<S> for AutonomyLayer {
    type Service = AutonomyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AutonomyService::new(inner, self.shared.clone())
    }
}
