//! [`ViewWatcher`]: follows Services and NodePools (or NodeBuckets) through the hub's own stack
//! and publishes the [`ClusterView`] the filters read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use super::ClusterView;
use crate::body::{Body, BoxError};
use crate::cache::json_stream::{ListStream, ObjectStream};

/// Where pool membership comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSource {
    /// `NodePool.status.nodes` (upstream `--enable-node-pool`, the default).
    NodePool,
    /// NodeBuckets labelled with the pool name (upstream `--enable-pool-service-topology`).
    NodeBucket,
    /// No pools: pool topology falls back to the node itself.
    None,
}

/// Settings of a [`ViewWatcher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ViewWatcherConfig {
    /// Where pool membership comes from.
    pub pools: PoolSource,
    /// `User-Agent` of the requests (default `yurthub/<version>`: cached, never filtered).
    pub user_agent: String,
    /// `timeoutSeconds` of each watch (default 5 min); the watch is then resumed.
    pub watch_timeout: Duration,
    /// Bound of a list and of the wait for a watch's response head (default 30 s).
    pub request_timeout: Duration,
    /// First retry delay after an error (default 500 ms).
    pub backoff_min: Duration,
    /// Largest retry delay (default 30 s); also how often a missing resource (404) is retried.
    pub backoff_max: Duration,
}

impl Default for ViewWatcherConfig {
    fn default() -> Self {
        ViewWatcherConfig {
            pools: PoolSource::NodePool,
            user_agent: format!("yurthub/{}", env!("CARGO_PKG_VERSION")),
            watch_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl ViewWatcherConfig {
    /// Sets [`ViewWatcherConfig::pools`].
    pub fn pools(mut self, pools: PoolSource) -> Self {
        self.pools = pools;
        self
    }

    /// Sets [`ViewWatcherConfig::backoff_min`] and [`ViewWatcherConfig::backoff_max`].
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }
}

/// A followed resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Services,
    NodePools,
    NodeBuckets,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Services => "/api/v1/services",
            Kind::NodePools => "/apis/apps.openyurt.io/v1beta2/nodepools",
            Kind::NodeBuckets => "/apis/apps.openyurt.io/v1alpha1/nodebuckets",
        }
    }

    /// Applies one object; `deleted` forgets it. `true` if the view changed.
    fn apply(self, view: &mut ClusterView, obj: &Value, deleted: bool) -> bool {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        match (self, deleted) {
            (Kind::Services, false) => view.set_service(obj),
            (Kind::Services, true) => view.remove_service(obj),
            (Kind::NodePools, false) => view.set_nodepool(obj),
            (Kind::NodeBuckets, false) => view.set_nodebucket(obj),
            (Kind::NodePools | Kind::NodeBuckets, true) => view.remove_group(name),
        }
    }

    /// Replaces this kind's part of `view` with that of `part`.
    fn replace(self, view: &mut ClusterView, part: ClusterView) {
        match self {
            Kind::Services => view.topology = part.topology,
            Kind::NodePools | Kind::NodeBuckets => view.groups = part.groups,
        }
    }
}

/// Follows the cluster state the filters need; see the [module docs](super). Dropping it ends
/// its tasks.
#[derive(Debug)]
pub struct ViewWatcher {
    view: watch::Receiver<Arc<ClusterView>>,
    synced: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ViewWatcher {
    /// Starts following Services and the pools through `service` (the hub's own stack),
    /// publishing on `view` (whose receivers the [`FilterLayer`](super::FilterLayer) reads).
    /// Needs a Tokio runtime.
    pub fn spawn<S>(
        service: S,
        view: watch::Sender<Arc<ClusterView>>,
        config: ViewWatcherConfig,
    ) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let view_tx = view;
        let view = view_tx.subscribe();
        let (synced_tx, synced) = watch::channel(false);
        let mut kinds = vec![Kind::Services];
        match config.pools {
            PoolSource::NodePool => kinds.push(Kind::NodePools),
            PoolSource::NodeBucket => kinds.push(Kind::NodeBuckets),
            PoolSource::None => {}
        }
        let shared = Arc::new(Shared {
            view: view_tx,
            synced: synced_tx,
            unsynced: AtomicUsize::new(kinds.len()),
            config,
        });
        let tasks = kinds
            .into_iter()
            .map(|k| tokio::spawn(run(service.clone(), shared.clone(), k)))
            .collect();
        ViewWatcher {
            view,
            synced,
            tasks,
        }
    }

