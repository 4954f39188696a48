//! Local serving: how the hub answers from the [`Store`](crate::store) while no kube-apiserver
//! is healthy, so the node keeps working offline (DESIGN "Offline semantics").
//!
//! [`LocalServer`] is not a layer of its own: the [`CacheLayer`](crate::cache::CacheLayer)
//! hands it the requests of cache agents when health says no server is reachable
//! ([`CacheLayer::serve_offline`](crate::cache::CacheLayer::serve_offline)), and also the
//! `get`/`list` requests that were in flight upstream when the last server turned unhealthy.
//! Each component is answered from its own cached view:
//!
//! | verb | answer |
//! | --- | --- |
//! | get | the cached object (`/status` too); 404 Status if absent |
//! | list | the component's cached objects of the resource and namespace, with the request's label and field selectors applied here; `metadata.resourceVersion` = highest item resourceVersion; kubelet's pod list with nothing cached is 404, not an empty list (an empty list would make kubelet kill every pod); another empty scope is an empty list if that scope was listed, else 503 with `Retry-After` (never listed: the cache cannot tell "none" from "unknown") |
//! | watch | stays open; delivers the events of local writes (below) that match it, BOOKMARKs when asked (every [`LocalConfig::bookmark_interval`]), ADDED events for the cached state first when `sendInitialEvents=true` or (as kube-apiserver v1.36 defaults it) when `resourceVersion` is unset or `"0"`, closed by the `initial-events-end` BOOKMARK when `sendInitialEvents=true` asked for it with bookmarks allowed; option combinations the apiserver rejects get its 422 wording; ends at `timeoutSeconds`, or at `--min-request-timeout` x random[1,2) like kube-apiserver, and as soon as a server turns healthy again (clients then re-list upstream) |
//! | create | echoed back as created (201) with a generated name for `generateName`, a uid and a creation time; Events are also appended to the journal for upload, other kinds are not (their controllers re-create them) and are not cached |
//! | update / patch | applied to the cached copy (update with the resourceVersion precondition; merge, JSON and strategic merge patch through [`yurt_core::patch`]; on `/status` only `status` changes), stored together with a journal entry in one durable transaction, returned, and sent to open local watches as MODIFIED; a write past the journal's caps ([`LocalConfig::journal`]) is a 507 Status and changes nothing |
//! | delete, deletecollection | 403 Status: the cloud must decide |
//! | (create and update bodies) | JSON, or protobuf (kubelet's default) decoded to JSON and journaled as JSON; a protobuf kind the decoder does not convert is a 415 Status naming it |
//! | non-resource documents | `/version`, discovery and OpenAPI from the store; anything else is passed on (and answered 503) |
//! | (every answer) | JSON when the client takes JSON (as the cache layer answers online); otherwise in the encoding the apiserver would pick from `Accept`: protobuf for one object of a kind [`yurt_core::protobuf`] encodes, else 406 (a YAML-only `Accept` too, which the apiserver would answer); a `resourceVersion` that is not a number is refused as the apiserver refuses it (list 400, watch 422, get 500), and `<name>/status` of a resource without a status subresource is a 404 |
//!
//! Requests of components that are not cache agents, and requests the table does not cover
//! (exec, logs, proxy, other subresources), are not served here: they go on to the balancer,
//! which answers 503 "no healthy upstream". Kubelet's Lease is answered by
//! [`KubeletLeaseLayer`](crate::lease::KubeletLeaseLayer) before this point.
//!
//! # Streams
//!
//! An offline list is streamed: a blocking task scans one MVCC snapshot of the store and sends
//! the JSON in chunks of about [`CHUNK_BYTES`], so a list of any size costs one chunk of
//! memory. The list's `metadata` (with its resourceVersion, known only at the end) follows
//! `items`, which JSON readers accept in any order. The scan stops when the client goes away.
//!
//! # Stale endpoints (#2809, #2810)
//!
//! When pods of this node get new addresses while offline (kubelet restarts them after a
//! reboot and patches their status here), the EndpointSlices (`discovery.k8s.io/v1`) and core
//! Endpoints served locally, to any component, are rewritten from kubelet's cached pods; see
//! [`endpoints`] for exactly what is and is not covered.
//!
//! # The journal
//!
//! Offline writes are recorded as [`JournalEntry`]s in the store's journal, in order, with
//! everything needed to replay them upstream; [`crate::resync`] replays them on reconnect.
//! The entry never holds the caller's credentials: replay uses the hub's own identity.
//!
//! # Failure
//!
//! Every answer is an HTTP response: store failures are 500 Status bodies, malformed
//! requests 400/415/422 as kube-apiserver would answer them. A list whose store scan fails after
//! its first chunk was sent ends with a body error (the client sees a truncated body and
//! retries). Every store call is bounded by the store's timeout.

