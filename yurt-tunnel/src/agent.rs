//! The edge agent: dials every configured cloud server, registers, and serves CONNECT streams
//! to allowlisted local targets.
//!
//! One loop per server (HA: any server can then route to this node). Each loop connects through
//! the [`Transport`] under a deadline, sends its [`Hello`], waits for the [`Ack`](crate::handshake::Ack),
//! then serves HTTP/2 (agent = h2 server) until the session dies (keepalive PING timeout,
//! transport error, server restart), and reconnects after an exponential backoff with jitter;
//! the backoff resets after every successful registration. Refused targets get a clear status:
//! 403 (not allowlisted), 502 (unreachable), 504 (local dial timeout).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::TunnelError;
use crate::allowlist::Allowlist;
use crate::backoff::{Backoff, BackoffConfig, Jitter};
use crate::handshake::{Hello, read_ack, write_frame};
use crate::metrics::{Metrics, reason};
use crate::routing::Target;
use crate::session::{self, SessionConfig};
use crate::splice::{Spawner, Tasks, splice};
use crate::transport::Transport;

/// Edge agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Kubernetes node name (must match the certificate per the server's identity policy).
    pub node: String,
    /// Hostname address, when different from the node name.
    pub hostname: Option<String>,
    /// Node addresses (first one = where node-name targets are dialed).
    pub addresses: Vec<IpAddr>,
    /// Cloud servers (`host:port`); the agent keeps a session to each.
    pub servers: Vec<String>,
    /// Ports allowed on the node's addresses (default kubelet 10250 and 10255).
    pub node_ports: Vec<u16>,
    /// Extra exact targets allowed.
    pub extra_targets: Vec<std::net::SocketAddr>,
    /// Deadline to connect + register with a server.
    pub connect_timeout: Duration,
    /// Deadline to dial a local target.
    pub dial_timeout: Duration,
    /// Idle timeout of a tunneled stream.
    pub idle_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// HTTP/2 settings.
    pub session: SessionConfig,
}

impl AgentConfig {
    /// Defaults for `node` with `addresses`, connecting to `servers`.
    pub fn new(node: impl Into<String>, addresses: Vec<IpAddr>, servers: Vec<String>) -> Self {
        Self {
            node: node.into(),
            hostname: None,
            addresses,
            servers,
            node_ports: crate::allowlist::DEFAULT_NODE_PORTS.to_vec(),
            extra_targets: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(4 * 3600),
            backoff: BackoffConfig::default(),
            session: SessionConfig::default(),
        }
    }

    fn allowlist(&self) -> Allowlist {
        self.extra_targets.iter().fold(
            Allowlist::new(&self.node, self.hostname.as_deref(), self.addresses.clone())
                .with_node_ports(self.node_ports.iter().copied()),
            |a, t| a.allow(*t),
        )
    }

    fn hello(&self) -> Hello {
        Hello {
            node: self.node.clone(),
            hostname: self.hostname.clone(),
            addresses: self.addresses.clone(),
        }
    }
}

struct Inner {
    config: AgentConfig,
    allowlist: Allowlist,
    transport: Arc<dyn Transport>,
    metrics: Metrics,
    live: AtomicUsize,
}

