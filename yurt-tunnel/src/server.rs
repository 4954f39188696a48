//! The cloud tunnel server: accepts agents, keeps the registry, dials through sessions and
//! serves the front doors.
//!
//! * [`TunnelServer::serve_agents`]: the agent port (10262). Each accepted stream is secured by
//!   the [`Acceptor`], sends a [`Hello`], is checked against the [`IdentityPolicy`] (certificate
//!   CN `system:node:<node>` by default), its claimed hostname and addresses against the Node
//!   object ([`ServerConfig::nodes`]) and against other nodes' sessions, and becomes an HTTP/2
//!   client session in the registry. Every refusal is logged and counted with its reason.
//! * [`TunnelServer::dial`]: opens a byte stream to `<node-or-address>:<port>` through the node's
//!   session, with admission (bounded pending dials), a deadline and metrics. No session: an
//!   immediate 503 `no tunnel for node X`. An agent that has answered nothing for
//!   [`ServerConfig::dial_ping_after`] is pinged alongside the dial; no answer within the
//!   keepalive timeout drops the session and answers 503 (a frozen agent costs one ping
//!   timeout, not the dial deadline).
//! * Error answers on every front door carry the reason in the status line's reason phrase as
//!   well as the body: kube-apiserver reports only the status line of a failed CONNECT. The TLS
//!   front doors serve only the identities of [`ServerConfig::front_door`].
//! * [`TunnelServer::serve_connect`]: the HTTP CONNECT proxy kube-apiserver's egress selector
//!   uses in `HTTPConnect` mode, over a Unix socket or TLS.
//! * [`TunnelServer::serve_http`]: Raven's 10263 (HTTPS) / 10264 (HTTP) listeners, routing by
//!   `Host: <node>:<port>` or `?nodeName=`, upgrades included.
//! * [`TunnelServer::serve_admin`]: `/healthz` and `/metrics`.
//!
//! Every `serve_*` future owns the tasks it spawns: drop it (or abort its task) and its
//! connections and streams end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

use crate::handshake::{Ack, Hello, read_hello, write_frame};
use crate::metrics::{Metrics, reason, refusal};
use crate::nodes::NodeDirectory;
use crate::routing::{DialGate, IdentityPolicy, Registry, SessionId, Target};
use crate::session::{self, ClientSend, SessionConfig};
use crate::splice::{Spawner, Tasks, splice};
use crate::transport::{Acceptor, Connecting};
use crate::{TunnelError, TunnelStream};

/// Cloud server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who may register which node.
    pub identity: IdentityPolicy,
    /// Deadline for the transport handshake plus the hello.
    pub handshake_timeout: Duration,
    /// Deadline for one dial through a session (default 10 s).
    pub dial_timeout: Duration,
    /// Dials in flight per session before new ones get 503 (default 64).
    pub max_pending_dials: usize,
    /// A tunneled stream with no bytes either way for this long is closed (default 4 h, the
    /// kubelet's `--streaming-connection-idle-timeout`).
    pub idle_timeout: Duration,
    /// HTTP/2 settings.
    pub session: SessionConfig,
    /// Deadline for a kubelet's response headers on the HTTP(S) front doors (bodies and
    /// upgraded streams may then last as long as they move bytes).
    pub response_header_timeout: Duration,
    /// Where the server reads Node objects to verify what a hello claims (hostname and
    /// addresses must be in the Node's `status.addresses`). `None`: claims are only checked for
    /// collisions with other nodes' sessions.
    pub nodes: Option<Arc<dyn NodeDirectory>>,
    /// Which client identities the TLS front doors serve.
    pub front_door: FrontDoorPolicy,
    /// When the agent has not answered anything on a session for this long (counting a pending
    /// dial's wait), the dial also pings it (default 500 ms): a frozen agent then costs the
    /// caller at most this plus one keepalive timeout and a clear 503, instead of the whole
    /// dial timeout. `Duration::ZERO` pings on every dial.
    pub dial_ping_after: Duration,
}