pub mod endpoints;
mod journal;
mod metrics;
mod read;
mod watch;

pub(crate) use watch::WatchPlan;
mod write;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::{broadcast, watch as tokio_watch};
use yurt_core::{Component, RequestInfo, Status, Verb};

pub use journal::{JournalEntry, JournalVerb, journal_full};
pub use metrics::LocalMetrics;

use crate::body::Body;
use crate::health::HealthSnapshot;
use crate::store::{Gvr, JournalLimits, ListScope, Object, RedbStore};

/// The size of the chunks an offline list is sent in.
pub const CHUNK_BYTES: usize = 64 << 10;

/// Settings of a [`LocalServer`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// This node's name (kubelet's pods are the ones with `spec.nodeName` = this).
    pub node_name: String,
    /// kube-apiserver's `--min-request-timeout` (upstream YurtHub's flag, default 1800 s): an
    /// offline watch without `timeoutSeconds` ends after this x random[1,2).
    pub min_request_timeout: Duration,
    /// How often an offline watch that allows bookmarks gets one (default 60 s, like
    /// kube-apiserver's watch cache).
    pub bookmark_interval: Duration,
    /// The largest request body accepted for an offline write (default 3 MiB, kube-apiserver's
    /// limit).
    pub max_body_bytes: usize,
    /// The offline journal's caps (default 64 MiB, 10,000 entries); a write past them is
    /// answered 507 (see [`journal_full`]).
    pub journal: JournalLimits,
}

impl LocalConfig {
    /// Defaults for `node_name`: 1800 s, 60 s bookmarks, 3 MiB bodies.
    pub fn new(node_name: &str) -> Self {
        LocalConfig {
            node_name: node_name.to_owned(),
            min_request_timeout: Duration::from_secs(1800),
            bookmark_interval: Duration::from_secs(60),
            max_body_bytes: 3 << 20,
            journal: JournalLimits::default(),
        }
    }
}

/// A change made by an offline write, fanned out to the open offline watches.
#[derive(Debug, Clone)]
pub struct LocalEvent {
    /// The component whose cached copy changed.
    pub component: String,
    /// Its resource type.
    pub gvr: Gvr,
    /// The watch event type (`ADDED`, `MODIFIED`).
    pub kind: &'static str,
    /// The object after the change.
    pub object: Object,
    /// For a kubelet pod whose addresses or readiness changed: endpoints referring to it must
    /// be re-sent.
    pub pod_changed: bool,
}

/// Answers requests from the store; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: RedbStore,
    config: LocalConfig,
    health: tokio_watch::Receiver<HealthSnapshot>,
    events: broadcast::Sender<LocalEvent>,
    metrics: LocalMetrics,
    /// Serializes offline writes (each is a read-modify-write of a cached copy).
    writes: tokio::sync::Mutex<()>,
    /// Set to end every offline watch (shutdown).
    closing: tokio_watch::Sender<bool>,
}

