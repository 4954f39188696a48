//! Reconnect: what the hub does each time a kube-apiserver turns healthy after none was.
//!
//! [`Resync::spawn`] starts one task that follows the health channel. On every transition from
//! "no server healthy" (including start-up) to "some server healthy" it runs a pass:
//!
//! 1. **Offline watches end** by themselves (each follows the same channel, see
//!    [`local`](crate::local)), so clients re-list and re-watch upstream.
//! 2. **The journal is replayed** through the given service (the balancer), with the hub's
//!    own identity, in bounded batches ([`ResyncConfig::replay_batch_entries`] and
//!    [`ResyncConfig::replay_batch_bytes`]), so memory does not grow with the journal:
//!    - writes to `/status` are sent as a JSON merge patch of the object's final status
//!      (preconditioned on its uid), because status belongs to kubelet and the last offline
//!      state is the truth. The journal already keeps only the last one per object (a later
//!      status write replaces the pending one as it arrives); a journal from an older build
//!      may hold several, and only the last of each batch is sent (the others: `coalesced`);
//!    - other updates and patches are sent as received; an update carries the resourceVersion
//!      it was based on, so if the cloud changed the object meanwhile the answer is 409 and
//!      the cloud's version wins (`conflict`);
//!    - creates (Events) are posted; `409 AlreadyExists` counts as applied.
//!
//!    Each attempt is logged and counted in [`ResyncMetrics`] (`replayed`): `applied`,
//!    `coalesced`, `conflict`, `gone` (404/410: the object was deleted upstream), `rejected`
//!    and `retry`. **Order is kept per object only**: an entry that is retried holds back the
//!    later entries of the same object (same group, version, resource, namespace and name;
//!    a create with a generated name is its own object) and nothing else, so one write the
//!    cloud will not take never stalls the others (offline Events still arrive).
//!
//!    An entry is **rejected** — removed from the journal, its record (the object, verb,
//!    component, attempts and the apiserver's `Status`) kept in the store's
//!    `journal_rejected` table (the newest [`ResyncConfig::replay_rejected_kept`]; served at
//!    the management server's `/v1/journal/rejected`), logged at warn level with the object
//!    and the Status, and counted in `yurt_resync_replay_rejected_total{reason}` — when:
//!    - the apiserver answers a 4xx other than 404, 409, 410 and 429 (`client_error`): a
//!      retry would get the same answer;
//!    - it answers 5xx, or nothing within [`ResyncConfig::request_timeout`],
//!      [`ResyncConfig::replay_max_attempts`] times (`retries_exhausted`); attempts are
//!      counted across passes (not across hub restarts: a restarted hub tries each entry
//!      that many times again);
//!    - the entry does not decode (`undecodable`).
//!
//!    429 is retried without counting (the apiserver asks to come back later). When no
//!    apiserver answers at all (connection refused, none healthy) the pass stops and nothing
//!    is counted. A pass that left an entry to retry runs again after
//!    [`ResyncConfig::retry_interval`] while a server stays healthy. An entry leaves the
//!    journal only once its outcome is final.
//!
//!    **A stuck replay shows**: `yurt_resync_replay_oldest_pending_seconds` is the age of the
//!    oldest entry left after the last pass (0 once drained), and when an entry has been
//!    retried for longer than [`ResyncConfig::replay_stuck_after`],
//!    `yurt_resync_replay_stuck` is 1 and the [`Resync::replay_ok`] gate closes (the hub's
//!    `/v1/readyz` then answers 503 naming the offline journal replay).
//! 3. **Non-resource documents are fetched**, so offline `kubectl version`, discovery and
//!    `kubectl apply` work even if no client asked for them while online: `/version`, legacy
//!    discovery (`/api`, `/apis`, `/api/v1` and every group version `/apis` lists), aggregated
//!    discovery of `/api` and `/apis` in the form kubectl asks for, the OpenAPI v3 root and
//!    every group document its `paths` list (skipped when its `?hash=` is the one already
//!    stored by this task); then every other stored document (each in its stored form) is
//!    fetched again. Each answer is stored as sent, with its content type (see
//!    the cache layer's document forms). At most [`ResyncConfig::max_documents`] requests a
//!    pass, one at a time, each bounded by [`ResyncConfig::request_timeout`].
//! 4. **Pod garbage collection**, in the first pass after start-up only (as upstream yurthub does):
//!    kubelet's cached pods that the cloud no longer has on this node (list with
//!    `fieldSelector=spec.nodeName=<node>`) are dropped from the cache, never all of them at
//!    once: if the cloud's answer would remove every cached pod, nothing is removed and a
//!    warning is logged (an empty answer is more likely a wrong view than an empty node).
//!
//! # Ownership and failure
//!
//! The task is owned by the [`Resync`] handle: [`Resync::shutdown`] stops it (bounded) and
//! dropping the handle aborts it. Every upstream request is bounded by
//! [`ResyncConfig::request_timeout`]; failures are logged and retried at the next pass, never
//! fatal.