/// Which clients the TLS front doors (the CONNECT proxy over TLS, the 10263 HTTPS door) serve.
/// Those doors hand their client a stream to any kubelet, and the 10263 door even presents
/// the privileged kubelet client certificate on its behalf, so by default only the apiserver's
/// identities are served, and node certificates (`system:node:*`) never are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontDoorPolicy {
    /// Serve clients whose certificate common name is one of these (never `system:node:*`).
    Identities(Vec<String>),
    /// Serve any client, with or without a certificate (explicit opt-out; for doors behind
    /// another authenticating proxy).
    Insecure,
}

/// The identities the front doors serve by default: kubeadm's kube-apiserver kubelet client
/// certificate and the apiserver's own identity.
pub const DEFAULT_FRONT_DOOR_IDENTITIES: [&str; 2] =
    ["kube-apiserver-kubelet-client", "system:kube-apiserver"];

impl Default for FrontDoorPolicy {
    fn default() -> Self {
        Self::Identities(
            DEFAULT_FRONT_DOOR_IDENTITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }
}

impl FrontDoorPolicy {
    /// Checks a client's certificate common name; `Err((metrics reason, message))` refuses it.
    pub fn check(&self, common_name: Option<&str>) -> Result<(), (&'static str, String)> {
        let Self::Identities(allowed) = self else {
            return Ok(());
        };
        match common_name {
            None => Err((
                refusal::NO_CERTIFICATE,
                "a client certificate is required on this front door".into(),
            )),
            Some(cn) if cn.starts_with("system:node:") => Err((
                refusal::NOT_ALLOWED,
                format!("node certificates ({cn:?}) may not use the front door"),
            )),
            Some(cn) if allowed.iter().any(|a| a == cn) => Ok(()),
            Some(cn) => Err((
                refusal::NOT_ALLOWED,
                format!("client certificate CN {cn:?} is not allowed on the front door"),
            )),
        }
    }
}

/// How an HTTP front door forwards: the port assumed when `Host` has none, and whether it
/// speaks TLS to the kubelet.
#[derive(Debug, Clone)]
pub struct HttpDoor {
    /// Port used when the `Host` header carries none.
    pub default_port: u16,
    /// TLS client config towards kubelets (Raven's `tunnel-proxy-client` certificate); `None`
    /// forwards plain HTTP.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
}

impl HttpDoor {
    /// Raven's secure door (10263): default port 10250, TLS to the kubelet with `tls`.
    pub fn secure(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            default_port: 10250,
            kubelet_tls: Some(tls),
        }
    }

    /// Raven's insecure door (10264): default port 10255, plain HTTP to the kubelet.
    pub fn insecure() -> Self {
        Self {
            default_port: 10255,
            kubelet_tls: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            identity: IdentityPolicy::default(),
            handshake_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            max_pending_dials: 64,
            idle_timeout: Duration::from_secs(4 * 3600),
            session: SessionConfig::default(),
            response_header_timeout: Duration::from_secs(60),
            nodes: None,
            front_door: FrontDoorPolicy::default(),
            dial_ping_after: Duration::from_millis(500),
        }
    }
}

/// A failed dial: the HTTP status a front door answers with, and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct DialError {
    /// Status to answer with (400, 403, 502, 503, 504).
    pub status: StatusCode,
    /// Human-readable cause, e.g. `no tunnel for node edge-1`.
    pub message: String,
    /// Metrics reason label.
    pub reason: &'static str,
}

impl DialError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason,
        }
    }
}

#[derive(Clone)]
struct Handle {
    send: ClientSend,
    gate: DialGate,
    close: Arc<Notify>,
    /// Milliseconds since [`Inner::epoch`] when the agent last answered on this session.
    heard: Arc<AtomicU64>,
}

struct Inner {
    epoch: Instant,
    config: ServerConfig,
    registry: Mutex<Registry<Handle>>,
    metrics: Metrics,
}

/// The cloud side of the tunnel. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct TunnelServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TunnelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelServer")
            .field("nodes", &self.nodes())
            .finish_non_exhaustive()
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// A text response whose status line carries `msg` as its reason phrase too: kube-apiserver
/// reports only the status line of a failed CONNECT (`code 503: 503 no tunnel for node edge-2`),
/// so the reason has to be there to reach `kubectl`.
fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    let phrase = reason_phrase(&msg);
    msg.push('\n');
    let mut resp = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::OK
        && let Some(phrase) = phrase
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase.into_bytes())
    {
        resp.extensions_mut().insert(phrase);
    }
    resp
}

