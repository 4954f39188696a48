//! Follows ConfigMap `kube-system/yurt-hub-cfg` and publishes which components the hub caches.
//!
//! [`HubConfigWatcher::spawn`] starts a task that lists the ConfigMaps labelled
//! `openyurt.io/configmap-name=yurt-hub-cfg` through a service of the hub's own stack (the
//! balancer, or the whole proxy tower, as upstream YurtHub's informer talks to its own proxy
//! port), then watches them from the list's resourceVersion, resuming from the last seen
//! resourceVersion (bookmarks included) when a watch ends and re-listing when the apiserver
//! answers 410 Gone. Errors are retried with an exponential backoff bounded by
//! [`HubConfig::backoff_max`].
//!
//! Each change of key `cache_agents` is published on the given
//! `watch::Sender<CacheAgents>` as [`CacheAgents::from_setting`]; a deleted (or absent)
//! ConfigMap publishes the defaults. With [`HubConfigWatcher::spawn_with_filters`], the keys
//! named after the response filters (`servicetopology`, `masterservice`, ...) are published too,
//! as [`ExtraComponents`]. [`HubConfigWatcher::synced`] turns `true` after the first
//! successful list (upstream's readiness waits for the same). The watcher owns its task:
//! [`HubConfigWatcher::shutdown`] or dropping it ends the task.

use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};
use crate::cache::CacheAgents;
use crate::filter::ExtraComponents;

/// The ConfigMap's name.
pub const CONFIGMAP_NAME: &str = "yurt-hub-cfg";
/// The label every `yurt-hub-cfg` ConfigMap carries (and the watch selects on).
pub const CONFIGMAP_LABEL: &str = "openyurt.io/configmap-name";
/// The ConfigMap key listing the extra cached components.
pub const CACHE_AGENTS_KEY: &str = "cache_agents";

/// Settings of a [`HubConfigWatcher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// The node name (the default agents include `multiplexer-proxy-<node>`).
    pub node_name: String,
    /// Namespace of the ConfigMap (upstream `--namespace`, default `kube-system`).
    pub namespace: String,
    /// `User-Agent` of the watcher's requests (default `yurthub/<crate version>`).
    pub user_agent: String,
    /// `timeoutSeconds` of each watch (default 5 min); the watch is then resumed.
    pub watch_timeout: Duration,
    /// Bound of a list request and of the wait for a watch's response head (default 30 s).
    pub request_timeout: Duration,
    /// First retry delay after an error (default 500 ms).
    pub backoff_min: Duration,
    /// Largest retry delay (default 30 s).
    pub backoff_max: Duration,
}

impl HubConfig {
    /// Defaults for `node_name`.
    pub fn new(node_name: &str) -> Self {
        HubConfig {
            node_name: node_name.to_owned(),
            namespace: "kube-system".to_owned(),
            user_agent: format!("yurthub/{}", env!("CARGO_PKG_VERSION")),
            watch_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Sets [`HubConfig::namespace`].
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.to_owned();
        self
    }

    /// Sets [`HubConfig::watch_timeout`].
    pub fn watch_timeout(mut self, d: Duration) -> Self {
        self.watch_timeout = d;
        self
    }

    /// Sets [`HubConfig::backoff_min`] and [`HubConfig::backoff_max`].
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    fn path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/configmaps?labelSelector={}%3D{}",
            self.namespace,
            CONFIGMAP_LABEL.replace('/', "%2F"),
            CONFIGMAP_NAME
        )
    }
}

/// The running watcher; see the [module docs](self). Dropping it ends its task.
#[derive(Debug)]
pub struct HubConfigWatcher {
    synced: watch::Receiver<bool>,
    agents: watch::Receiver<CacheAgents>,
    task: Option<JoinHandle<()>>,
}

