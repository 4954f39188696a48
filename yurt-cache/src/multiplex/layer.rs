use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use yurt_core::wellknown::hub::MULTIPLEXER_AGENT_PREFIX;

use super::service::Registry;
use super::{MultiplexMetrics, MultiplexService, PoolScopeResources};

/// Wraps a service in [`MultiplexService`]; see the [module docs](super). The services one
/// layer makes share its feeds; dropping the layer and all of them (or calling
/// [`shutdown`](Self::shutdown)) stops the feeds.
#[derive(Debug, Clone)]
pub struct MultiplexLayer {
    pub(super) node_name: String,
    pub(super) resources: PoolScopeResources,
    pub(super) metrics: MultiplexMetrics,
    pub(super) history: usize,
    pub(super) fanout_buffer: usize,
    pub(super) min_request_timeout: Duration,
    pub(super) upstream_watch_timeout: Duration,
    pub(super) list_timeout: Duration,
    pub(super) backoff_min: Duration,
    pub(super) backoff_max: Duration,
    registry: Option<Arc<Registry>>,
}

impl MultiplexLayer {
    /// Multiplexes the list and watch requests of `resources` on node `node_name` (whose name
    /// makes the feeds' User-Agent, `multiplexer-proxy-<node>`).
    pub fn new(node_name: impl Into<String>, resources: PoolScopeResources) -> MultiplexLayer {
        let mut layer = MultiplexLayer {
            node_name: node_name.into(),
            resources,
            metrics: MultiplexMetrics::default(),
            history: 10_000,
            fanout_buffer: 4096,
            min_request_timeout: Duration::from_secs(300),
            upstream_watch_timeout: Duration::from_secs(300),
            list_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            registry: None,
        };
        layer.rebuild();
        layer
    }

    /// Settings changed: a new registry (feeds are made lazily, so nothing runs yet).
    fn rebuild(&mut self) {
        let mut config = self.clone();
        config.registry = None;
        self.registry = Some(Arc::new(Registry::new(config)));
    }

    fn with(mut self, f: impl FnOnce(&mut MultiplexLayer)) -> Self {
        f(&mut self);
        self.rebuild();
        self
    }

    /// Events of history kept per resource for watches resuming from a resourceVersion
    /// (default 10,000); older ones get 410 Gone.
    pub fn history(self, events: usize) -> Self {
        self.with(|l| l.history = events.max(1))
    }

    /// Events a client watch may fall behind the feed before it is ended (it then resumes
    /// from its last resourceVersion); default 4,096.
    pub fn fanout_buffer(self, events: usize) -> Self {
        self.with(|l| l.fanout_buffer = events.max(1))
    }

    /// Client watches without `timeoutSeconds` end after a random time in `[d, 2d)` (default
    /// 300 s, the `minRequestTimeout` of upstream YurtHub's multiplexer handler).
    pub fn min_request_timeout(self, d: Duration) -> Self {
        self.with(|l| l.min_request_timeout = d)
    }

    /// The feeds' upstream watches last a random time in `[d, 2d)` (default 300 s, as
    /// upstream YurtHub's [300, 600)).
    pub fn upstream_watch_timeout(self, d: Duration) -> Self {
        self.with(|l| l.upstream_watch_timeout = d.max(Duration::from_secs(1)))
    }

    /// Bound of one upstream list (default 60 s).
    pub fn list_timeout(self, d: Duration) -> Self {
        self.with(|l| l.list_timeout = d)
    }

    /// Backoff between failed upstream attempts, doubling from `min` to `max` (default
    /// 200 ms to 10 s).
    pub fn backoff(self, min: Duration, max: Duration) -> Self {
        self.with(|l| {
            l.backoff_min = min;
            l.backoff_max = max.max(min);
        })
    }

    /// The layer's metrics (register them with [`MultiplexMetrics::register`]).
    pub fn metrics(&self) -> &MultiplexMetrics {
        &self.metrics
    }

    /// The multiplexed resources now.
    pub fn resources(&self) -> PoolScopeResources {
        match &self.registry {
            Some(r) => r.resources(),
            None => self.resources.clone(),
        }
    }

    /// Replaces the multiplexed resources (upstream takes them from ConfigMap
    /// `leader-hub-<pool>` once it exists): feeds of resources left out stop and their
    /// watches end; new ones start on their first request.
    pub fn set_resources(&self, resources: PoolScopeResources) {
        if let Some(r) = &self.registry {
            r.set_resources(resources);
        }
    }

    /// The User-Agent of the feeds' requests: `multiplexer-proxy-<node>` (lower-cased).
    pub fn user_agent(&self) -> String {
        format!("{MULTIPLEXER_AGENT_PREFIX}{}", self.node_name).to_lowercase()
    }

    /// Stops every feed and ends every multiplexed watch; later multiplexed requests are
    /// answered 503. Call it before draining the server, so open watches end at once.
    pub fn shutdown(&self) {
        if let Some(r) = &self.registry {
            r.shutdown();
        }
    }
}

impl<S> Layer<S> for MultiplexLayer {
    type Service = MultiplexService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let registry = match &self.registry {
            Some(r) => r.clone(),
            None => Arc::new(Registry::new(self.clone())),
        };
        MultiplexService::new(inner, registry)
    }
}