mod metrics;
mod replay;

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

pub use metrics::{RejectLabels, ReplayLabels, ResyncMetrics};

use crate::body::Body;
use crate::health::HealthSnapshot;
use crate::store::{Gvr, ListScope, ObjectKey, RedbStore, Store};

/// The `Accept` kubectl sends for aggregated discovery (`/api`, `/apis`).
pub(crate) const AGGREGATED_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// The documents `/apis` (legacy discovery: every group version) and the OpenAPI v3 root
/// (`paths.*.serverRelativeURL`) link to, as (path and query, Accept).
fn linked_documents(key: &str, body: &[u8]) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let json = || "application/json".to_owned();
    if key == "/apis" {
        doc["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["versions"].as_array().into_iter().flatten())
            .filter_map(|v| v["groupVersion"].as_str())
            .map(|gv| (format!("/apis/{gv}"), json()))
            .collect()
    } else {
        doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, p)| p["serverRelativeURL"].as_str())
            .filter(|u| u.starts_with("/openapi/v3/"))
            .map(|u| (u.to_owned(), json()))
            .collect()
    }
}

/// The User-Agent of the hub's own resync requests.
pub(crate) const USER_AGENT: &str = concat!("yurthub/", env!("CARGO_PKG_VERSION"));

/// Settings of a [`Resync`].
#[derive(Debug, Clone)]
pub struct ResyncConfig {
    /// This node's name (pod garbage collection lists its pods).
    pub node_name: String,
    /// Bound of each upstream request (default 10 s).
    pub request_timeout: Duration,
    /// Pause before a pass that stopped at a retryable failure runs again (default 5 s).
    pub retry_interval: Duration,
    /// Drop kubelet's cached pods the cloud no longer has, at the first pass (default on).
    pub gc_pods_on_start: bool,
    /// Largest document or pod list read (default 64 MiB).
    pub max_body_bytes: usize,
    /// Most non-resource documents fetched in one pass (default 512).
    pub max_documents: usize,
    /// Attempts answered 5xx (or not at all in time) after which a journal entry is rejected
    /// and skipped (default 10: with the 5 s retry interval, about a minute of failures).
    pub replay_max_attempts: u32,
    /// An entry retried for this long marks the replay stuck: `/v1/readyz` fails and
    /// `yurt_resync_replay_stuck` is 1 until it is placed or rejected (default 60 s).
    pub replay_stuck_after: Duration,
    /// Most journal entries read into memory at once (default 64).
    pub replay_batch_entries: usize,
    /// Most journal bytes read into memory at once, past the first entry (default 8 MiB).
    pub replay_batch_bytes: usize,
    /// Records of rejected entries kept in the store for `/v1/journal/rejected` (default 100).
    pub replay_rejected_kept: usize,
}

impl ResyncConfig {
    /// Defaults for `node_name`.
    pub fn new(node_name: &str) -> Self {
        ResyncConfig {
            node_name: node_name.to_owned(),
            request_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            gc_pods_on_start: true,
            max_body_bytes: 64 << 20,
            max_documents: 512,
            replay_max_attempts: 10,
            replay_stuck_after: Duration::from_secs(60),
            replay_batch_entries: 64,
            replay_batch_bytes: 8 << 20,
            replay_rejected_kept: 100,
        }
    }
}

/// The reconnect task; see the [module docs](self).
#[derive(Debug)]
pub struct Resync {
    task: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    metrics: ResyncMetrics,
    replay_ok: watch::Receiver<bool>,
}