impl HubConfigWatcher {
    /// Starts following the ConfigMap through `service`, publishing on `agents`. Needs a Tokio
    /// runtime.
    pub fn spawn<S>(service: S, agents: watch::Sender<CacheAgents>, config: HubConfig) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Self::start(service, agents, None, config)
    }

    /// Like [`spawn`](Self::spawn), also publishing the filter keys' extra components on
    /// `filters` (for [`FilterLayer`](crate::filter::FilterLayer)).
    pub fn spawn_with_filters<S>(
        service: S,
        agents: watch::Sender<CacheAgents>,
        filters: watch::Sender<ExtraComponents>,
        config: HubConfig,
    ) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Self::start(service, agents, Some(filters), config)
    }

    fn start<S>(
        service: S,
        agents: watch::Sender<CacheAgents>,
        filters: Option<watch::Sender<ExtraComponents>>,
        config: HubConfig,
    ) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let (synced_tx, synced) = watch::channel(false);
        let agents_rx = agents.subscribe();
        let task = tokio::spawn(run(service, agents, filters, synced_tx, config));
        HubConfigWatcher {
            synced,
            agents: agents_rx,
            task: Some(task),
        }
    }

    /// `true` once the first list succeeded.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.clone()
    }

    /// The published cache agents.
    pub fn agents(&self) -> watch::Receiver<CacheAgents> {
        self.agents.clone()
    }

    /// Ends the task and waits for it to stop.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for HubConfigWatcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Why a list or watch ended.
enum End {
    /// Re-list (410 Gone, or the stream said something unusable).
    Relist,
    /// The watch ended normally: resume from the last resourceVersion.
    Resume,
    /// An error: back off, then resume.
    Error(String),
}

struct Ctx<S> {
    /// Behind a mutex only so `&Ctx` is `Send` for any `Send` service (it is cloned per call).
    service: std::sync::Mutex<S>,
    agents: watch::Sender<CacheAgents>,
    filters: Option<watch::Sender<ExtraComponents>>,
    config: HubConfig,
}

