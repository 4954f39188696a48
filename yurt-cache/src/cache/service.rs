use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tower::Service;
use yurt_core::{Component, RequestInfo};

use super::body::{TeeBody, TeeSignal};
use super::policy::{self, Accept};
use super::tee::Tee;
use super::{CacheLayer, ResponseFuture};
use crate::body::Body;

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
        let plan = {
            let info = req.extensions().get::<RequestInfo>();
            let component = req.extensions().get::<Component>();
            match (info, component) {
                (Some(info), Some(component)) => {
                    let cached = self.config.agents.borrow().is_cached(component);
                    policy::plan(
                        req.method(),
                        req.headers(),
                        info,
                        component.as_str(),
                        cached,
                    )
                }
                _ => None,
            }
        };
        let plan = plan.filter(|_| {
            policy::accept(req.headers()) == Accept::Json && !policy::is_dry_run(req.uri().query())
        });
        let Some(plan) = plan else {
            return ResponseFuture(Box::pin(self.inner.call(req)));
        };
        policy::rewrite_request(req.headers_mut());
        let fut = self.inner.call(req);
        let config = self.config.clone();
        ResponseFuture(Box::pin(async move {
            let resp = fut.await?;
            if !policy::response_is_cacheable(resp.status(), resp.headers()) {
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
