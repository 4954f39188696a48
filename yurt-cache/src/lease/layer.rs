use std::sync::Arc;

use tower::Layer;

use super::service::Shared;
use super::{KubeletLeaseService, KubeletLiveness};

/// Wraps a service in [`KubeletLeaseService`]; see the [module docs](super). Clones (and the
/// services they make) share one in-memory lease.
#[derive(Debug, Clone)]
pub struct KubeletLeaseLayer {
    shared: Arc<Shared>,
}

impl KubeletLeaseLayer {
    /// Answers the lease of node `node_name`, reporting renewals to `liveness`.
    pub fn new(node_name: impl Into<String>, liveness: KubeletLiveness) -> Self {
        KubeletLeaseLayer {
            shared: Arc::new(Shared::new(node_name.into(), liveness)),
        }
    }

    /// The liveness this layer reports renewals to.
    pub fn liveness(&self) -> &KubeletLiveness {
        &self.shared.liveness
    }
}

impl<S> Layer<S> for KubeletLeaseLayer {
    type Service = KubeletLeaseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KubeletLeaseService::from_shared(inner, self.shared.clone())
    }
}