impl<S> Ctx<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn request(&self, path_and_query: &str) -> Result<Request<Body>, String> {
        Request::get(path_and_query)
            .header(http::header::USER_AGENT, &self.config.user_agent)
            .header(http::header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|e| e.to_string())
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, String> {
        let service = self
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fut = service.oneshot(req);
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e.into().to_string()),
            Err(_) => Err("request timed out".to_owned()),
        }
    }

    fn publish(&self, setting: Option<&str>) {
        let next = CacheAgents::from_setting(setting, &self.config.node_name);
        self.agents.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                tracing::info!(cache_agents = ?setting, "cache agents changed");
                *cur = next;
                true
            }
        });
    }

    fn publish_filters(&self, data: &Value) {
        let Some(filters) = &self.filters else {
            return;
        };
        let next = ExtraComponents::from_configmap_data(data);
        filters.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                tracing::info!(filters = ?next, "filter components changed");
                *cur = next;
                true
            }
        });
    }

    fn apply(&self, object: &Value, deleted: bool) {
        if object["metadata"]["name"].as_str() != Some(CONFIGMAP_NAME) {
            return;
        }
        if deleted {
            self.publish(None);
            self.publish_filters(&Value::Null);
        } else {
            self.publish(object["data"][CACHE_AGENTS_KEY].as_str());
            self.publish_filters(&object["data"]);
        }
    }

    /// Lists and applies; returns the list's resourceVersion.
    async fn list(&self) -> Result<String, String> {
        let resp = self.send(self.request(&self.config.path())?).await?;
        let status = resp.status();
        let body = tokio::time::timeout(self.config.request_timeout, resp.into_body().collect())
            .await
            .map_err(|_| "list body timed out".to_owned())?
            .map_err(|e| format!("list body: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "list answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        let list: Value = serde_json::from_slice(&body).map_err(|e| format!("list: {e}"))?;
        let found = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["metadata"]["name"].as_str() == Some(CONFIGMAP_NAME));
        match found {
            Some(cm) => self.apply(cm, false),
            None => {
                self.publish(None);
                self.publish_filters(&Value::Null);
            }
        }
        Ok(list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned())
    }

    /// Watches from `rv`, applying events and advancing `rv`.
    async fn watch(&self, rv: &mut String) -> End {
        let path = format!(
            "{}&watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
            self.config.path(),
            rv,
            self.config.watch_timeout.as_secs().max(1)
        );
        let req = match self.request(&path) {
            Ok(r) => r,
            Err(e) => return End::Error(e),
        };
        let resp = match self.send(req).await {
            Ok(r) => r,
            Err(e) => return End::Error(e),
        };
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::GONE => return End::Relist,
            s => return End::Error(format!("watch answered {s}")),
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        // The server ends the watch after timeoutSeconds; this bounds a silent connection.
        let frame_bound = self.config.watch_timeout + self.config.request_timeout;
        loop {
            let frame = match tokio::time::timeout(frame_bound, body.frame()).await {
                Err(_) => return End::Resume,
                Ok(None) => return End::Resume,
                Ok(Some(Err(e))) => return End::Error(format!("watch stream: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(pos + 1);
                let line = &line[..pos];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Value = match serde_json::from_slice(line) {
                    Ok(v) => v,
                    Err(e) => return End::Error(format!("watch event: {e}")),
                };
                if let Some(end) = self.event(&event, rv) {
                    return end;
                }
            }
            if buf.len() > 16 << 20 {
                return End::Error("watch event larger than 16 MiB".to_owned());
            }
        }
    }

    fn event(&self, event: &Value, rv: &mut String) -> Option<End> {
        let object = &event["object"];
        match event["type"].as_str() {
            Some("ADDED") | Some("MODIFIED") => self.apply(object, false),
            Some("DELETED") => self.apply(object, true),
            Some("BOOKMARK") => {}
            Some("ERROR") => {
                return Some(if object["code"].as_u64() == Some(410) {
                    End::Relist
                } else {
                    End::Error(format!(
                        "watch error: {}",
                        object["message"].as_str().unwrap_or("unknown")
                    ))
                });
            }
            _ => return Some(End::Error("watch event without a known type".to_owned())),
        }
        if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
            *rv = v.to_owned();
        }
        None
    }
}

async fn run<S>(
    service: S,
    agents: watch::Sender<CacheAgents>,
    filters: Option<watch::Sender<ExtraComponents>>,
    synced: watch::Sender<bool>,
    config: HubConfig,
) where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let ctx = Ctx {
        service: std::sync::Mutex::new(service),
        agents,
        filters,
        config,
    };
    let mut backoff = ctx.config.backoff_min;
    let mut rv: Option<String> = None;
    loop {
        let mut current = match rv.take() {
            Some(v) => v,
            None => match ctx.list().await {
                Ok(v) => {
                    synced.send_replace(true);
                    backoff = ctx.config.backoff_min;
                    v
                }
                Err(e) => {
                    // Expected for a while (the first list races the hub's first health
                    // probe; a cut link): a warning only once the backoff is at its cap.
                    if backoff >= ctx.config.backoff_max {
                        tracing::warn!(error = %e, ?backoff, "listing yurt-hub-cfg keeps failing; retrying");
                    } else {
                        tracing::info!(error = %e, ?backoff, "listing yurt-hub-cfg failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ctx.config.backoff_max);
                    continue;
                }
            },
        };
        match ctx.watch(&mut current).await {
            End::Resume => {
                rv = Some(current);
            }
            End::Relist => {}
            End::Error(e) => {
                if backoff >= ctx.config.backoff_max {
                    tracing::warn!(error = %e, ?backoff, "watching yurt-hub-cfg keeps failing; retrying");
                } else {
                    tracing::info!(error = %e, ?backoff, "watch of yurt-hub-cfg ended; re-watching");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ctx.config.backoff_max);
                rv = Some(current);
            }
        }
    }
}