    /// The published view.
    pub fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// `true` once every followed resource was listed (a readiness gate).
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.clone()
    }

    /// Ends the tasks and waits for them to stop.
    pub async fn shutdown(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for ViewWatcher {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Shared {
    view: watch::Sender<Arc<ClusterView>>,
    synced: watch::Sender<bool>,
    unsynced: AtomicUsize,
    config: ViewWatcherConfig,
}

/// Why a watch ended.
enum End {
    Relist,
    Resume,
    Error(String),
}

struct Reflector<S> {
    /// Behind a mutex only so `&Reflector` is `Send` for any `Send` service.
    service: std::sync::Mutex<S>,
    shared: Arc<Shared>,
    kind: Kind,
}

impl<S> Reflector<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn config(&self) -> &ViewWatcherConfig {
        &self.shared.config
    }

    async fn send(&self, path: &str) -> Result<Response<Body>, String> {
        let req = Request::get(path)
            .header(http::header::USER_AGENT, &self.config().user_agent)
            .header(http::header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let service = self
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fut = service.oneshot(req);
        match tokio::time::timeout(self.config().request_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e.into().to_string()),
            Err(_) => Err("request timed out".to_owned()),
        }
    }

    /// Lists and resets this kind's part of the view, decoding the list item by item as it
    /// streams (only the view's compact form is kept); the list's resourceVersion, or `None`
    /// when the resource does not exist (404: CRD not installed).
    async fn list(&self) -> Result<Option<String>, String> {
        let resp = self.send(self.kind.path()).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            self.publish(ClusterView::new());
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(format!("list answered {status}"));
        }
        let mut body = resp.into_body();
        let mut split = ListStream::new(16 << 20);
        let mut part = ClusterView::new();
        let deadline = tokio::time::Instant::now() + self.config().request_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| "list body timed out".to_owned())?;
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(format!("list body: {e}")),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            for raw in split.feed(&data).map_err(|e| format!("list: {e}"))? {
                let item: Value =
                    serde_json::from_slice(&raw).map_err(|e| format!("list item: {e}"))?;
                self.kind.apply(&mut part, &item, false);
            }
        }
        let head = split.finish().map_err(|e| format!("list: {e}"))?;
        let meta: Value = if head.metadata.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&head.metadata).map_err(|e| format!("list metadata: {e}"))?
        };
        self.publish(part);
        Ok(Some(
            meta["resourceVersion"].as_str().unwrap_or("").to_owned(),
        ))
    }

    /// Publishes `part` as this kind's part of the view, if that changes it.
    fn publish(&self, part: ClusterView) {
        let kind = self.kind;
        self.shared.view.send_if_modified(move |v| {
            let mut next = ClusterView::clone(v);
            kind.replace(&mut next, part);
            if next == **v {
                return false;
            }
            *v = Arc::new(next);
            true
        });
    }

    async fn watch(&self, rv: &mut String) -> End {
        let path = format!(
            "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
            self.kind.path(),
            rv,
            self.config().watch_timeout.as_secs().max(1)
        );
        let resp = match self.send(&path).await {
            Ok(r) => r,
            Err(e) => return End::Error(e),
        };
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::GONE => return End::Relist,
            s => return End::Error(format!("watch answered {s}")),
        }
        let mut body = resp.into_body();
        let mut split = ObjectStream::new(16 << 20);
        let bound = self.config().watch_timeout + self.config().request_timeout;
        loop {
            let frame = match tokio::time::timeout(bound, body.frame()).await {
                Err(_) | Ok(None) => return End::Resume,
                Ok(Some(Err(e))) => return End::Error(format!("watch stream: {e}")),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = match split.feed(&data) {
                Ok(e) => e,
                Err(e) => return End::Error(format!("watch stream: {e}")),
            };
            for raw in events {
                let ev: Value = match serde_json::from_slice(&raw) {
                    Ok(v) => v,
                    Err(e) => return End::Error(format!("watch event: {e}")),
                };
                let obj = &ev["object"];
                let deleted = match ev["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => false,
                    Some("DELETED") => true,
                    Some("BOOKMARK") => {
                        if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                            *rv = v.to_owned();
                        }
                        continue;
                    }
                    Some("ERROR") if obj["code"].as_u64() == Some(410) => return End::Relist,
                    _ => return End::Error(format!("watch error event: {}", obj["message"])),
                };
                self.shared
                    .view
                    .send_if_modified(|v| self.kind.apply(Arc::make_mut(v), obj, deleted));
                if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                    *rv = v.to_owned();
                }
            }
        }
    }

    fn mark_synced(&self, done: &mut bool) {
        if !*done {
            *done = true;
            if self.shared.unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.shared.synced.send_replace(true);
            }
        }
    }
}

async fn run<S>(service: S, shared: Arc<Shared>, kind: Kind)
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let r = Reflector {
        service: std::sync::Mutex::new(service),
        shared,
        kind,
    };
    let mut synced = false;
    let mut backoff = r.config().backoff_min;
    let mut rv: Option<String> = None;
    loop {
        let mut current = match rv.take() {
            Some(v) => v,
            None => match r.list().await {
                Ok(Some(v)) => {
                    r.mark_synced(&mut synced);
                    backoff = r.config().backoff_min;
                    v
                }
                Ok(None) => {
                    // Not served (CRD not installed): nothing to follow yet; look again later.
                    r.mark_synced(&mut synced);
                    tokio::time::sleep(r.config().backoff_max).await;
                    continue;
                }
                Err(e) => {
                    // Expected for a while (the first list races the hub's first health probe
                    // and the multiplexer's first sync): a warning only once the backoff is
                    // at its cap.
                    if backoff >= r.config().backoff_max {
                        tracing::warn!(resource = kind.path(), error = %e, ?backoff, "filter view: list keeps failing; retrying");
                    } else if !synced {
                        tracing::info!(resource = kind.path(), error = %e, ?backoff, "filter view: first list not served yet; retrying");
                    } else {
                        tracing::info!(resource = kind.path(), error = %e, ?backoff, "filter view: list failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(r.config().backoff_max);
                    continue;
                }
            },
        };
        match r.watch(&mut current).await {
            End::Resume => rv = Some(current),
            End::Relist => {}
            End::Error(e) => {
                if backoff >= r.config().backoff_max {
                    tracing::warn!(resource = kind.path(), error = %e, ?backoff, "filter view: watch keeps failing; retrying");
                } else {
                    tracing::info!(resource = kind.path(), error = %e, ?backoff, "filter view: watch ended; re-watching");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(r.config().backoff_max);
                rv = Some(current);
            }
        }
    }
}
