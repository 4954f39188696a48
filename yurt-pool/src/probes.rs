//! The manager's plain-HTTP endpoints: `/metrics` (Prometheus text) on the metrics address, and
//! `/healthz` and `/readyz` on the health-probe address, as controller-runtime serves them.
//!
//! `/healthz` answers `ok` while the process serves at all. `/readyz` answers `ok` once the
//! manager is past start-up: a standby waiting for the Lease is ready (it is healthy and would
//! take over), and a stopped manager is not. Any other path is 404.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::manager::Phase;
use crate::metrics::Metrics;

/// What the endpoints report on.
#[derive(Clone, Debug)]
pub struct ProbeState {
    /// The manager's metrics.
    pub metrics: Metrics,
    /// The manager's phase.
    pub phase: watch::Receiver<Phase>,
}

fn respond(state: &ProbeState, path: &str, metrics: bool) -> Response<Full<Bytes>> {
    let (code, body, content_type) = match (path, metrics) {
        ("/metrics", true) => (
            StatusCode::OK,
            state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        ("/healthz", false) => (StatusCode::OK, "ok".to_owned(), "text/plain"),
        ("/readyz", false) => {
            if *state.phase.borrow() == Phase::Stopped {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "manager stopped".to_owned(),
                    "text/plain",
                )
            } else {
                (StatusCode::OK, "ok".to_owned(), "text/plain")
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "404 page not found\n".to_owned(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Binds `addr`; the returned future serves `/metrics` (when `metrics`) or the health probes
/// until dropped. Binding happens before this returns, so a port in use is reported at once.
pub async fn bind(
    addr: SocketAddr,
    state: ProbeState,
    metrics: bool,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = respond(&state, req.uri().path(), metrics);
                async move { Ok::<_, Infallible>(resp) }
            });
            connections.spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
    };
    Ok((local, serve))
}
