//! Picks a healthy kube-apiserver for each request and sends it there through the
//! [`UpstreamClient`](crate::upstream::UpstreamClient).
//!
//! [`Balancer`] reads server health from a [`HealthChecker`](crate::health::HealthChecker)'s
//! watch channel (it never probes by itself) and chooses among the healthy servers by
//! [`Strategy`] (upstream's `--lb-mode`):
//!
//! - [`Strategy::RoundRobin`] (`rr`, the default): the next healthy server after the one used
//!   last, in flag order (a shared index; concurrent callers may occasionally pick the same
//!   server, which only skews the rotation);
//! - [`Strategy::Priority`] (`priority`): the first healthy server in flag order.
//!
//! **Retry.** An idempotent read (verb `get` or `list`, never `watch`, never a write) with an
//! empty body whose connection fails before any byte of it was sent
//! ([`Error::Connect`](crate::upstream::Error::Connect)) is retried once, on the next healthy
//! server in the strategy's order. Anything else is answered with the failure: a write might
//! have reached the first server, and a watch's client re-watches by itself.
//!
//! # Readiness
//!
//! Always ready: the balancer does not backpressure. It accepts a request even when no server
//! is healthy and answers it (see below), so layers above may route around it first.
//!
//! # Failure
//!
//! The service never errors (`Error = Infallible`); failures are answered as Kubernetes
//! `Status` responses: with no healthy server, 503 ServiceUnavailable "no healthy upstream"
//! (upstream answers 502 "no healthy backends available."; the cache layer that will sit above
//! this one serves such requests from the Store instead, as DESIGN's data flow says); when the
//! chosen server (and the retry, if any) fails, 503 naming the error. Each such response
//! carries the [`Error`](crate::upstream::Error) as an `Arc<Error>` response extension, so the
//! cache layer can tell an upstream failure from an apiserver's own 503.

mod future;
mod service;
mod strategy;

pub use future::ResponseFuture;
pub use service::Balancer;
pub use strategy::{ParseStrategyError, Strategy};