impl Resync {
    /// Starts following `health`; upstream requests go through `service` (the balancer, or a
    /// stack below the cache layer).
    pub fn spawn<S>(
        service: S,
        store: RedbStore,
        health: watch::Receiver<HealthSnapshot>,
        config: ResyncConfig,
    ) -> Resync
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
    {
        let metrics = ResyncMetrics::default();
        let (stop, stopped) = watch::channel(false);
        let (replay_ok_tx, replay_ok) = watch::channel(true);
        let worker = Worker {
            service,
            store,
            config,
            metrics: metrics.clone(),
            openapi_fetched: Default::default(),
            attempts: Default::default(),
            replay_ok: replay_ok_tx,
        };
        let task = tokio::spawn(worker.run(health, stopped));
        Resync {
            task: Some(task),
            stop,
            metrics,
            replay_ok,
        }
    }

    /// `false` while the journal replay is stuck (an entry retried for longer than
    /// [`ResyncConfig::replay_stuck_after`]); a readiness gate for
    /// [`AdminService::ready_gate`](crate::admin::AdminService::ready_gate).
    pub fn replay_ok(&self) -> watch::Receiver<bool> {
        self.replay_ok.clone()
    }

    /// The counters (register them with [`ResyncMetrics::register`]).
    pub fn metrics(&self) -> &ResyncMetrics {
        &self.metrics
    }

    /// Stops the task and waits for it (at most 5 s; a request in flight is abandoned).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Resync {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Worker<S> {
    service: S,
    store: RedbStore,
    config: ResyncConfig,
    metrics: ResyncMetrics,
    /// The OpenAPI v3 group documents stored so far, with the `?hash=` they were fetched at:
    /// one whose hash is unchanged is not fetched again (they are large; edge links are thin).
    openapi_fetched: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Entries being retried, across passes: attempts and since when.
    attempts: std::sync::Mutex<std::collections::HashMap<u64, replay::Attempts>>,
    /// Cleared while the replay is stuck.
    replay_ok: watch::Sender<bool>,
}

