//! The accept loop and one connection: optional TLS handshake (reading the client certificate's
//! identity), HTTP/1.1 or h2 via hyper-util's auto builder, and the per-request pipeline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use yurt_core::status::{Status, StatusReason};

use super::Shared;
use super::auth::{Authn, Identity, authenticate};
use crate::traffic::CountingBody;

/// The largest request body accepted (kube-apiserver's `--max-request-bytes` default, 3 MiB).
const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// How long a TLS handshake or a request body may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams per h2 connection (kube-apiserver's `--http2-max-streams-per-connection` default).
const MAX_H2_STREAMS: u32 = 1000;

/// Accepts connections until aborted; aborting drops every connection it owns.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, peer, shared.clone(), tls.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Spawns hyper's h2 stream tasks into a set owned by the connection, so they end with it.
#[derive(Clone, Default)]
struct ConnExecutor {
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl<F> hyper::rt::Executor<F> for ConnExecutor
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }
}

/// Serves one connection until it closes, or the server drops every connection.
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let mut cut = shared.conn_cut.subscribe();
    cut.borrow_and_update();
    let serve = async {
        // Accepted, but nothing is read or answered until the blackhole lifts.
        if shared.faults.blackholed() && !shared.faults.hold_while_blackholed().await {
            return;
        }
        match tls {
            Some(acceptor) => {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(IO_TIMEOUT, acceptor.accept(stream)).await
                else {
                    return;
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(crate::pki::peer_identity)
                    .map(|p| Identity {
                        user: p.user,
                        groups: p.groups,
                    });
                serve_http(TokioIo::new(stream), shared.clone(), identity, peer).await;
            }
            None => serve_http(TokioIo::new(stream), shared.clone(), None, peer).await,
        }
    };
    tokio::select! {
        () = serve => {}
        _ = cut.changed() => {}
    }
}

async fn serve_http<I>(io: I, shared: Arc<Shared>, identity: Option<Identity>, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let exec = ConnExecutor::default();
    let mut builder = auto::Builder::new(exec.clone());
    builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let identity = identity.clone();
        async move { Ok::<_, Infallible>(handle(shared, req, identity, peer).await) }
    });
    if let Err(e) = builder.serve_connection(io, service).await {
        tracing::trace!(error = %e, "connection ended");
    }
    drop(exec);
}

/// Marks a response as a watch stream (for traffic accounting).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IsWatch;

/// The per-request pipeline.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    cert_identity: Option<Identity>,
    _peer: SocketAddr,
) -> Response<CountingBody> {
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let cell = shared
        .traffic
        .begin(req.method().as_str(), req.uri(), &user_agent);
    let resp = pipeline(&shared, req, cert_identity, &cell).await;
    let watch = resp.extensions().get::<IsWatch>().is_some();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = shared.traffic.count(cell, status, watch, body);
    Response::from_parts(parts, body)
}

async fn pipeline(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    cert_identity: Option<Identity>,
    cell: &crate::traffic::RecordCell,
) -> Response<crate::body::Body> {
    if let Some(st) = shared
        .faults
        .gate(req.method().as_str(), req.uri().path())
        .await
    {
        let mut resp = crate::body::status(&st);
        if let Some(secs) = st.details.retry_after_seconds
            && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    let (parts, body) = req.into_parts();
    let body =
        match tokio::time::timeout(IO_TIMEOUT, Limited::new(body, MAX_REQUEST_BYTES).collect())
            .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return crate::body::status(&Status::failure(
                    StatusReason::RequestEntityTooLarge,
                    "Request entity too large: limit is 3145728",
                ));
            }
            _ => {
                return crate::body::status(&Status::bad_request(
                    "the request body could not be read",
                ));
            }
        };
    cell.set_request_bytes(body.len() as u64);
    let user = match authenticate(shared, &parts.headers, cert_identity.as_ref()) {
        Authn::User(id) => id,
        Authn::Anonymous if !shared.settings.require_auth => Identity::anonymous(),
        Authn::Anonymous | Authn::Invalid => {
            let resp = crate::body::status(&Status::unauthorized("Unauthorized"));
            return resp;
        }
    };
    crate::handlers::handle(shared, parts, body, user, cell).await
}
