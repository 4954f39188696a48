//! The listeners: serve any tower `Service` of [`Body`] requests on a [`TcpListener`].
//!
//! [`Server::spawn`] runs an accept loop that serves every connection with hyper-util's auto
//! builder, so one port speaks HTTP/1.1 and h2 (prior knowledge), and HTTP/1.1 upgrades
//! (`kubectl exec`, `port-forward`, websockets) pass through: the inner service sees the
//! request with its `OnUpgrade` extension and may call `hyper::upgrade::on`. Each request's
//! `hyper::body::Incoming` is boxed into a [`Body`] before the service sees it.
//!
//! # Shutdown
//!
//! [`Server::shutdown`] stops accepting (the listener is closed, so new connections are
//! refused), asks every open connection to finish gracefully (HTTP/1.1 closes after the
//! in-flight response, h2 sends GOAWAY) and waits for them, bounded by
//! [`ServerConfig::drain_timeout`]; connections still open then are dropped. Dropping the
//! [`Server`] without calling `shutdown` aborts the accept loop and every connection at once.
//! An upgraded stream belongs to the service that took it (`hyper::upgrade::on`), not to the
//! server: its connection counts as finished once the upgrade is handed over.
//!
//! # Limits
//!
//! A listener serves at most [`ServerConfig::max_connections`] connections at once; one more
//! is answered `429 TooManyRequests` (the apiserver's max-in-flight Status, which client-go
//! retries after `Retry-After`) and closed, while the open ones keep working. A client must
//! send the first bytes of its request within [`ServerConfig::header_read_timeout`], and
//! hyper bounds the rest of the request head and the idle time between kept-alive HTTP/1.1
//! requests by the same timeout; a connection that sends nothing is closed. Both are
//! counted per listener in [`ServerMetrics`]. The hub's listeners speak plain HTTP on
//! loopback (like upstream's 10261 and 10267), so there is no TLS handshake to bound.
//!
//! [`ProxyStack`] is the hub's proxy tower composed in DESIGN order, ready to serve.
//!
//! With the crate's `signal` feature (default), [`shutdown_signal`] resolves on SIGTERM or
//! Ctrl-C, for binaries that want it; the library never listens to signals on its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};

mod limits;
mod stack;

pub use limits::{ListenerLabels, ListenerMetrics, ServerMetrics};
pub use stack::{ProxyStack, ProxyStackBuilder};

use limits::{MAX_REFUSING, Rewind, Slot};

/// At most one log line per this interval about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long [`Server::shutdown`] waits for open connections to finish (default 30 s).
    pub drain_timeout: Duration,
    /// How long a client may take to send the first bytes of a connection, and then each
    /// HTTP/1.1 request head (also the idle limit between kept-alive requests) (default 30 s).
    pub header_read_timeout: Duration,
    /// Connections served at once, at most; one more is answered 429 and closed (default
    /// 1024).
    pub max_connections: usize,
    /// This listener's connection counters (default: counters nobody registered).
    pub metrics: ListenerMetrics,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            drain_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            metrics: ListenerMetrics::default(),
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::drain_timeout`].
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }

    /// Sets [`ServerConfig::header_read_timeout`].
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Sets [`ServerConfig::max_connections`] (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`ServerConfig::metrics`], e.g. [`ServerMetrics::listener`].
    pub fn metrics(mut self, m: ListenerMetrics) -> Self {
        self.metrics = m;
        self
    }
}

/// How a [`Server::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the drain timeout.
    Complete,
    /// The drain timeout passed; the connections still open were dropped.
    TimedOut,
}

/// A running listener; see the [module docs](self). Owns its accept loop and connections.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Drain>>,
}

