//! [`MetricsLayer`]: per-request figures of the proxy path.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};
use yurt_core::{Component, RequestInfo};

use crate::body::{Body, BoxError};

/// Labels of a request: verb, resource and client component.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The Kubernetes verb (`list`, `watch`, ...), or the HTTP method for non-resource requests.
    pub verb: String,
    /// The resource (`pods`), empty for non-resource requests.
    pub resource: String,
    /// The client component (the `User-Agent` cut at `/`).
    pub component: String,
}

/// Labels carrying one client component.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    /// The client component.
    pub component: String,
}

/// The proxy path's metrics; cheap to clone (clones share the values).
#[derive(Clone, Debug, Default)]
pub struct ProxyMetrics {
    /// Requests in flight (until the response body ends): `yurthub_in_flight_requests`.
    pub in_flight: Family<RequestLabels, Gauge>,
    /// Requests received: `yurthub_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// Response body bytes sent to each component: `yurthub_proxied_response_bytes_total`.
    pub response_bytes: Family<ComponentLabels, Counter>,
}

impl ProxyMetrics {
    /// New, zeroed metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the metrics (prefix `yurthub_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "yurthub_in_flight_requests",
            "Requests being served (until the response body ends), by verb, resource and component",
            self.in_flight.clone(),
        );
        registry.register(
            "yurthub_requests",
            "Requests received, by verb, resource and component",
            self.requests.clone(),
        );
        registry.register(
            "yurthub_proxied_response_bytes",
            "Response body bytes sent to clients, by component",
            self.response_bytes.clone(),
        );
    }
}

/// Counts requests in [`ProxyMetrics`]. Place it inside
/// [`RequestInfoLayer`](crate::request_info::RequestInfoLayer) (it reads the request's
/// `RequestInfo` and `Component`); outside it, requests are labelled by HTTP method only.
#[derive(Clone, Debug, Default)]
pub struct MetricsLayer {
    metrics: ProxyMetrics,
}

impl MetricsLayer {
    /// A layer updating `metrics`.
    pub fn new(metrics: ProxyMetrics) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: ProxyMetrics,
}

impl<S> Service<Request<Body>> for MetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let component = req
            .extensions()
            .get::<Component>()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        let labels = match req.extensions().get::<RequestInfo>() {
            Some(info) => RequestLabels {
                verb: info.verb.as_str().to_owned(),
                resource: info.resource.clone(),
                component: component.clone(),
            },
            None => RequestLabels {
                verb: req.method().as_str().to_lowercase(),
                resource: String::new(),
                component: component.clone(),
            },
        };
        self.metrics.requests.get_or_create(&labels).inc();
        let guard = InFlight::new(&self.metrics, labels);
        let bytes = self
            .metrics
            .response_bytes
            .get_or_create(&ComponentLabels { component })
            .clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| {
                Body::new(CountingBody {
                    inner: body,
                    bytes,
                    _guard: guard,
                })
            }))
        })
    }
}

/// Decrements the in-flight gauge when dropped (the request failed, or its body ended).
struct InFlight {
    gauge: Gauge,
}

impl InFlight {
    fn new(metrics: &ProxyMetrics, labels: RequestLabels) -> Self {
        let gauge = metrics.in_flight.get_or_create(&labels).clone();
        gauge.inc();
        InFlight { gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A response body that counts its data bytes and holds the in-flight guard until dropped.
struct CountingBody {
    inner: Body,
    bytes: Counter,
    _guard: InFlight,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
