//! Resolves what a request is before any other layer looks at it.
//!
//! [`RequestInfoLayer`] parses the path and query into a [`RequestInfo`](yurt_core::RequestInfo)
//! (verb, group/version/resource, namespace, name, subresource, list options) and the client's
//! [`Component`](yurt_core::Component) (from `User-Agent`), and stores both in the request's
//! extensions, where the filter, cache and balancer layers read them. This is step 1 and 5 of
//! upstream YurtHub's handler chain (`WithRequestInfo`, `WithRequestClientComponent`).
//!
//! # Readiness
//!
//! [`RequestInfoService`] is ready exactly when its inner service is: `poll_ready` is forwarded
//! unchanged. A malformed request still consumes that readiness (the inner service is simply
//! not called), which tower allows.
//!
//! # Failure
//!
//! A request that does not parse (a bad query parameter such as `watch=maybe` or
//! `limit=-1x`, a malformed path) is answered at once with a Kubernetes 400 `BadRequest`
//! `Status` naming the problem, and the inner service is never called. The layer adds no
//! error of its own: the inner service's errors pass through unchanged.
//!
//! ```
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use yurt_cache::body::Body;
//! use yurt_cache::request_info::RequestInfoLayer;
//! use yurt_core::{Component, RequestInfo, Verb};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RequestInfoLayer::new())
//!     .service(service_fn(|req: Request<Body>| async move {
//!         let info = req.extensions().get::<RequestInfo>().unwrap();
//!         let component = req.extensions().get::<Component>().unwrap();
//!         assert_eq!(info.verb, Verb::List);
//!         assert_eq!(component.as_str(), "kubelet");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     }));
//! let req = Request::get("/api/v1/namespaces/default/pods")
//!     .header("user-agent", "kubelet/v1.36.0")
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RequestInfoLayer;
pub use service::RequestInfoService;
