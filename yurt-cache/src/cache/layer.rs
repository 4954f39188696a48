use std::sync::Arc;

use tokio::sync::watch;
use tower::Layer;

use super::tee::PageChains;
use super::{CacheAgents, CacheMetrics, CacheService};
use crate::local::LocalServer;
use crate::store::RedbStore;

/// Default room of a tee's channel, in chunks.
const DEFAULT_TEE_CAPACITY: usize = 1024;
/// Default largest single object, watch event or non-resource document a tee decodes (the
/// apiserver's own request limit is 3 MiB; documents such as `/openapi/v2` are larger).
const DEFAULT_MAX_BYTES: usize = 32 << 20;

/// Wraps a service in [`CacheService`]; see the [module docs](super). Clones share the store,
/// the agents channel, the metrics and the pending chains of list pages.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    pub(super) store: RedbStore,
    pub(super) agents: watch::Receiver<CacheAgents>,
    pub(super) metrics: CacheMetrics,
    pub(super) tee_capacity: usize,
    pub(super) max_bytes: usize,
    pub(super) local: Option<LocalServer>,
    /// Pending chains of list pages, shared by the layer's clones.
    pub(super) pages: Arc<PageChains>,
}

impl CacheLayer {
    /// Tees cacheable responses into `store`, caching the components `agents` names (its
    /// current value is read per request, so a `yurt-hub-cfg` change applies at once).
    pub fn new(store: RedbStore, agents: watch::Receiver<CacheAgents>) -> CacheLayer {
        CacheLayer {
            store,
            agents,
            metrics: CacheMetrics::default(),
            tee_capacity: DEFAULT_TEE_CAPACITY,
            max_bytes: DEFAULT_MAX_BYTES,
            local: None,
            pages: Arc::default(),
        }
    }

    /// Serves cache agents from `local` while no upstream server is healthy, and falls back
    /// to it for reads in flight when the last server turns unhealthy (see the
    /// [`local`](crate::local) module). Without it the layer only tees, and offline requests
    /// get the balancer's 503.
    pub fn serve_offline(mut self, local: LocalServer) -> Self {
        self.local = Some(local);
        self
    }

    /// How many chunks a tee may fall behind its client before it gives up on the response
    /// (default 1024).
    pub fn tee_capacity(mut self, chunks: usize) -> Self {
        self.tee_capacity = chunks.max(1);
        self
    }

    /// The largest object, list item, watch event or document a tee decodes (default 32 MiB);
    /// a larger one makes it give up on the response.
    pub fn max_object_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The layer's counters (register them with [`CacheMetrics::register`]).
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, self.clone())
    }
}
