use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use http_body::Body as _;
use tokio::sync::watch;
use tower::Service;
use yurt_core::{RequestInfo, Verb};

use super::strategy::order;
use super::{ResponseFuture, Strategy};
use crate::body::Body;
use crate::health::HealthSnapshot;
use crate::upstream::{Error, UpstreamClient};

/// A `Service` over the upstream servers of a health snapshot; see the [module docs](super).
/// Clones share the round-robin position.
#[derive(Debug, Clone)]
pub struct Balancer {
    client: UpstreamClient,
    health: watch::Receiver<HealthSnapshot>,
    strategy: Strategy,
    next: Arc<AtomicUsize>,
}

impl Balancer {
    /// Balances over the servers of `health` (from
    /// [`HealthChecker::subscribe`](crate::health::HealthChecker::subscribe)), sending through
    /// `client`.
    pub fn new(
        client: UpstreamClient,
        health: watch::Receiver<HealthSnapshot>,
        strategy: Strategy,
    ) -> Self {
        Balancer {
            client,
            health,
            strategy,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The servers to try, in order (at most two: the choice and the retry target).
    fn targets(&self) -> Vec<Uri> {
        let snapshot = self.health.borrow();
        let healthy: Vec<bool> = snapshot.servers.iter().map(|s| s.healthy).collect();
        let start = self.next.load(Ordering::Relaxed);
        let order = order(self.strategy, &healthy, start);
        if let (Strategy::RoundRobin, Some(&chosen)) = (self.strategy, order.first()) {
            self.next.store(chosen + 1, Ordering::Relaxed);
        }
        order
            .into_iter()
            .take(2)
            .map(|i| snapshot.servers[i].server.clone())
            .collect()
    }
}

impl Service<Request<Body>> for Balancer {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        let targets = self.targets();
        let client = self.client.clone();
        ResponseFuture(Box::pin(async move {
            let Some(first) = targets.first() else {
                return Ok(failure(Error::NoHealthyUpstream));
            };
            let retry = match targets.get(1) {
                Some(second) if retryable(&req) => Some((second, copy_empty(&req))),
                _ => None,
            };
            let err = match client.send(first, req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            match retry {
                Some((second, again)) if err.is_connect() => {
                    tracing::debug!(
                        error = %err,
                        retry_on = %second,
                        "retrying a read on the next healthy server"
                    );
                    Ok(client.send(second, again).await.unwrap_or_else(failure))
                }
                _ => Ok(failure(err)),
            }
        }))
    }
}

/// A `get` or `list` with an empty body (resolved by the request-info layer, or here).
fn retryable(req: &Request<Body>) -> bool {
    if !req.body().is_end_stream() {
        return false;
    }
    let verb = match req.extensions().get::<RequestInfo>() {
        Some(info) => info.verb.clone(),
        None => match RequestInfo::from_request(req) {
            Ok(info) => info.verb,
            Err(_) => return false,
        },
    };
    matches!(verb, Verb::Get | Verb::List)
}

/// The request again, with the (empty) body it had.
fn copy_empty(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

/// The Status response for `err`, carrying the error as an extension.
fn failure(err: Error) -> Response<Body> {
    let mut resp: Response<Body> = err.to_status().to_response();
    resp.extensions_mut().insert(Arc::new(err));
    resp
}