/// The reason phrase for a failed request: the message, reduced to what a status line may carry
/// (visible ASCII, spaces and tabs, at most 200 bytes); `None` when nothing is left.
pub fn reason_phrase(msg: &str) -> Option<String> {
    let out: String = msg
        .chars()
        .map(|c| {
            if c == ' ' || c == '\t' || c.is_ascii_graphic() {
                c
            } else {
                ' '
            }
        })
        .take(200)
        .collect();
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_string())
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp
}

impl TunnelServer {
    /// A server with no sessions yet.
    pub fn new(config: ServerConfig) -> Self {
        Self::with_metrics(config, Metrics::new())
    }

    /// A server recording into `metrics`.
    pub fn with_metrics(config: ServerConfig, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                epoch: Instant::now(),
                registry: Mutex::new(Registry::new()),
                metrics,
            }),
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Node names with a live session, sorted.
    pub fn nodes(&self) -> Vec<String> {
        self.registry().nodes()
    }

    /// Dials currently pending on the session serving `host`, if any.
    pub fn pending_dials(&self, host: &str) -> Option<usize> {
        self.registry().lookup(host).map(|(_, h)| h.gate.pending())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry<Handle>> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts agents until the acceptor fails. Sessions live as long as this future.
    pub async fn serve_agents(&self, acceptor: impl Acceptor) -> Result<(), TunnelError> {
        let tasks = Tasks::new();
        loop {
            let connecting = match acceptor.accept().await {
                Ok(c) => c,
                Err(TunnelError::Io(e)) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let this = self.clone();
            tasks.spawn(async move { this.run_session(connecting).await });
        }
    }

    async fn run_session(&self, connecting: Connecting) {
        let cfg = &self.inner.config;
        let deadline = cfg.handshake_timeout;
        let accepted = match timeout(deadline, connecting).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.inner.metrics.rejected(refusal::TRANSPORT);
                tracing::warn!(error = %e, "agent refused: transport handshake failed");
                return;
            }
            Err(_) => {
                self.inner.metrics.rejected(refusal::TRANSPORT);
                tracing::warn!("agent refused: transport handshake timed out");
                return;
            }
        };
        let peer = accepted.peer;
        let mut io = accepted.io;
        let cn = peer.common_name.as_deref();
        let hello = match timeout(deadline, read_hello(&mut io)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return self
                    .refuse(io, &peer, None, refusal::HELLO, e.to_string())
                    .await;
            }
            Err(_) => {
                return self
                    .refuse(io, &peer, None, refusal::HELLO, "hello timed out".into())
                    .await;
            }
        };
        if let Err(why) = cfg.identity.check(cn, &hello.node) {
            return self
                .refuse(io, &peer, Some(&hello), refusal::IDENTITY, why)
                .await;
        }
        if let Some(nodes) = &cfg.nodes {
            match timeout(deadline, nodes.addresses(&hello.node)).await {
                Ok(Ok(Some(addresses))) => {
                    if let Err(why) = addresses.verify(&hello) {
                        return self
                            .refuse(io, &peer, Some(&hello), refusal::CLAIMS, why)
                            .await;
                    }
                }
                Ok(Ok(None)) => {
                    let why = format!("there is no Node {:?}", hello.node);
                    return self
                        .refuse(io, &peer, Some(&hello), refusal::CLAIMS, why)
                        .await;
                }
                Ok(Err(e)) => tracing::warn!(
                    node = %hello.node, error = %e,
                    "cannot read the Node; checking the hello's claims for collisions only"
                ),
                Err(_) => tracing::warn!(
                    node = %hello.node,
                    "reading the Node timed out; checking the hello's claims for collisions only"
                ),
            }
        }
        let collision = self.registry().check(&hello);
        if let Err(c) = collision {
            return self
                .refuse(io, &peer, Some(&hello), refusal::COLLISION, c.to_string())
                .await;
        }
        if timeout(deadline, write_frame(&mut io, &Ack::Accepted.encode()))
            .await
            .is_err()
        {
            return;
        }
        let (send, conn) = match session::client(io, &cfg.session).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(node = %hello.node, error = %e, "h2 handshake with agent failed");
                return;
            }
        };
        let close = Arc::new(Notify::new());
        let handle = Handle {
            send,
            gate: DialGate::new(cfg.max_pending_dials),
            close: close.clone(),
            heard: Arc::new(AtomicU64::new(self.now_ms())),
        };
        let node = hello.node.clone();
        // A rival registered between the check and now: refuse (the agent retries).
        let id = match self.register(hello, handle) {
            Ok(id) => id,
            Err(c) => {
                self.inner.metrics.rejected(refusal::COLLISION);
                tracing::warn!(%node, addr = ?peer.addr, reason = %c, "agent registration refused");
                return;
            }
        };
        // Unregisters however this task ends (including being aborted with its owner).
        let _registration = Registration {
            server: self.clone(),
            id,
        };
        tracing::info!(%node, addr = ?peer.addr, "agent registered");
        let why = tokio::select! {
            r = conn => match r { Ok(()) => "closed".to_string(), Err(e) => e.to_string() },
            () = close.notified() => "closed by the server (replaced, evicted or unresponsive)".to_string(),
        };
        tracing::info!(%node, reason = %why, "agent session ended");
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn register(
        &self,
        hello: Hello,
        handle: Handle,
    ) -> Result<SessionId, crate::routing::Collision> {
        let mut reg = self.registry();
        let (id, replaced) = reg.register(hello, handle)?;
        for old in replaced {
            old.close.notify_one();
        }
        self.inner.metrics.set_sessions(reg.len());
        Ok(id)
    }

    fn unregister(&self, id: SessionId) {
        let mut reg = self.registry();
        reg.remove(id);
        self.inner.metrics.set_sessions(reg.len());
    }

    async fn refuse(
        &self,
        mut io: crate::BoxedIo,
        peer: &crate::transport::PeerInfo,
        hello: Option<&Hello>,
        reason: &'static str,
        why: String,
    ) {
        self.inner.metrics.rejected(reason);
        tracing::warn!(
            addr = ?peer.addr,
            cn = ?peer.common_name,
            node = ?hello.map(|h| h.node.as_str()),
            hostname = ?hello.and_then(|h| h.hostname.as_deref()),
            addresses = ?hello.map(|h| &h.addresses),
            reason,
            why = %why,
            "agent registration refused"
        );
        let _ = timeout(
            Duration::from_secs(1),
            write_frame(&mut io, &Ack::Refused(why).encode()),
        )
        .await;
    }

    /// Asks the agent for an immediate answer (an `OPTIONS` request its session answers without
    /// touching any target). `false` when none comes within the keepalive timeout.
    async fn ping(&self, mut send: ClientSend, heard: &AtomicU64) -> bool {
        let wait = self.inner.config.session.keepalive_timeout;
        let answered = timeout(wait, async {
            send.ready().await.ok()?;
            let req = Request::builder()
                .method(Method::OPTIONS)
                .uri("http://yurt-tunnel.ping/")
                .body(Empty::<Bytes>::new())
                .ok()?;
            send.send_request(req).await.ok()
        })
        .await;
        match answered {
            Ok(Some(_)) => {
                heard.store(self.now_ms(), Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// Opens a stream to `authority` (`<node name | hostname | address>:<port>`) through the
    /// session of the node that owns it.
    pub async fn dial(&self, authority: &str) -> Result<TunnelStream, DialError> {
        let metrics = &self.inner.metrics;
        let result = self.dial_inner(authority).await;
        if let Err(e) = &result {
            metrics.dial_failed(e.reason);
        }
        result
    }

    async fn dial_inner(&self, authority: &str) -> Result<TunnelStream, DialError> {
        let cfg = &self.inner.config;
        let target = Target::parse(authority).ok_or_else(|| {
            DialError::new(
                StatusCode::BAD_REQUEST,
                reason::BAD_TARGET,
                format!("invalid target {authority:?}: want host:port"),
            )
        })?;
        let handle = self.registry().lookup(&target.host).map(|(_, h)| h.clone());
        let handle = handle.ok_or_else(|| {
            DialError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                reason::NO_TUNNEL,
                format!("no tunnel for node {}", target.host),
            )
        })?;
        let _ticket = handle.gate.try_admit().ok_or_else(|| {
            DialError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                reason::OVERLOADED,
                format!(
                    "too many pending dials to node {} (limit {})",
                    target.host, cfg.max_pending_dials
                ),
            )
        })?;
        // The agent may be frozen. Once it has not answered anything on this session for
        // `dial_ping_after` (counting this dial's wait), ping it alongside the dial: a frozen
        // agent then costs the caller one keepalive timeout (not the dial timeout), and its
        // session is dropped for the callers after it. A live agent answers the ping at once
        // and the dial goes on.
        let silent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(handle.heard.load(Ordering::Acquire)),
        );
        let ping_in = cfg.dial_ping_after.saturating_sub(silent);
        let ping_send = handle.send.clone();
        let probe = async {
            tokio::time::sleep(ping_in).await;
            if self.ping(ping_send, &handle.heard).await {
                std::future::pending::<()>().await;
            }
        };
        let heard = handle.heard.clone();
        let close = handle.close.clone();
        let dialing = self.dial_session(&target, handle.send);
        tokio::select! {
            r = dialing => {
                if r.is_ok() {
                    heard.store(self.now_ms(), Ordering::Release);
                }
                r
            }
            () = probe => {
                close.notify_one();
                tracing::warn!(
                    node = %target.host,
                    "agent did not answer a ping within {:?}; dropping its session",
                    cfg.session.keepalive_timeout
                );
                Err(DialError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reason::UNRESPONSIVE,
                    format!(
                        "agent unresponsive: no tunnel for node {} (no answer to a ping within {:?})",
                        target.host, cfg.session.keepalive_timeout
                    ),
                ))
            }
        }
    }

    async fn dial_session(
        &self,
        target: &Target,
        mut send: ClientSend,
    ) -> Result<TunnelStream, DialError> {
        let cfg = &self.inner.config;
        let start = Instant::now();
        let timed_out = || {
            DialError::new(
                StatusCode::GATEWAY_TIMEOUT,
                reason::TIMEOUT,
                format!(
                    "dial to {} timed out after {:?}",
                    target.authority(),
                    cfg.dial_timeout
                ),
            )
        };
        let session_err = |e: hyper::Error| {
            DialError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                reason::SESSION,
                format!("no tunnel for node {}: session failed: {e}", target.host),
            )
        };
        let upgraded = timeout(cfg.dial_timeout, async {
            send.ready().await.map_err(session_err)?;
            let req = Request::builder()
                .method(Method::CONNECT)
                .uri(target.authority())
                .body(Empty::<Bytes>::new())
                .map_err(|e| {
                    DialError::new(StatusCode::BAD_REQUEST, reason::BAD_TARGET, e.to_string())
                })?;
            let resp = send.send_request(req).await.map_err(session_err)?;
            if resp.status() != StatusCode::OK {
                let status = resp.status();
                let body = http_body_util::Limited::new(resp.into_body(), 4096)
                    .collect()
                    .await;
                let msg = body
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                    .unwrap_or_default();
                let (status, reason) = match status {
                    StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                        (StatusCode::FORBIDDEN, reason::REFUSED)
                    }
                    StatusCode::GATEWAY_TIMEOUT => (StatusCode::GATEWAY_TIMEOUT, reason::TIMEOUT),
                    _ => (StatusCode::BAD_GATEWAY, reason::UNREACHABLE),
                };
                return Err(DialError::new(
                    status,
                    reason,
                    format!("agent on {}: {msg}", target.host),
                ));
            }
            hyper::upgrade::on(resp).await.map_err(session_err)
        })
        .await
        .map_err(|_| timed_out())??;
        self.inner.metrics.dial_ok(start.elapsed());
        Ok(TunnelStream::new(
            TokioIo::new(upgraded),
            self.inner.metrics.stream(),
        ))
    }

    /// Serves the HTTP CONNECT proxy (kube-apiserver egress selector, `HTTPConnect` mode) on
    /// every connection `listener` yields. Use [`Listener::Unix`] for the selector's `uds`
    /// transport and [`Listener::Tls`] for its `tcp` transport (which only takes https URLs;
    /// pass a TLS config with a client verifier to require the apiserver's client certificate).
    pub async fn serve_connect(&self, listener: Listener) -> Result<(), TunnelError> {
        let this = self.clone();
        self.serve_listener(listener, move |io, spawner| {
            let this = this.clone();
            async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    let spawner = spawner.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(this.handle_connect(req, spawner).await)
                    }
                });
                if let Err(e) = http1()
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(error = %e, "connect front door connection ended");
                }
            }
        })
        .await
    }

    async fn handle_connect(&self, req: Request<Incoming>, spawner: Spawner) -> Response<Body> {
        if req.method() != Method::CONNECT {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "this is an HTTP CONNECT proxy: send CONNECT <node>:<port>",
            );
        }
        let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
            return text(
                StatusCode::BAD_REQUEST,
                "CONNECT needs an authority (host:port)",
            );
        };
        match self.dial(&authority).await {
            Err(e) => text(e.status, e.message),
            Ok(stream) => {
                let idle = self.inner.config.idle_timeout;
                spawner.spawn(async move {
                    match hyper::upgrade::on(req).await {
                        Ok(up) => {
                            // Bytes are counted by the TunnelStream itself.
                            let (_, r) = splice(TokioIo::new(up), stream, idle, &|_, _| {}).await;
                            if let Err(e) = r {
                                tracing::debug!(%authority, error = %e, "tunneled stream ended with error");
                            }
                        }
                        Err(e) => tracing::debug!(%authority, error = %e, "CONNECT upgrade failed"),
                    }
                });
                empty(StatusCode::OK)
            }
        }
    }

    /// Serves Raven's front doors: requests are routed by `?nodeName=` or `Host: <node>:<port>`
    /// (port defaulting to [`HttpDoor::default_port`]) and forwarded over a tunneled stream
    /// (wrapped in TLS with [`HttpDoor::kubelet_tls`] when set), upgrades (exec/attach/
    /// port-forward) included.
    pub async fn serve_http(&self, listener: Listener, door: HttpDoor) -> Result<(), TunnelError> {
        let door = Arc::new(door);
        let this = self.clone();
        self.serve_listener(listener, move |io, spawner| {
            let this = this.clone();
            let door = door.clone();
            async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    let spawner = spawner.clone();
                    let door = door.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            this.handle_http(req, &door, spawner).await,
                        )
                    }
                });
                if let Err(e) = http1()
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(error = %e, "http front door connection ended");
                }
            }
        })
        .await
    }

    async fn handle_http(
        &self,
        mut req: Request<Incoming>,
        door: &HttpDoor,
        spawner: Spawner,
    ) -> Response<Body> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let Some(target) = Target::from_http(host.as_deref(), req.uri().query(), door.default_port)
        else {
            return text(
                StatusCode::BAD_REQUEST,
                "cannot tell the node: send Host: <node>:<port> or ?nodeName=<node>",
            );
        };
        let stream = match self.dial(&target.authority()).await {
            Ok(s) => s,
            Err(e) => return text(e.status, e.message),
        };
        let io: crate::BoxedIo = match &door.kubelet_tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = match rustls::pki_types::ServerName::try_from(target.host.clone()) {
                    Ok(n) => n,
                    Err(e) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            format!("bad node name for TLS: {e}"),
                        );
                    }
                };
                match timeout(
                    self.inner.config.dial_timeout,
                    tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream),
                )
                .await
                {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        return text(
                            StatusCode::BAD_GATEWAY,
                            format!("TLS to kubelet on {}: {e}", target.host),
                        );
                    }
                    Err(_) => {
                        return text(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("TLS to kubelet on {} timed out", target.host),
                        );
                    }
                }
            }
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(io)).await {
                Ok(pair) => pair,
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("http to {}: {e}", target.authority()),
                    );
                }
            };
        spawner.spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let wants_upgrade = req.headers().contains_key(http::header::UPGRADE);
        let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
        let header_timeout = self.inner.config.response_header_timeout;
        let mut resp = match timeout(header_timeout, sender.send_request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("request to {} failed: {e}", target.authority()),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "no response from {} within {header_timeout:?}",
                        target.authority()
                    ),
                );
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let idle = self.inner.config.idle_timeout;
            spawner.spawn(async move {
                if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                    let _ = splice(
                        TokioIo::new(client),
                        TokioIo::new(upstream),
                        idle,
                        &|_, _| {},
                    )
                    .await;
                }
            });
        }
        resp.map(|b| b.boxed())
    }

    /// Serves `/healthz` (200 `ok`) and `/metrics` (Prometheus text).
    pub async fn serve_admin(&self, listener: TcpListener) -> Result<(), TunnelError> {
        serve_admin(listener, self.inner.metrics.clone()).await
    }

    async fn serve_listener<F, Fut>(
        &self,
        listener: Listener,
        handler: F,
    ) -> Result<(), TunnelError>
    where
        F: Fn(crate::BoxedIo, Spawner) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tasks = Tasks::new();
        let handler = Arc::new(handler);
        let handshake = self.inner.config.handshake_timeout;
        loop {
            let accepted = match &listener {
                #[cfg(unix)]
                Listener::Unix(l) => l
                    .accept()
                    .await
                    .map(|(s, _)| (Box::new(s) as crate::BoxedIo, None)),
                Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    (Box::new(s) as crate::BoxedIo, None)
                }),
                Listener::Tls(l, cfg) => l.accept().await.map(|(s, addr)| {
                    let _ = s.set_nodelay(true);
                    (Box::new(s) as crate::BoxedIo, Some((cfg.clone(), addr)))
                }),
            };
            match accepted {
                Ok((io, tls)) => {
                    let handler = handler.clone();
                    let this = self.clone();
                    let spawner = tasks.spawner();
                    tasks.spawn(async move {
                        let io = match tls {
                            None => io,
                            Some((cfg, peer)) => match timeout(
                                handshake,
                                tokio_rustls::TlsAcceptor::from(cfg).accept(io),
                            )
                            .await
                            {
                                Ok(Ok(tls)) => {
                                    let cn = tls
                                        .get_ref()
                                        .1
                                        .peer_certificates()
                                        .and_then(|c| c.first())
                                        .and_then(crate::tls::common_name);
                                    if let Err((reason, why)) =
                                        this.inner.config.front_door.check(cn.as_deref())
                                    {
                                        this.inner.metrics.front_door_refused(reason);
                                        tracing::warn!(
                                            addr = ?peer, cn = ?cn, reason, why = %why,
                                            "front door client refused"
                                        );
                                        forbid(Box::new(tls), why).await;
                                        return;
                                    }
                                    Box::new(tls) as crate::BoxedIo
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "front door TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            },
                        };
                        handler(io, spawner).await;
                    });
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "front door accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Answers every request of a refused front-door client with 403 and `why`, then closes.
async fn forbid(io: crate::BoxedIo, why: String) {
    let svc = service_fn(move |_req: Request<Incoming>| {
        let why = why.clone();
        async move { Ok::<_, std::convert::Infallible>(text(StatusCode::FORBIDDEN, why)) }
    });
    let mut b = http1();
    b.keep_alive(false);
    let _ = timeout(
        Duration::from_secs(10),
        b.serve_connection(TokioIo::new(io), svc),
    )
    .await;
}

struct Registration {
    server: TunnelServer,
    id: SessionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.server.unregister(self.id);
    }
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    // With a timer, hyper bounds header reads (30 s by default): no slow-loris hangs.
    b.timer(hyper_util::rt::TokioTimer::new());
    b
}

/// Serves `/healthz` and `/metrics` for any [`Metrics`] (agent or server).
pub async fn serve_admin(listener: TcpListener, metrics: Metrics) -> Result<(), TunnelError> {
    let tasks = Tasks::new();
    loop {
        let (s, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tasks.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match req.uri().path() {
                        "/healthz" | "/livez" | "/readyz" => text(StatusCode::OK, "ok"),
                        "/metrics" => {
                            let mut r = text(StatusCode::OK, metrics.encode());
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(
                                    "text/plain; version=0.0.4; charset=utf-8",
                                ),
                            );
                            r
                        }
                        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz or /metrics"),
                    })
                }
            });
            let conn = http1().serve_connection(TokioIo::new(s), svc);
            let _ = timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24)
        || e.raw_os_error() == Some(23)
}

/// A front-door listener.
#[derive(Debug)]
pub enum Listener {
    /// Plain TCP (the 10264 HTTP door).
    Tcp(TcpListener),
    /// TCP + TLS (the CONNECT proxy's `tcp` transport, the 10263 HTTPS door).
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    /// A Unix socket (the CONNECT proxy's `uds` transport).
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}
