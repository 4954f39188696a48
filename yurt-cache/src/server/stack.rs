//! [`ProxyStack`]: the hub's proxy tower composed in DESIGN order, as one clonable service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder};

use crate::admin::{MetricsLayer, ProxyMetrics};
use crate::autonomy::AutonomyLayer;
use crate::balancer::Balancer;
use crate::body::Body;
use crate::cache::CacheLayer;
use crate::filter::FilterLayer;
use crate::lease::KubeletLeaseLayer;
use crate::multiplex::MultiplexLayer;
use crate::request_info::RequestInfoLayer;

/// `RequestInfoLayer` → `MetricsLayer` → `FilterLayer` → `MultiplexLayer` →
/// `KubeletLeaseLayer` → `AutonomyLayer` → `CacheLayer` → [`Balancer`] (the optional ones when
/// given), boxed: the
/// service a reference daemon serves on its proxy port (and through which it reads its own
/// configuration). Cheap to clone. Vendors composing other layers build their own
/// `ServiceBuilder` the same way.
#[derive(Clone)]
pub struct ProxyStack {
    inner: BoxCloneService<Request<Body>, Response<Body>, Infallible>,
}

impl std::fmt::Debug for ProxyStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyStack").finish_non_exhaustive()
    }
}

impl ProxyStack {
    /// Composes the stack over `balancer`; without `cache` nothing is cached (cloud mode).
    pub fn new(balancer: Balancer, cache: Option<CacheLayer>, metrics: ProxyMetrics) -> Self {
        ProxyStack::with_kubelet_lease(balancer, None, cache, metrics)
    }

    /// Like [`new`](Self::new), with `kubelet_lease` (edge mode) between the metrics and the
    /// cache layer, answering kubelet's own node-Lease requests locally.
    pub fn with_kubelet_lease(
        balancer: Balancer,
        kubelet_lease: Option<KubeletLeaseLayer>,
        cache: Option<CacheLayer>,
        metrics: ProxyMetrics,
    ) -> Self {
        ProxyStack::builder(balancer, metrics)
            .kubelet_lease(kubelet_lease)
            .cache(cache)
            .build()
    }

    /// Like [`with_kubelet_lease`](Self::with_kubelet_lease), with `filter` right after the
    /// metrics layer (outside the cache: the store keeps what the apiserver sent).
    pub fn with_filter(
        balancer: Balancer,
        filter: Option<FilterLayer>,
        kubelet_lease: Option<KubeletLeaseLayer>,
        cache: Option<CacheLayer>,
        metrics: ProxyMetrics,
    ) -> Self {
        ProxyStack::builder(balancer, metrics)
            .filter(filter)
            .kubelet_lease(kubelet_lease)
            .cache(cache)
            .build()
    }

    /// Like [`with_kubelet_lease`](Self::with_kubelet_lease), with `multiplex` between the
    /// metrics and the kubelet-lease layer, answering list and watch requests of shared
    /// resources from one feed per resource (fetched through the layers below it).
    pub fn with_multiplexer(
        balancer: Balancer,
        multiplex: Option<MultiplexLayer>,
        kubelet_lease: Option<KubeletLeaseLayer>,
        cache: Option<CacheLayer>,
        metrics: ProxyMetrics,
    ) -> Self {
        ProxyStack::builder(balancer, metrics)
            .multiplex(multiplex)
            .kubelet_lease(kubelet_lease)
            .cache(cache)
            .build()
    }

    /// Starts composing a stack over `balancer`; add the optional layers, then
    /// [`build`](ProxyStackBuilder::build).
    pub fn builder(balancer: Balancer, metrics: ProxyMetrics) -> ProxyStackBuilder {
        ProxyStackBuilder {
            balancer,
            metrics,
            filter: None,
            multiplex: None,
            kubelet_lease: None,
            autonomy: None,
            cache: None,
        }
    }
}

/// Composes a [`ProxyStack`] with the optional layers; see [`ProxyStack::builder`].
#[derive(Debug)]
pub struct ProxyStackBuilder {
    balancer: Balancer,
    metrics: ProxyMetrics,
    filter: Option<FilterLayer>,
    multiplex: Option<MultiplexLayer>,
    kubelet_lease: Option<KubeletLeaseLayer>,
    autonomy: Option<AutonomyLayer>,
    cache: Option<CacheLayer>,
}

impl ProxyStackBuilder {
    /// The response filters, outside the cache (the store keeps what the apiserver sent).
    pub fn filter(mut self, layer: Option<FilterLayer>) -> Self {
        self.filter = layer;
        self
    }

    /// Node-level traffic reuse: list/watch of shared resources from one feed each.
    pub fn multiplex(mut self, layer: Option<MultiplexLayer>) -> Self {
        self.multiplex = layer;
        self
    }

    /// Kubelet's node Lease answered locally (edge mode).
    pub fn kubelet_lease(mut self, layer: Option<KubeletLeaseLayer>) -> Self {
        self.kubelet_lease = layer;
        self
    }

    /// The node's `Autonomy` condition maintained on kubelet's node reads (edge mode).
    pub fn autonomy(mut self, layer: Option<AutonomyLayer>) -> Self {
        self.autonomy = layer;
        self
    }

    /// The cache tee, and offline serving if the layer has it (edge mode).
    pub fn cache(mut self, layer: Option<CacheLayer>) -> Self {
        self.cache = layer;
        self
    }

    /// The composed stack.
    pub fn build(self) -> ProxyStack {
        let inner = ServiceBuilder::new()
            .layer(RequestInfoLayer::new())
            .layer(MetricsLayer::new(self.metrics))
            .option_layer(self.filter)
            .option_layer(self.multiplex)
            .option_layer(self.kubelet_lease)
            .option_layer(self.autonomy)
            .option_layer(self.cache)
            .service(self.balancer);
        ProxyStack {
            inner: BoxCloneService::new(inner),
        }
    }
}

impl Service<Request<Body>> for ProxyStack {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = <BoxCloneService<Request<Body>, Response<Body>, Infallible> as Service<
        Request<Body>,
    >>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.inner.call(req)
    }
}
