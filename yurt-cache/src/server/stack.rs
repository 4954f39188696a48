//! [`ProxyStack`]: the hub's proxy tower composed in DESIGN order, as one clonable service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder};

use crate::admin::{MetricsLayer, ProxyMetrics};
use crate::balancer::Balancer;
use crate::body::Body;
use crate::cache::CacheLayer;
use crate::lease::KubeletLeaseLayer;
use crate::multiplex::MultiplexLayer;
use crate::request_info::RequestInfoLayer;

/// `RequestInfoLayer` → `MetricsLayer` → `MultiplexLayer` (when given) → `KubeletLeaseLayer` (when given) → `CacheLayer` (when given) → [`Balancer`], boxed: the
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
        ProxyStack::with_multiplexer(balancer, None, kubelet_lease, cache, metrics)
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
        let inner = ServiceBuilder::new()
            .layer(RequestInfoLayer::new())
            .layer(MetricsLayer::new(metrics))
            .option_layer(multiplex)
            .option_layer(kubelet_lease)
            .option_layer(cache)
            .service(balancer);
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