impl<S> Worker<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    async fn run(
        self,
        mut health: watch::Receiver<HealthSnapshot>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut first = true;
        loop {
            // Wait for a healthy server.
            tokio::select! {
                r = health.wait_for(|h| h.any_healthy()) => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            self.metrics.passes.inc();
            let complete = self.pass(first).await;
            first = false;
            if !complete {
                // Retry while healthy; a flip to unhealthy waits for the next transition.
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            // Wait until no server is healthy, then for the next transition.
            tokio::select! {
                r = health.wait_for(|h| !h.any_healthy()) => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass; `false` if the journal replay stopped at a retryable failure.
    async fn pass(&self, first: bool) -> bool {
        let complete = replay::replay(self).await;
        self.refresh_documents().await;
        if first && self.config.gc_pods_on_start {
            self.gc_pods().await;
        }
        complete
    }

    /// Sends one request upstream, bounded; `None` if there was no answer in time.
    async fn send(&self, req: Request<Body>) -> Option<Response<Body>> {
        let svc = self.service.clone();
        match tokio::time::timeout(self.config.request_timeout, svc.oneshot(req)).await {
            Ok(Ok(resp)) => Some(resp),
            Ok(Err(never)) => match never {},
            Err(_) => None,
        }
    }

    /// Reads a response body, bounded in size and time.
    async fn body(&self, resp: Response<Body>) -> Option<Bytes> {
        let limited = http_body_util::Limited::new(resp.into_body(), self.config.max_body_bytes);
        match tokio::time::timeout(self.config.request_timeout, limited.collect()).await {
            Ok(Ok(c)) => Some(c.to_bytes()),
            _ => None,
        }
    }

    fn get(path_and_query: &str) -> Request<Body> {
        Self::get_as(path_and_query, "application/json")
    }

    fn get_as(path_and_query: &str, accept: &str) -> Request<Body> {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = path_and_query.parse().unwrap_or_default();
        let h = req.headers_mut();
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        );
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_str(accept)
                .unwrap_or_else(|_| http::HeaderValue::from_static("application/json")),
        );
        req
    }

    async fn refresh_documents(&self) {
        use crate::cache::document;
        let stored = match self.store.read_snapshot(|s| s.nonresource_paths()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "resync: could not read the cached documents");
                Vec::new()
            }
        };
        // (path and query to GET, Accept); the prefetched set first, then what is stored.
        let mut queue: VecDeque<(String, String)> = VecDeque::new();
        for path in ["/version", "/api", "/apis", "/api/v1", "/openapi/v3"] {
            queue.push_back((path.to_owned(), "application/json".to_owned()));
        }
        for path in ["/api", "/apis"] {
            queue.push_back((path.to_owned(), AGGREGATED_DISCOVERY.to_owned()));
        }
        for key in &stored {
            let (path, form) = document::split_key(key);
            if path.starts_with("/openapi/v3/") {
                // Group documents are refreshed through the root's links (with their hash).
                continue;
            }
            queue.push_back((
                path.to_owned(),
                form.unwrap_or("application/json").to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        let mut budget = self.config.max_documents;
        while let Some((target, accept)) = queue.pop_front() {
            let path = target.split('?').next().unwrap_or_default().to_owned();
            let key = document::key(&path, document::form_of(&accept).as_deref());
            if !seen.insert(key.clone()) {
                continue;
            }
            if budget == 0 {
                tracing::debug!(%key, "resync: document budget spent; not fetched");
                continue;
            }
            let hash = target
                .split_once('?')
                .filter(|_| path.starts_with("/openapi/v3/"))
                .map(|(_, q)| q.to_owned());
            if let Some(hash) = &hash
                && self
                    .openapi_fetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    == Some(hash)
            {
                continue;
            }
            budget -= 1;
            let Some(resp) = self.send(Self::get_as(&target, &accept)).await else {
                continue;
            };
            if !resp.status().is_success()
                || resp.headers().contains_key(http::header::CONTENT_ENCODING)
            {
                tracing::debug!(%target, status = %resp.status(), "resync: document not fetched");
                continue;
            }
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(document::JSON)
                .to_owned();
            let Some(body) = self.body(resp).await else {
                continue;
            };
            if key == "/apis" || key == "/openapi/v3" {
                queue.extend(linked_documents(&key, &body));
            }
            match self
                .store
                .put_nonresource(&key, document::encode(&content_type, body))
                .await
            {
                Ok(()) => {
                    self.metrics.documents.inc();
                    if let Some(hash) = hash {
                        self.openapi_fetched
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key, hash);
                    }
                }
                Err(e) => tracing::warn!(%key, error = %e, "resync: could not store a document"),
            }
        }
    }

    async fn gc_pods(&self) {
        #[derive(serde::Deserialize)]
        struct List {
            items: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            metadata: Meta,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default)]
            namespace: String,
            name: String,
        }
        let node = &self.config.node_name;
        let query = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}");
        let Some(resp) = self.send(Self::get(&query)).await else {
            return;
        };
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "resync: pod garbage collection skipped: the cloud did not list this node's pods");
            return;
        }
        let Some(body) = self.body(resp).await else {
            return;
        };
        let Ok(list) = serde_json::from_slice::<List>(&body) else {
            tracing::warn!("resync: pod garbage collection skipped: the pod list did not decode");
            return;
        };
        let upstream: std::collections::HashSet<(String, String)> = list
            .items
            .into_iter()
            .map(|i| (i.metadata.namespace, i.metadata.name))
            .collect();
        let pods = Gvr::new("", "v1", "pods");
        let scope_pods = pods.clone();
        let cached = self
            .store
            .read_snapshot(move |snap| {
                let scope = ListScope::parse("kubelet", &scope_pods, "", "", "")?;
                let mut keys = Vec::new();
                snap.scan(&scope, |_, json| {
                    if let Some(k) = crate::local::endpoints::pod_key(json) {
                        keys.push(k);
                    }
                    true
                })?;
                Ok(keys)
            })
            .await
            .unwrap_or_default();
        let doomed: Vec<&(String, String)> =
            cached.iter().filter(|k| !upstream.contains(*k)).collect();
        if doomed.is_empty() {
            return;
        }
        if doomed.len() == cached.len() {
            tracing::warn!(
                cached = cached.len(),
                "resync: the cloud lists none of the cached kubelet pods of this node; keeping them all rather than dropping every one"
            );
            return;
        }
        for (ns, name) in doomed {
            let key = ObjectKey::new("kubelet", &pods, ns, name);
            match self.store.delete(&key, None).await {
                Ok(_) => {
                    self.metrics.pods_collected.inc();
                    tracing::info!(namespace = %ns, pod = %name, "resync: dropped a cached pod the cloud no longer has");
                }
                Err(e) => tracing::warn!(error = %e, "resync: could not drop a cached pod"),
            }
        }
    }
}
