//! The upstream client: the bottom of the hub's tower, which sends a request to one
//! kube-apiserver and streams the answer back.
//!
//! [`UpstreamClient`] is a pooled [`hyper_util::client::legacy::Client`] over rustls (ring
//! provider) that trusts only the CA certificates it was given (the cluster CA is pinned; the
//! system roots are never consulted) and speaks HTTP/1.1 or h2, whichever the server picks by
//! ALPN. Plain `http://` servers are spoken to without TLS (loopback test servers).
//!
//! **Credential choice**, exactly as upstream YurtHub's remote proxy does it: a request that
//! carries `Authorization: Bearer …` is forwarded with the caller's token on a connection that
//! presents *no* client certificate (so the apiserver authenticates the caller, not the hub);
//! any other request goes over connections presenting the hub's client certificate
//! (`system:node:<node>`). The two kinds of connection live in separate pools and are never
//! shared.
//!
//! The request URI is rewritten onto the chosen server (scheme and authority replaced, path and
//! query kept), `Host` and hop-by-hop headers are dropped, and bodies are streamed both ways as
//! [`Body`](crate::body::Body): a watch response reaches the caller event by event.
//! [`Upstream`] is the same client bound to one server as a tower `Service`.
//!
//! # Readiness
//!
//! Always ready: connections are established (or taken from the pool) inside `call`, so
//! `poll_ready` never waits and never fails. Backpressure on a single h2 connection is
//! hyper's.
//!
//! # Failure
//!
//! Errors are [`Error`]s. A failure to connect (TCP refused or timed out after
//! [`UpstreamConfig::connect_timeout`], TLS handshake failure, an untrusted server
//! certificate) happens before any byte of the request was sent and is
//! [`Error::Connect`] ([`Error::is_connect`]), which the balancer may retry on another server.
//! A failure after the connection was up is [`Error::Upstream`]: the request may have reached
//! the server, so it is not retried here. An error in the middle of a response body surfaces
//! as an error frame of that body. No request timeout is imposed (watches are long-lived);
//! [`Error::to_status`] maps each error to the Kubernetes `Status` the service edge answers.

mod connect;
mod error;
mod service;

pub use error::Error;
pub use service::{ResponseFuture, Upstream, UpstreamClient, UpstreamConfig};