impl Server {
    /// Serves `service` on `listener` until [`Server::shutdown`] or drop. Needs a Tokio runtime.
    pub fn spawn<S>(
        listener: TcpListener,
        service: S,
        config: ServerConfig,
    ) -> std::io::Result<Self>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, service, config, stopped));
        Ok(Server {
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Binds `addr` and serves `service` on it (see [`Server::spawn`]).
    pub async fn bind<S>(
        addr: SocketAddr,
        service: S,
        config: ServerConfig,
    ) -> std::io::Result<Self>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let listener = TcpListener::bind(addr).await?;
        Server::spawn(listener, service, config)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open connections finish (bounded by the drain timeout) and
    /// returns how the drain ended.
    pub async fn shutdown(mut self) -> Drain {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            // The loop itself bounds the drain; it only fails if it panicked or was aborted.
            Some(task) => task.await.unwrap_or(Drain::TimedOut),
            None => Drain::Complete,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop<S>(
    listener: TcpListener,
    service: S,
    config: ServerConfig,
    mut stopped: oneshot::Receiver<()>,
) -> Drain
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    // Dropping the sets (when this task ends or is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    let mut refusing = JoinSet::new();
    // Tells connections still waiting for their first bytes (not yet hyper's) to give up.
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let mut last_refusal_log: Option<std::time::Instant> = None;
    let mut refusals_unlogged = 0u64;
    let slots = Arc::new(Semaphore::new(
        config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            Some(_) = refusing.join_next(), if !refusing.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Per-connection errors (ECONNABORTED, EMFILE): note and go on; a
                        // short pause keeps an fd exhaustion from spinning the loop.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    config.metrics.refused.inc();
                    refusals_unlogged += 1;
                    // One line per REFUSAL_LOG_EVERY at most: refusals come in floods.
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                        tracing::warn!(
                            %peer,
                            limit = config.max_connections,
                            refused = refusals_unlogged,
                            "connections refused: the listener's connection cap is reached"
                        );
                        last_refusal_log = Some(std::time::Instant::now());
                        refusals_unlogged = 0;
                    }
                    if refusing.len() < MAX_REFUSING {
                        refusing.spawn(limits::refuse(stream));
                    }
                    continue;
                };
                let slot = Slot::new(permit, config.metrics.open.clone());
                conns.spawn(serve_connection(
                    stream,
                    peer,
                    service.clone(),
                    graceful.watcher(),
                    closing_rx.clone(),
                    config.header_read_timeout,
                    (slot, config.metrics.timed_out.clone()),
                ));
            }
        }
    }
    drop(listener);
    drop(refusing);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(config.drain_timeout, async {
        tokio::join!(graceful.shutdown(), async {
            while conns.join_next().await.is_some() {}
        })
    })
    .await;
    match drained {
        Ok(_) => Drain::Complete,
        Err(_) => Drain::TimedOut,
    }
}

/// Serves one accepted connection until it ends (or the graceful shutdown closes it).
async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    watcher: Watcher,
    mut closing: tokio::sync::watch::Receiver<bool>,
    header_read_timeout: Duration,
    (_slot, timed_out): (Slot, prometheus_client::metrics::counter::Counter),
) where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let hyper_svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let svc = service.clone();
        async move {
            match svc.oneshot(req.map(Body::new)).await {
                Ok(resp) => Ok::<_, Infallible>(resp),
                Err(e) => Ok(error_response(e.into())),
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    // The first bytes, under the deadline: hyper's own header timeout starts only after it
    // has told HTTP/1.1 from h2, and that read has no deadline.
    let first = tokio::time::timeout(header_read_timeout, limits::read_preface(&stream));
    let preface = match tokio::select! {
        r = first => r,
        _ = closing.wait_for(|c| *c) => return,
    } {
        Ok(Ok(bytes)) if bytes.is_empty() => return,
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before its first request");
            return;
        }
        Err(_) => {
            timed_out.inc();
            tracing::debug!(%peer, timeout = ?header_read_timeout, "connection sent nothing in time; closed");
            return;
        }
    };
    let io = TokioIo::new(Rewind::new(preface, stream));
    let conn = builder.serve_connection_with_upgrades(io, hyper_svc);
    if let Err(e) = watcher.watch(conn).await {
        let header_timeout = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        if header_timeout {
            timed_out.inc();
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A 500 Kubernetes `Status` for a service error (the hub's own layers answer with their own
/// statuses; this only catches what they let through).
fn error_response(e: BoxError) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": e.to_string(),
        "reason": "InternalError",
        "code": 500,
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Resolves when the process receives SIGTERM (Unix) or Ctrl-C. For binaries: call it once
/// and race it against the work (nothing listens to signals until this is called).
#[cfg(feature = "signal")]
pub async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
