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
//! [`ProxyStack`] is the hub's proxy tower composed in DESIGN order, ready to serve.
//!
//! With the crate's `signal` feature (default), [`shutdown_signal`] resolves on SIGTERM or
//! Ctrl-C, for binaries that want it; the library never listens to signals on its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};

mod stack;

pub use stack::{ProxyStack, ProxyStackBuilder};

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long [`Server::shutdown`] waits for open connections to finish (default 30 s).
    pub drain_timeout: Duration,
    /// How long a client may take to send an HTTP/1.1 request head (default 30 s).
    pub header_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            drain_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
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
    // Dropping the set (when this task ends or is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
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
                conns.spawn(serve_connection(
                    stream,
                    peer,
                    service.clone(),
                    graceful.watcher(),
                    config.header_read_timeout,
                ));
            }
        }
    }
    drop(listener);
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
    header_read_timeout: Duration,
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
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_svc);
    if let Err(e) = watcher.watch(conn).await {
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
