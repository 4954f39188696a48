//! Cloud-to-edge reverse tunnels (OpenYurt Raven L7 / yurt-tunnel equivalent).
//!
//! The edge [`Agent`] dials out through NAT to every cloud [`TunnelServer`] it is given and
//! holds an HTTP/2 session on each with the roles reversed (the agent is the h2 server; see
//! [`session`]). The server keeps a registry (node name, hostname, addresses -> session) and
//! opens `CONNECT` streams into the session for kube-apiserver's egress selector, `kubectl
//! logs/exec/port-forward` and metrics scrapers.
//!
//! ```no_run
//! use std::sync::Arc;
//! use yurt_tunnel::{Agent, AgentConfig, Listener, ServerConfig, TlsAcceptor, TlsTransport, TunnelServer, tls};
//!
//! # async fn demo(ca: Vec<rustls::pki_types::CertificateDer<'static>>,
//! #   server_id: (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>),
//! #   agent_id: (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>))
//! #   -> Result<(), yurt_tunnel::TunnelError> {
//! // Cloud: agents on 10262 (mutual TLS), the egress-selector CONNECT proxy on a Unix socket.
//! let server = TunnelServer::new(ServerConfig::default());
//! let agents = tokio::net::TcpListener::bind("127.0.0.1:10262").await?;
//! let agent_tls = tls::server_config(server_id.0, server_id.1, Some(&ca))?;
//! let uds = tokio::net::UnixListener::bind("/tmp/tunnel.sock")?;
//! tokio::spawn({ let s = server.clone(); async move { s.serve_agents(TlsAcceptor::new(agents, agent_tls)).await } });
//! tokio::spawn({ let s = server.clone(); async move { s.serve_connect(Listener::Unix(uds)).await } });
//!
//! // Edge: CN must be `system:node:edge-1`; kubelet 10250/10255 on 10.0.0.7 are reachable.
//! let transport = Arc::new(TlsTransport::new(tls::client_config(&ca, Some(agent_id))?));
//! let config = AgentConfig::new("edge-1", vec!["10.0.0.7".parse().unwrap()], vec!["127.0.0.1:10262".into()]);
//! Agent::new(config, transport)?.run().await;
//! # Ok(()) }
//! ```
//!
//! Layout: [`transport`] (the `Transport`/`Acceptor` traits, TLS), [`handshake`] (registration
//! frames), [`routing`], [`nodes`] and [`allowlist`] (the I/O-free decisions), [`session`] (HTTP/2 roles),
//! [`server`], [`agent`], [`metrics`], [`splice`] (byte pumping and task ownership), and [`l3`]
//! (the I/O-free planner of Raven's layer 3 network: WireGuard peers, routes, VXLAN, skip-NAT).

#![forbid(unsafe_code)]

pub mod agent;
pub mod allowlist;
pub mod backoff;
mod error;
pub mod handshake;
pub mod l3;
pub mod metrics;
pub mod nodes;
pub mod routing;
pub mod server;
pub mod session;
pub mod splice;
pub mod tls;
pub mod transport;

use std::pin::Pin;
use std::task::{Context, Poll};

pub use agent::{Agent, AgentConfig};
pub use allowlist::Allowlist;
pub use backoff::BackoffConfig;
pub use error::TunnelError;
pub use metrics::Metrics;
pub use nodes::{NodeAddresses, NodeDirectory};
pub use routing::{IdentityPolicy, Target};
pub use server::{
    DEFAULT_FRONT_DOOR_IDENTITIES, DialError, FrontDoorPolicy, HttpDoor, Listener, ServerConfig,
    TunnelServer,
};
pub use session::SessionConfig;
pub use transport::{
    Acceptor, BoxedIo, TcpAcceptor, TcpTransport, TlsAcceptor, TlsTransport, Transport,
};

/// A byte stream to a target on an edge node, carried by one HTTP/2 CONNECT stream. Dropping it
/// resets the stream. Bytes read and written are counted in the server's metrics as they move.
pub struct TunnelStream {
    io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    guard: metrics::StreamGuard,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream").finish_non_exhaustive()
    }
}

impl TunnelStream {
    pub(crate) fn new(
        io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
        guard: metrics::StreamGuard,
    ) -> Self {
        Self { io, guard }
    }
}

impl tokio::io::AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.guard.metrics().add_bytes(false, n as u64);
        }
        r
    }
}

impl tokio::io::AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.guard.metrics().add_bytes(true, n as u64);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
