//! The multiplexer: node-level traffic reuse (upstream YurtHub's multiplexer, reference
//! §1.14). Every local client's list and watch of a shared resource (by default services and
//! `discovery.k8s.io/v1` endpointslices, see [`PoolScopeResources`]) is answered from one
//! in-memory watch cache per resource, filled by one upstream list+watch: N watchers on a node
//! cost one upstream watch, not N.
//!
//! # Role
//!
//! [`MultiplexLayer`] sits inside [`RequestInfoLayer`](crate::request_info::RequestInfoLayer)
//! (and the filter layer) and above the kubelet-lease, cache and balancer layers. A request is
//! multiplexed when it is a `list` or `watch` of a collection of a configured resource (no
//! subresource, no `continue` token), the client accepts JSON, and it is not the multiplexer's
//! own feed (User-Agent `multiplexer-proxy-<node>`). Everything else goes to the inner service
//! untouched. The set can be replaced at run time ([`MultiplexLayer::set_resources`]); the
//! feeds of resources left out stop.
//!
//! The first such request of a resource starts its *feed*: a task that lists and then watches
//! the resource **through the inner service** (so the cache layer tees it into the store, as
//! `multiplexer-proxy-<node>` is a default cache agent, and serves it from the store while the
//! cloud is offline), with bookmarks and a jittered `timeoutSeconds`. It re-opens ended
//! watches from its resourceVersion, re-lists on 410 Gone, and backs off exponentially on
//! errors. A re-list becomes the events between the old and the new state, so client watches
//! carry on across it; a list older than the cache (the disk cache answering while the cloud is
//! offline) is ignored, as the cache already holds a newer state.
//!
//! Each client gets what kube-apiserver's watch cache would give it:
//!
//! - **selection**: namespace from the path, `labelSelector`, and `fieldSelector` on
//!   `metadata.name` and `metadata.namespace` (services also `spec.clusterIP` and `spec.type`);
//!   any other field is `400 BadRequest` "field label not supported", as the apiserver answers;
//! - **list**: the selected objects at the cache's resourceVersion, as JSON (`<Kind>List`),
//!   encoded item by item into a streamed body; `limit` is ignored (the whole list, no
//!   `continue`, which the API allows); `resourceVersion=N` waits (3 s at most) for the cache to
//!   reach `N`, else `504 Timeout` "Too large resource version"; `resourceVersionMatch=Exact`
//!   with another version is `410 Gone`;
//! - **watch**: newline-delimited JSON events. Without a resourceVersion (or `0`) the current
//!   objects come first as ADDED events; from `resourceVersion=N` the held history after `N`
//!   (a bounded number of events, [`MultiplexLayer::history`]), or one ERROR event with a 410
//!   Status if `N` is older than the history. A modification that moves an object into or out
//!   of the client's selection is sent as ADDED or DELETED. BOOKMARK events are passed on to
//!   clients that set `allowWatchBookmarks`; `sendInitialEvents=true` ends the initial events
//!   with a bookmark annotated `k8s.io/initial-events-end`. The watch ends at `timeoutSeconds`
//!   (or after a random time in `[min_request_timeout, 2 * min_request_timeout)`);
//! - **not synced**: until a resource's first list completes, its requests are answered
//!   `429 TooManyRequests` with `Retry-After: 1`.
//!
//! The cache machinery is plain code tested without sockets (`state`): feeds put lists and
//! events in, clients take lists and event streams out.
//!
//! # Readiness
//!
//! [`MultiplexService`] is ready exactly when its inner service is. Feeds call their own clone
//! of the inner service and wait for it to be ready before each request.
//!
//! # Failure
//!
//! The layer adds no error: non-multiplexed requests pass through, and multiplexed ones are
//! always answered (a Status for bad selectors, unsynced caches and too-large versions). Once
//! synced, a cache keeps serving its last state while its feed retries upstream. A client that
//! falls [`fanout_buffer`](MultiplexLayer::fanout_buffer) events behind has its watch ended; it
//! resumes from the last resourceVersion it saw. Feeds are tasks owned by the layer: they stop
//! (and every multiplexed watch ends) on [`MultiplexLayer::shutdown`] (after which multiplexed
//! requests get 503) or when the layer and all services it made are dropped. Requests need a tokio runtime (the first one of a
//! resource spawns its feed).

mod feed;
mod layer;
mod metrics;
mod resources;
mod service;
mod state;

pub use layer::MultiplexLayer;
pub use metrics::{MultiplexMetrics, ResourceLabels};
pub use resources::{DEFAULT_POOL_SCOPE_RESOURCES, ParseResourcesError, PoolScopeResources};
pub use service::MultiplexService;
pub(crate) use state::event_line;
