//! Kubelet's own node-Lease requests, answered by the hub as OpenYurt's YurtHub does, and
//! turned into a kubelet liveness signal for the [`health`](crate::health) checker.
//!
//! In edge mode kubelet's lease requests are **never forwarded**: the hub renews the real Lease
//! `kube-node-lease/<node>` itself (the [`Probe::Lease`](crate::health::Probe::Lease) heartbeat
//! of [`HealthChecker`](crate::health::HealthChecker)), so kubelet keeps "renewing" against the
//! hub whether the cloud is reachable or not and never sees an error.
//!
//! [`KubeletLeaseLayer`] sits between the request-info layer and the cache layer. A request
//! whose component is `kubelet`, on `leases` of group `coordination.k8s.io` in namespace
//! `kube-node-lease`, named the node (for a create: whose body names the node), is answered
//! from an in-memory copy of the last lease kubelet wrote:
//!
//! - `GET` answers that copy (200). While there is none, the first such `GET` is forwarded
//!   **once** to seed it (a 200 answer becomes the copy); if that answer is anything else (the
//!   apiserver is unavailable, or the Lease does not exist) — and for every later `GET`
//!   while still without a copy — the answer is a 404 `NotFound` `Status`, exactly as the
//!   apiserver answers for a missing Lease, so kubelet goes on to create it.
//! - `PUT` (update) keeps the body as the new copy with `metadata.resourceVersion` set to the
//!   next value of a local, monotonic counter (a decimal string, always above any version
//!   seen from the apiserver) and answers 200 with it; `POST` (create) does the same with 201.
//!   There is no optimistic-concurrency check: kubelet is the copy's only writer.
//! - Every handled request (any of the three) calls [`KubeletLiveness::renewed`].
//!
//! Bodies may be JSON or protobuf (kubelet's default, `application/vnd.kubernetes.protobuf`): a
//! protobuf Lease is decoded to the JSON the apiserver would store and kept as such; a body that
//! does not decode is the apiserver's 400 `Status`. Answers are JSON whenever the client's
//! `Accept` allows it (kubelet's `application/vnd.kubernetes.protobuf, application/json` does)
//! and protobuf only for a protobuf-only `Accept`. A create for another lease is forwarded with
//! the body exactly as received (the apiserver reads protobuf itself).
//!
//! Any other request (another component, another lease, a watch, a list, a patch, a delete)
//! passes through unchanged.
//!
//! # Kubelet liveness
//!
//! [`KubeletLiveness`] remembers when kubelet last renewed; given to the health checker
//! ([`HealthConfig::kubelet_liveness`](crate::health::HealthConfig::kubelet_liveness)) it stops
//! the node Lease renewal once kubelet has not renewed within the grace period
//! (`--kubelet-health-grace-period`), so a dead kubelet still makes the node NotReady; the
//! checker then probes `/readyz` instead, so the servers' health (and the proxying) never
//! depends on kubelet. **Start-up rule:**
//! creating a `KubeletLiveness` counts as a renewal — kubelet may start after the hub, so it is
//! alive for the first grace period even without a renewal, and dead afterwards until it renews.
//!
//! # Readiness
//!
//! [`KubeletLeaseService`] is ready when its inner service is (`poll_ready` is forwarded). A
//! request answered locally still consumes that readiness, which tower allows; the service
//! keeps a ready clone of the inner service for the request it forwards (the usual tower
//! clone-and-swap).
//!
//! # Failure
//!
//! A kubelet lease `PUT`/`POST` whose body cannot be read or is not a JSON object is answered
//! with a 400 `BadRequest` `Status` and the copy is unchanged (nor is it a renewal). The layer
//! adds no error of its own: the inner service's errors pass through unchanged, including those
//! of the one seeding `GET` (which then leaves the copy unseeded).
//!
//! ```
//! use std::time::Duration;
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use yurt_cache::body::Body;
//! use yurt_cache::lease::{KubeletLeaseLayer, KubeletLiveness};
//! use yurt_cache::request_info::RequestInfoLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let liveness = KubeletLiveness::new(Duration::from_secs(40));
//! let svc = ServiceBuilder::new()
//!     .layer(RequestInfoLayer::new())
//!     .layer(KubeletLeaseLayer::new("edge-1", liveness.clone()))
//!     .service(service_fn(|_req: Request<Body>| async move {
//!         panic!("kubelet's lease update is never forwarded");
//!         #[allow(unreachable_code)]
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     }));
//! let req = Request::put("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/edge-1")
//!     .header("user-agent", "kubelet/v1.36.0")
//!     .body(Body::from(r#"{"metadata":{"name":"edge-1","resourceVersion":"7"}}"#))
//!     .unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! assert!(liveness.is_alive());
//! # }
//! ```

mod layer;
mod liveness;
mod service;

pub use layer::KubeletLeaseLayer;
pub use liveness::KubeletLiveness;
pub use service::KubeletLeaseService;
