//! The YurtHub engine of yurt-rs. Today: its crash-safe object cache, [`store`], which keeps
//! what the kube-apiserver said (per client component) in one redb file so an edge node keeps
//! working while the cloud is unreachable. The proxy layers that fill and serve it come next.
//!
//! The lower layers of the hub's proxy tower (DESIGN "Data flow through the hub"):
//!
//! - [`body`]: the one streamed body type every layer speaks.
//! - [`request_info`]: resolves each request's `RequestInfo` and component, answering
//!   malformed ones with a 400 Status.
//! - [`upstream`]: the pooled rustls client that sends a request to one kube-apiserver with the
//!   hub's certificate or the caller's bearer token.
//! - [`health`]: the task that probes every kube-apiserver (the node Lease heartbeat, or
//!   `/readyz`) and publishes their health.
//! - [`balancer`]: the service that picks a healthy kube-apiserver (round-robin or priority)
//!   and retries failed reads once.
//! - [`server`]: serves a service on a TCP listener (HTTP/1.1, h2, upgrades); graceful shutdown.
//! - [`admin`]: the management endpoints (healthz, readyz, metrics, cache) and request metrics.
//! - [`hubconfig`]: follows ConfigMap `kube-system/yurt-hub-cfg` and publishes the cache agents.
//!
//! ```
//! use yurt_cache::store::{Gvr, Object, ObjectKey, PutOutcome, RedbStore, Store, StoreConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = RedbStore::open_async(StoreConfig::new(dir.path().join("cache.redb"))).await?;
//!
//! let pods = Gvr::new("", "v1", "pods");
//! let pod = Object::from_json(
//!     r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"default","resourceVersion":"42"}}"#,
//! )?;
//! // Durable when it returns: the commit's fsync is done.
//! assert_eq!(store.put("kubelet", &pods, pod).await?, PutOutcome::Created);
//!
//! let got = store.get(&ObjectKey::new("kubelet", &pods, "default", "web")).await?.unwrap();
//! assert_eq!(got.resource_version, "42");
//! store.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod balancer;
pub mod body;
pub mod cache;
pub mod health;
pub mod hubconfig;
pub mod request_info;
pub mod server;
pub mod store;
pub mod upstream;
