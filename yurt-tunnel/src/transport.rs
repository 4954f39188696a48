//! Byte-stream transports between edge agents and cloud servers.
//!
//! [`Transport`] is the edge side: it dials a bidirectional byte stream to a server address.
//! [`Acceptor`] is the cloud side: it accepts such streams and reports who the peer is. Both are
//! object-safe async traits so the agent and server hold `Arc<dyn Transport>` / `Box<dyn Acceptor>`
//! and a later L3 transport (WireGuard, per Raven's VPN mode) or a WebSocket transport can be
//! plugged in without touching the session logic. The first implementation is TCP + rustls with
//! mutual TLS ([`TlsTransport`], [`TlsAcceptor`]); [`TcpTransport`]/[`TcpAcceptor`] are plain TCP
//! for tests and for deployments that terminate TLS elsewhere.
//!
//! On top of whatever byte stream a transport yields, the session is HTTP/2 with reversed roles
//! (see [`crate::session`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::TunnelError;

/// A bidirectional byte stream usable as a tunnel session.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxedIo = Box<dyn Io>;

/// Who is on the other end of an accepted stream.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The remote socket address, if the transport has one.
    pub addr: Option<SocketAddr>,
    /// The peer certificate's subject common name, if the transport authenticated one.
    pub common_name: Option<String>,
}

/// An accepted, secured stream and its peer.
pub struct Accepted {
    /// The byte stream.
    pub io: BoxedIo,
    /// Who sent it.
    pub peer: PeerInfo,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The handshake of an accepted stream, still to be driven (so a slow TLS peer never blocks the
/// accept loop; the server drives it under a deadline in its own task).
pub type Connecting = Pin<Box<dyn Future<Output = Result<Accepted, TunnelError>> + Send>>;

/// Edge side: dials a byte stream to a cloud server.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Dials `server` (a `host:port` string). The caller bounds this with its own timeout.
    async fn connect(&self, server: &str) -> Result<BoxedIo, TunnelError>;
}

/// Cloud side: accepts byte streams from edge agents.
#[async_trait]
pub trait Acceptor: Send + Sync + 'static {
    /// Waits for the next incoming stream and returns its (not yet driven) handshake.
    async fn accept(&self) -> Result<Connecting, TunnelError>;
    /// The bound address, when there is one.
    fn local_addr(&self) -> Option<SocketAddr>;
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn connect(&self, server: &str) -> Result<BoxedIo, TunnelError> {
        (**self).connect(server).await
    }
}

#[async_trait]
impl<A: Acceptor + ?Sized> Acceptor for Box<A> {
    async fn accept(&self) -> Result<Connecting, TunnelError> {
        (**self).accept().await
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        (**self).local_addr()
    }
}

/// Plain TCP transport (no encryption, no peer identity).
#[derive(Debug, Clone, Default)]
pub struct TcpTransport;

#[async_trait]
impl Transport for TcpTransport {
    async fn connect(&self, server: &str) -> Result<BoxedIo, TunnelError> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// Plain TCP acceptor (no encryption, no peer identity).
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: TcpListener,
}

impl TcpAcceptor {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener) -> Self {
        Self { listener }
    }
}

#[async_trait]
impl Acceptor for TcpAcceptor {
    async fn accept(&self) -> Result<Connecting, TunnelError> {
        let (stream, addr) = self.listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(Box::pin(async move {
            Ok(Accepted {
                io: Box::new(stream) as BoxedIo,
                peer: PeerInfo {
                    addr: Some(addr),
                    common_name: None,
                },
            })
        }))
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// TCP + rustls client transport: verifies the server against the configured roots and presents
/// the agent's client certificate.
#[derive(Clone)]
pub struct TlsTransport {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// A transport using `config` (see [`crate::tls::client_config`]). The server name checked
    /// against the certificate is the host part of each dialed address unless
    /// [`TlsTransport::with_server_name`] overrides it.
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name: None,
        }
    }

    /// Verifies every server against this name instead of the dialed host.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TunnelError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| TunnelError::Config(format!("invalid TLS server name {name:?}: {e}")))?;
        self.server_name = Some(name);
        Ok(self)
    }
}

#[async_trait]
impl Transport for TlsTransport {
    async fn connect(&self, server: &str) -> Result<BoxedIo, TunnelError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = crate::routing::split_host_port(server)
                    .map(|(h, _)| h)
                    .unwrap_or(server);
                ServerName::try_from(host.to_owned()).map_err(|e| {
                    TunnelError::Config(format!("invalid TLS server name {host:?}: {e}"))
                })?
            }
        };
        let tcp = TcpStream::connect(server).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| TunnelError::Tls(format!("handshake with {server}: {e}")))?;
        Ok(Box::new(tls))
    }
}

/// TCP + rustls server acceptor: requires and verifies client certificates per its config and
/// reports the client certificate's common name.
pub struct TlsAcceptor {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Wraps a bound listener and a server config (see [`crate::tls::server_config`]).
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

#[async_trait]
impl Acceptor for TlsAcceptor {
    async fn accept(&self) -> Result<Connecting, TunnelError> {
        let (stream, addr) = self.listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        Ok(Box::pin(async move {
            let tls = acceptor
                .accept(stream)
                .await
                .map_err(|e| TunnelError::Tls(format!("handshake with {addr}: {e}")))?;
            let common_name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| crate::tls::common_name(cert));
            Ok(Accepted {
                io: Box::new(tls) as BoxedIo,
                peer: PeerInfo {
                    addr: Some(addr),
                    common_name,
                },
            })
        }))
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// The common name of a DER certificate (re-exported helper for custom acceptors).
pub fn certificate_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    crate::tls::common_name(cert)
}