/// The edge side of the tunnel.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.inner.config.node)
            .field("servers", &self.inner.config.servers)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Validates the configuration.
    pub fn new(config: AgentConfig, transport: Arc<dyn Transport>) -> Result<Self, TunnelError> {
        config
            .hello()
            .validate()
            .map_err(|e| TunnelError::Config(e.to_string()))?;
        if config.servers.is_empty() {
            return Err(TunnelError::Config("no tunnel server given".into()));
        }
        let allowlist = config.allowlist();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                allowlist,
                transport,
                metrics: Metrics::new(),
                live: AtomicUsize::new(0),
            }),
        })
    }

    /// The agent's metrics (`sessions` = servers currently registered with).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Number of servers this agent is registered with right now.
    pub fn connected(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Runs forever: one reconnecting session per server. Drop the future to stop the agent and
    /// every stream it carries.
    pub async fn run(&self) {
        let tasks = Tasks::new();
        for (i, server) in self.inner.config.servers.iter().enumerate() {
            let this = self.clone();
            let server = server.clone();
            tasks.spawn(async move { this.server_loop(server, i as u64).await });
        }
        std::future::pending::<()>().await;
    }

    async fn server_loop(&self, server: String, salt: u64) {
        let cfg = &self.inner.config;
        let mut backoff = Backoff::new(cfg.backoff);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let mut jitter = Jitter::new(seed);
        loop {
            match self.session(&server).await {
                Ok(()) => {
                    backoff.reset();
                    tracing::info!(%server, "session ended; reconnecting");
                }
                Err(e) => tracing::warn!(%server, error = %e, "cannot hold a session"),
            }
            let delay = backoff.next_delay(jitter.unit());
            tokio::time::sleep(delay).await;
        }
    }

    /// One session: connect, register, serve. `Ok` once registered (whatever ended it).
    async fn session(&self, server: &str) -> Result<(), TunnelError> {
        let cfg = &self.inner.config;
        let deadline = cfg.connect_timeout;
        let mut io = timeout(deadline, self.inner.transport.connect(server))
            .await
            .map_err(|_| TunnelError::Timeout(deadline, "connect to tunnel server"))??;
        timeout(deadline, async {
            write_frame(&mut io, &cfg.hello().encode()).await?;
            read_ack(&mut io).await
        })
        .await
        .map_err(|_| TunnelError::Timeout(deadline, "registration"))??;
        tracing::info!(%server, node = %cfg.node, "registered with tunnel server");
        let tasks = Tasks::new();
        let spawner = tasks.spawner();
        let this = self.clone();
        let svc = service_fn(move |req| {
            let this = this.clone();
            let spawner = spawner.clone();
            async move { Ok::<_, Infallible>(this.handle(req, spawner).await) }
        });
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        self.inner.metrics.session_delta(1);
        let result = session::server(&cfg.session)
            .serve_connection(TokioIo::new(io), svc)
            .await;
        self.inner.live.fetch_sub(1, Ordering::AcqRel);
        self.inner.metrics.session_delta(-1);
        drop(tasks);
        if let Err(e) = result {
            tracing::info!(%server, error = %e, "session failed");
        }
        Ok(())
    }

    async fn handle(&self, req: Request<Incoming>, spawner: Spawner) -> Response<Full<Bytes>> {
        let metrics = &self.inner.metrics;
        let reply = |status: StatusCode, reason: &'static str, msg: String| {
            metrics.dial_failed(reason);
            tracing::debug!(%status, %msg, "refusing tunneled stream");
            let mut r = Response::new(Full::new(Bytes::from(msg)));
            *r.status_mut() = status;
            r
        };
        if req.method() == Method::OPTIONS {
            // The server's ping on demand (see the server's dial): answered at once.
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            return r;
        }
        if req.method() != Method::CONNECT {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                reason::BAD_TARGET,
                "agent only serves CONNECT".into(),
            );
        }
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let Some(target) = Target::parse(&authority) else {
            return reply(
                StatusCode::BAD_REQUEST,
                reason::BAD_TARGET,
                format!("invalid target {authority:?}"),
            );
        };
        let addr = match self.inner.allowlist.resolve(&target) {
            Ok(a) => a,
            Err(e) => return reply(StatusCode::FORBIDDEN, reason::REFUSED, e.to_string()),
        };
        let start = tokio::time::Instant::now();
        let dial_timeout = self.inner.config.dial_timeout;
        let tcp = match timeout(dial_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return reply(
                    StatusCode::BAD_GATEWAY,
                    reason::UNREACHABLE,
                    format!("dial {addr}: {e}"),
                );
            }
            Err(_) => {
                return reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    reason::TIMEOUT,
                    format!("dial {addr} timed out after {dial_timeout:?}"),
                );
            }
        };
        let _ = tcp.set_nodelay(true);
        metrics.dial_ok(start.elapsed());
        let guard = metrics.stream();
        let metrics = metrics.clone();
        let idle = self.inner.config.idle_timeout;
        spawner.spawn(async move {
            let _guard = guard;
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let count = |to_edge: bool, n: u64| metrics.add_bytes(to_edge, n);
                    let (_, r) = splice(TokioIo::new(up), tcp, idle, &count).await;
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "local stream ended with error");
                    }
                }
                Err(e) => tracing::debug!(%addr, error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(Full::new(Bytes::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TcpTransport;

    #[test]
    fn rejects_bad_configuration() {
        let t: Arc<dyn Transport> = Arc::new(TcpTransport);
        let ok = AgentConfig::new("edge-1", vec![], vec!["127.0.0.1:10262".into()]);
        assert!(Agent::new(ok.clone(), t.clone()).is_ok());
        let err = Agent::new(
            AgentConfig {
                servers: vec![],
                ..ok.clone()
            },
            t.clone(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no tunnel server"), "{err}");
        let err = Agent::new(
            AgentConfig {
                node: "Edge_1".into(),
                ..ok
            },
            t,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid node name"), "{err}");
    }
}
