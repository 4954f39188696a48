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
//!   tokenrequests; not a dry run (`dryRun=All`: the answer was never persisted);
//! - or a `GET` of a non-resource document: `/version`, `/api`, `/apis`, `/api/<v>`,
//!   `/apis/<group>/<version>`, `/openapi/v2`, `/openapi/v3[/...]`, stored under its path;
//! - the client accepts JSON: no `Accept`, or `application/json`, `application/*` or `*/*`
//!   (without an `as=` conversion) among its media ranges (client-go's
//!   `application/vnd.kubernetes.protobuf, */*` does, and so does `kubectl get`, which offers
//!   plain JSON after its `as=Table` ranges). A cached request is then sent upstream with
//!   `Accept: application/json` and without `Accept-Encoding`, and the client gets that JSON
//!   (so a cached kubectl prints client-side columns, and works offline). Clients accepting
//!   only protobuf or CBOR, or only conversions (`as=Table`, `as=PartialObjectMetadata`), pass
//!   through untouched and are not cached.
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
//!   object only if the list no longer has it.
//! - **paginated list** (`limit`, then `continue`, as client-go's pager asks): a page is never
//!   stored alone. A first page whose answer has `metadata.continue` starts a chain, held in
//!   memory by the layer and keyed by the scope and that token; the page continuing the token
//!   takes the chain and adds its items, and the last page (no `continue`) replaces the scope
//!   with the items of every page at the first page's resourceVersion (the apiserver serves a
//!   whole chain from that one snapshot). A chain is bounded: at most 16 chains and 32 MiB of
//!   items are pending (the oldest chain is evicted first), and a chain whose next page does
//!   not come within 60 s is dropped. A chain that is abandoned, broken (a page not 2xx, not
//!   decoded, cut short) or evicted never replaces anything; a page continuing a token the
//!   layer does not hold (a chain begun before the hub started, or elsewhere) waits up to 3 s
//!   for the previous page's tee, then is skipped (`partial`).
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
//! items are held by the tee until its replace (each item a zero-copy slice of the chunk it
//! arrived in, when it did not straddle two). If the tee falls behind by
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
pub(crate) mod document;
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
pub(crate) use policy::is_cached_document;
pub use service::CacheService;

#[cfg(doc)]
use crate::store::Store;