/// Room of the local event fan-out; a watch that falls this far behind ends (its client
/// re-lists).
const EVENT_CAPACITY: usize = 1024;

impl LocalServer {
    /// Serves from `store`; offline watches end when `health` reports a healthy server.
    pub fn new(
        store: RedbStore,
        health: tokio_watch::Receiver<HealthSnapshot>,
        config: LocalConfig,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        LocalServer {
            inner: Arc::new(Inner {
                store,
                config,
                health,
                events,
                metrics: LocalMetrics::default(),
                writes: tokio::sync::Mutex::new(()),
                closing: tokio_watch::channel(false).0,
            }),
        }
    }

    /// The counters (register them with [`LocalMetrics::register`]).
    pub fn metrics(&self) -> &LocalMetrics {
        &self.inner.metrics
    }

    /// The store served from.
    pub fn store(&self) -> &RedbStore {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Whether some upstream server is healthy now (then requests go upstream).
    pub fn upstream_healthy(&self) -> bool {
        self.inner.health.borrow().any_healthy()
    }

    /// A receiver of the health channel this server follows.
    pub fn health(&self) -> tokio_watch::Receiver<HealthSnapshot> {
        self.inner.health.clone()
    }

    /// Ends every open offline watch now (and any opened later): call before draining the
    /// listeners at shutdown, so clients reconnect instead of holding the drain open.
    pub fn close_watches(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Subscribes to the events of offline writes.
    pub fn subscribe(&self) -> broadcast::Receiver<LocalEvent> {
        self.inner.events.subscribe()
    }

    /// Whether this request is one the table of the module docs answers locally (given that
    /// the component is a cache agent).
    pub fn can_serve(method: &Method, info: &RequestInfo) -> bool {
        if !info.is_resource_request {
            return (*method == Method::GET || *method == Method::HEAD)
                && crate::cache::is_cached_document(&info.path);
        }
        let plain = info.subresource.is_empty();
        let status = info.subresource == "status";
        match info.verb {
            Verb::Get | Verb::Update | Verb::Patch => plain || status,
            Verb::List | Verb::Watch | Verb::Create | Verb::Delete | Verb::DeleteCollection => {
                plain
            }
            _ => false,
        }
    }

    /// Whether a request that was sent upstream may fall back to this server when the
    /// upstream fails before answering: reads only.
    pub fn can_fall_back(method: &Method, info: &RequestInfo) -> bool {
        Self::can_serve(method, info)
            && (!info.is_resource_request || matches!(info.verb, Verb::Get | Verb::List))
    }

    /// Answers `req` locally. The request must carry the [`RequestInfo`] and [`Component`]
    /// extensions (set by [`RequestInfoLayer`](crate::request_info::RequestInfoLayer)).
    pub async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let (Some(info), Some(component)) = (
            req.extensions().get::<RequestInfo>().cloned(),
            req.extensions().get::<Component>().cloned(),
        ) else {
            return Status::internal("request without request info").to_response();
        };
        let component = component.as_str().to_owned();
        let verb = if info.is_resource_request {
            info.verb.as_str().to_owned()
        } else {
            "get".to_owned()
        };
        self.inner.metrics.served(&verb, &info.resource, &component);
        tracing::debug!(
            verb = %verb, path = %info.path, component = %component,
            "serving from the local cache"
        );
        if !info.is_resource_request {
            return read::document(&self.inner, &info, req.headers()).await;
        }
        // `<name>/status` of a resource without a status subresource is an unknown path to
        // the apiserver (a name cannot hold a `/`, so `cm1%2Fstatus` is the same path).
        if info.subresource == "status"
            && !yurt_core::validation::has_status_subresource(&info.api_group, &info.resource)
        {
            return Status::path_not_found().to_response();
        }
        if let Some(st) = yurt_core::request::resource_version_status(
            info.verb.as_str(),
            &info.api_group,
            &info.resource,
            &info.name,
            info.options.resource_version.as_deref().unwrap_or(""),
        ) {
            return st.to_response();
        }
        // kubectl's `get` asks for a server-side Table first: build it from the cached objects.
        let table = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(yurt_core::table::wants_table)
            .then(|| yurt_core::table::IncludeObject::from_query(req.uri().query()));
        match (&info.verb, table) {
            (Verb::Get, Some(include)) => {
                let resp = read::get(&self.inner, &info, &component).await;
                read::as_table(&self.inner, resp, &info, include, false).await
            }
            (Verb::List, Some(include)) => {
                let resp = read::list(&self.inner, &info, &component).await;
                read::as_table(&self.inner, resp, &info, include, true).await
            }
            _ if crate::cache::policy::accept(req.headers())
                == crate::cache::policy::Accept::Json =>
            {
                // Online, the cache layer asks upstream for JSON whenever the client takes
                // it, so the client gets JSON: the same here.
                self.serve_plain(req, info, component).await
            }
            _ => {
                // A client that takes no JSON: the encoding the apiserver would answer in,
                // protobuf for one object of a kind `yurt_core::protobuf` encodes, else 406
                // with the apiserver's list (YAML is named there but not produced offline).
                let pb = info.subresource.is_empty()
                    && matches!(
                        info.verb,
                        Verb::Get | Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
                    )
                    && yurt_core::protobuf::kind_for_resource(
                        &info.api_group,
                        &info.api_version,
                        &info.resource,
                    )
                    .is_some();
                let accept = req
                    .headers()
                    .get_all(http::header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok());
                match yurt_core::request::negotiate(accept, false, pb) {
                    None => yurt_core::request::not_acceptable(info.verb != Verb::Watch, pb)
                        .to_response(),
                    Some(yurt_core::request::MediaType::Protobuf) => {
                        let resp = self.serve_plain(req, info, component).await;
                        read::as_protobuf(&self.inner, resp).await
                    }
                    Some(_) => self.serve_plain(req, info, component).await,
                }
            }
        }
    }

    async fn serve_plain(
        &self,
        req: Request<Body>,
        info: RequestInfo,
        component: String,
    ) -> Response<Body> {
        match info.verb {
            Verb::Get => read::get(&self.inner, &info, &component).await,
            Verb::List => read::list(&self.inner, &info, &component).await,
            Verb::Watch => watch::watch(&self.inner, &info, &component).await,
            Verb::Create => write::create(&self.inner, req, &info, &component).await,
            Verb::Update | Verb::Patch => write::modify(&self.inner, req, &info, &component).await,
            Verb::Delete | Verb::DeleteCollection => Status::forbidden(
                &info.api_group,
                &info.resource,
                &info.name,
                "the cloud is unreachable, and deletes are not served from the edge cache",
            )
            .to_response(),
            _ => Status::method_not_supported(&info.api_group, &info.resource, info.verb.as_str())
                .to_response(),
        }
    }
}

/// The resource type of a request.
fn gvr_of(info: &RequestInfo) -> Gvr {
    Gvr::new(&info.api_group, &info.api_version, &info.resource)
}

/// The list scope a list or watch request reads, or the 400 Status for bad selectors.
fn scope_of(info: &RequestInfo, component: &str) -> Result<ListScope, Box<Status>> {
    let o = &info.options;
    ListScope::parse(
        component,
        &gvr_of(info),
        &info.namespace,
        o.label_selector.as_deref().unwrap_or(""),
        o.field_selector.as_deref().unwrap_or(""),
    )
    .map_err(|e| Box::new(Status::bad_request(e.to_string())))
}

/// A JSON response.
fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A number in [0, 1) that differs between calls (for jittered deadlines and generated
/// names); not cryptographic.
pub(crate) fn random_fraction() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// 64 bits that differ between calls: std's per-instance random hash keys, a counter and the
/// clock. Not cryptographic; used for names and jitter only.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
