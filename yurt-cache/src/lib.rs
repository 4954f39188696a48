//! The YurtHub engine of yurt-rs: a tower stack that proxies kube-apiserver traffic for an edge
//! node and tees what the apiserver said (per client component) into a crash-safe redb
//! [`store`], so the node keeps working while the cloud is unreachable: reads, watches and
//! writes are then served from the store ([`local`]), and [`resync`] converges on reconnect.
//!
//! The layers, outermost first (DESIGN "Data flow through the hub"):
//!
//! - [`request_info`]: resolves each request's `RequestInfo` and component, answering
//!   malformed ones with a 400 Status.
//! - [`admin::MetricsLayer`]: in-flight requests and proxied bytes by verb, resource, component.
//! - [`filter`]: per-client response filters (pool topology for EndpointSlices, the
//!   apiserver reached through the hub, ...), streaming, re-filtering open watches when pools
//!   or Services change; outside the cache, so the store keeps what the apiserver sent.
//! - [`multiplex`]: answers every client's list and watch of shared resources (services,
//!   endpointslices) from one in-memory feed per resource, fetched through the layers below.
//! - [`lease`] (edge mode): answers kubelet's own node-Lease requests locally and tracks
//!   kubelet's liveness for [`health`].
//! - [`autonomy`] (edge mode): maintains the node's `Autonomy` condition on kubelet's Node reads.
//! - [`cache`]: serves cache agents from [`local`] while no apiserver is healthy; otherwise
//!   decides what is cached ([`cache::CacheAgents`], the cache policy) and tees
//!   responses into the store without ever slowing or buffering the client's stream.
//! - [`balancer`]: picks a healthy kube-apiserver (round-robin or priority) and retries a
//!   failed read once.
//! - [`upstream`]: the pooled rustls client that sends a request to one kube-apiserver with the
//!   hub's certificate or the caller's bearer token.
//!
//! Around them: [`hub`] ([`hub::EdgeHub`], everything composed and running), [`resync`] (what
//! happens on reconnect), [`health`] (probes every kube-apiserver and publishes health on a watch
//! channel), [`server`] (serves a stack on a TCP listener: HTTP/1.1, h2, upgrades, graceful
//! shutdown; [`server::ProxyStack`] is the composition the `yurthub` example uses), [`admin`]
//! (healthz, readyz, metrics, cache summary), [`hubconfig`] (follows ConfigMap
//! `kube-system/yurt-hub-cfg`), and [`body`] (the one streamed body type every layer speaks).
//!
//! A vendor with its own edge agent composes the same layers in its own `ServiceBuilder`:
//!
//! ```no_run
//! use http::Uri;
//! use tower::ServiceBuilder;
//! use yurt_cache::balancer::{Balancer, Strategy};
//! use yurt_cache::cache::{CacheAgents, CacheLayer};
//! use yurt_cache::health::{HealthChecker, HealthConfig};
//! use yurt_cache::request_info::RequestInfoLayer;
//! use yurt_cache::server::{Server, ServerConfig};
//! use yurt_cache::store::{RedbStore, StoreConfig};
//! use yurt_cache::upstream::{UpstreamClient, UpstreamConfig};
//!
//! # async fn run(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let servers: Vec<Uri> = vec!["https://10.0.0.1:6443".parse()?];
//! let client = UpstreamClient::new(
//!     UpstreamConfig::from_ca_pem(ca_pem)?.client_cert_pem(cert_pem, key_pem)?,
//! )?;
//! let health = HealthChecker::spawn(client.clone(), servers, HealthConfig::lease("edge-1"));
//! let store = RedbStore::open_async(StoreConfig::new("/var/lib/my-agent/cache.redb")).await?;
//! let (_agents_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults("edge-1"));
//!
//! let stack = ServiceBuilder::new()
//!     .layer(RequestInfoLayer::new())
//!     .layer(CacheLayer::new(store.clone(), agents))
//!     .service(Balancer::new(client, health.subscribe(), Strategy::RoundRobin));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:10261").await?;
//! let server = Server::spawn(listener, stack, ServerConfig::default())?;
//! // ... until shutdown:
//! server.shutdown().await;
//! health.shutdown().await;
//! store.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The store on its own:
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
pub mod autonomy;
pub mod balancer;
pub mod body;
pub mod cache;
pub mod filter;
pub mod health;
pub mod hub;
pub mod hubconfig;
pub mod lease;
pub mod local;
pub mod multiplex;
pub mod request_info;
pub mod resync;
pub mod server;
pub mod store;
pub mod upstream;
