//! The cache layer: tees the apiserver's answers to cacheable requests into the [`Store`]
//! while they stream to the client (upstream YurtHub's `CacheManager`, reference §1.5, with the
//! per-scope list model of the store).
//!
//! [`CacheLayer`] sits between [`RequestInfoLayer`](crate::request_info::RequestInfoLayer)
//! (whose [`RequestInfo`](yurt_core::RequestInfo) and [`Component`](yurt_core::Component) it
//! reads) and the [`Balancer`](crate::balancer::Balancer). For each request it decides
//! (`CanCacheFor`) whether the response is cached and as what:
//!
//! - the component is a cache agent ([`CacheAgents`], read from its watch channel per request),
//!   and the request carries no `Upgrade`;
//! - a resource request with verb get, create, update, patch (one object), list (a scope) or
//!   watch (events), never delete, deletecollection, proxy or connect (exec, attach,
//!   portforward); subresource empty or `status`; resource not certificatesigningrequests, a
//!   review kind (subject/self/local access reviews, selfsubjectreviews, tokenreviews) or
//!   tokenrequests; not a page of a paginated list (`continue` set); not a dry run
//!   (`dryRun=All`: the answer was never persisted);
//! - or a `GET` of a non-resource document: `/version`, `/api`, `/apis`, `/api/<v>`,
//!   `/apis/<group>/<version>`, `/openapi/v2`, `/openapi/v3[/...]`, stored under its path;
//! - the client accepts JSON: no `Accept`, or `application/json`, `application/*` or `*/*`
//!   among its media ranges (client-go's `application/vnd.kubernetes.protobuf, */*` does). A
//!   cached request is then sent upstream with `Accept: application/json` and without
//!   `Accept-Encoding`, and the client gets that JSON. Clients accepting only protobuf or CBOR,
//!   and conversions (`as=Table`, `as=PartialObjectMetadata`), pass through untouched and are
//!   not cached.
//!
//! The response is teed only if it is 2xx, `application/json` (no `as=`) and not
//! content-encoded. Everything else passes through unchanged, including the balancer's 503
//! "no healthy upstream": serving from the store while offline is a separate layer (hub part
//! 2), not this one.
//!
//! # What is stored
//!
//! - **get/create/update/patch**: the object, with the store's resourceVersion compare
//!   ([`Store::put`]). `Status` bodies and pods with an empty `spec.nodeName` (upstream's rule)
//!   are not stored.
//! - **list**: every scope (component, resource, namespace, label selector, field selector) is
//!   its own [`ListScope`](crate::store::ListScope), so two lists of one resource with
//!   different selectors are both cached (upstream's "first selector wins", #1400, is gone). At
//!   the end of a complete body the scope is replaced in one transaction
//!   ([`Store::replace_list`]) with the items and the list's resourceVersion. A list with a
//!   `metadata.name` field selector is simply a scope with that selector, which covers
//!   upstream's "store the single object" rule: its replace writes the one item and removes the
//!   object only if the list no longer has it. A list whose `metadata.continue` is set (a page)
//!   is not stored.
//! - **watch**: each event (`{"type":..,"object":..}`, newline-delimited or not) is decoded as
//!   it arrives and submitted with [`Store::submit_watch_events`] (group commit); the tee awaits
//!   the tickets concurrently while it keeps reading. ADDED/MODIFIED write with the compare,
//!   DELETED deletes; BOOKMARK, ERROR and unbound pods are not stored.
//! - **documents**: the body, with [`Store::put_nonresource`].
//!
//! # Streams stay streams
//!
//! The client gets each chunk as it arrives: the response body is wrapped so that each data
//! chunk is also offered (`try_send`, never awaited) to a bounded channel read by one tee task
//! per response. The tee decodes incrementally ([`json_stream`]); only a single object or
//! document (at most [`CacheLayer::max_object_bytes`]) is buffered whole, and a list's decoded
//! items are held by the tee until its replace. If the tee falls behind by
//! [`CacheLayer::tee_capacity`] chunks, meets a body it cannot decode, or the store fails, it
//! gives up on that response: it logs, counts the reason in [`CacheMetrics::tee_failures`],
//! and stops receiving; the client's stream is neither slowed nor broken, and a list's scope
//! keeps its previous contents.
//!
//! # Readiness
//!
//! [`CacheService`] is ready exactly when its inner service is.
//!
//! # Failure
//!
//! The layer adds no error: the inner service's errors pass through, and no store or decode
//! failure ever changes a response. A tee task is owned by its response body: it ends when the
//! body has ended or been dropped (the client went away) and the store writes it started have
//! resolved, each bounded by the store's timeout; [`CacheMetrics::active_tees`] counts them.
//! A task needs a tokio runtime (the service spawns it when the response head arrives).

mod body;
pub mod json_stream;
mod layer;
mod metrics;
pub(crate) mod policy;
mod service;
mod tee;

pub mod agents;
mod future;

pub use agents::CacheAgents;
pub use future::ResponseFuture;
pub use layer::CacheLayer;
pub use metrics::{CacheMetrics, CachedLabels, TeeFailureLabels};
pub use service::CacheService;

#[cfg(doc)]
use crate::store::Store;
