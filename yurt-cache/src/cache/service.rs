use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tower::Service;
use yurt_core::{Component, RequestInfo};

use super::body::{TeeBody, TeeSignal};
use super::policy::{self, Accept, Plan};
use super::tee::Tee;
use super::{CacheLayer, ResponseFuture};
use crate::body::Body;
use crate::local::LocalServer;
use crate::upstream::Error as UpstreamError;
use http_body::Body as _;

/// The cache layer's service; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct CacheService<S> {
    inner: S,
    config: CacheLayer,
}

impl<S> CacheService<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: CacheLayer) -> Self {
        CacheService {
            inner,
            config: layer,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Request<Body>> for CacheService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let (plan, agent) = {
            let info = req.extensions().get::<RequestInfo>();
            let component = req.extensions().get::<Component>();
            match (info, component) {
                (Some(info), Some(component)) => {
                    let cached = self.config.agents.borrow().is_cached(component);
                    let plan = policy::plan(
                        req.method(),
                        req.headers(),
                        info,
                        component.as_str(),
                        cached,
                    );
                    (plan, cached && !component.as_str().is_empty())
                }
                _ => (None, false),
            }
        };
        // Offline: a cache agent's request that the local table covers is answered here.
        let mut fallback = None;
        if let (Some(local), true) = (&self.config.local, agent)
            && let Some(info) = req.extensions().get::<RequestInfo>()
            && LocalServer::can_serve(req.method(), info)
        {
            if !local.upstream_healthy() {
                let local = local.clone();
                return ResponseFuture(Box::pin(async move { Ok(local.serve(req).await) }));
            }
            if LocalServer::can_fall_back(req.method(), info) && req.body().is_end_stream() {
                fallback = Some((local.clone(), copy_empty(&req)));
            }
        }
        // A Table (kubectl get) goes upstream as asked, untouched, and is not cached.
        let table = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(yurt_core::table::wants_table);
        // A cache agent's Table list (kubectl get) that leaves `includeObject` to the server
        // asks for whole objects instead (kubectl prints the cells either way), so the rows
        // can refresh the cache; any other Table request passes through uncached.
        let plan = match plan {
            Some(Plan::List(scope))
                if table
                    && !req
                        .uri()
                        .query()
                        .is_some_and(|q| q.contains("includeObject="))
                    && !policy::is_dry_run(req.uri().query()) =>
            {
                let mut parts = req.uri().clone().into_parts();
                let pq = match req.uri().query() {
                    Some(q) => format!("{}?{q}&includeObject=Object", req.uri().path()),
                    None => format!("{}?includeObject=Object", req.uri().path()),
                };
                if let Ok(pq) = pq.parse() {
                    parts.path_and_query = Some(pq);
                    if let Ok(uri) = http::Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
                req.headers_mut().remove(http::header::ACCEPT_ENCODING);
                Some(Plan::TableList(scope))
            }
            other => other,
        };
        let plan = plan.filter(|p| {
            matches!(p, Plan::NonResource { .. } | Plan::TableList(_))
                || (!table
                    && policy::accept(req.headers()) == Accept::Json
                    && !policy::is_dry_run(req.uri().query()))
        });
        match &plan {
            Some(Plan::NonResource { .. }) => policy::rewrite_document_request(req.headers_mut()),
            Some(Plan::TableList(_)) => {}
            Some(_) => policy::rewrite_request(req.headers_mut()),
            None => {}
        }
        let fut = self.inner.call(req);
        let config = self.config.clone();
        ResponseFuture(Box::pin(async move {
            let resp = match fallback {
                None => fut.await?,
                Some((local, copy)) => {
                    // A read in flight when the last server turns unhealthy, or that fails
                    // to reach it, is answered from the cache instead.
                    let mut health = local.health();
                    tokio::pin!(fut);
                    let outcome = tokio::select! {
                        r = &mut fut => Some(r?),
                        _ = health.wait_for(|h| !h.any_healthy()) => None,
                    };
                    match outcome {
                        Some(resp) if resp.extensions().get::<Arc<UpstreamError>>().is_none() => {
                            resp
                        }
                        _ => {
                            local.metrics().fallbacks.inc();
                            tracing::info!(
                                path = %copy.uri().path(),
                                "the upstream failed before answering; serving the read from the local cache"
                            );
                            return Ok(local.serve(copy).await);
                        }
                    }
                }
            };
            let Some(mut plan) = plan else {
                return Ok(resp);
            };
            if let Plan::NonResource { content_type, .. } = &mut plan {
                if !policy::document_is_cacheable(resp.status(), resp.headers()) {
                    return Ok(resp);
                }
                content_type.clone_from(
                    &resp
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(super::document::JSON)
                        .to_owned(),
                );
            } else if matches!(plan, Plan::TableList(_)) {
                if !policy::table_is_cacheable(resp.status(), resp.headers()) {
                    return Ok(resp);
                }
            } else if !policy::response_is_cacheable(resp.status(), resp.headers()) {
                return Ok(resp);
            }
            let (tx, rx) = mpsc::channel(config.tee_capacity);
            let signal = Arc::new(TeeSignal::default());
            let tee = Tee {
                plan,
                store: config.store.clone(),
                metrics: config.metrics.clone(),
                max_bytes: config.max_bytes,
                pages: config.pages.clone(),
            };
            // Owned by the response body: the task ends once the body's sender is gone (the
            // body ended, failed or was dropped) and its store writes resolved.
            let active = Active::new(config.metrics.active_tees.clone());
            tokio::spawn({
                let signal = signal.clone();
                async move {
                    let _active = active;
                    tee.run(rx, signal).await;
                }
            });
            Ok(resp.map(|body| Body::new(TeeBody::new(body, tx, signal))))
        }))
    }
}

/// The request again, with its (empty) body, for a local fallback.
fn copy_empty(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

/// Counts a running tee in the `active_tees` gauge until dropped (also on a panic).
struct Active(Gauge);

impl Active {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}
