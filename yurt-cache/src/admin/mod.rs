//! The hub's management server (upstream port 10267) and the proxy path's request metrics.
//!
//! [`AdminService`] is a tower `Service` to serve with [`Server`](crate::server::Server):
//!
//! - `/v1/healthz`: `200 OK` while the process can do its job; `500` with the reason once the
//!   cache store met an I/O error and cannot be reopened (see
//!   [`RedbStore::health`](crate::store::RedbStore::health)), so kubelet or systemd restart
//!   the hub. A store that is still recovering is healthy here (the hub keeps proxying).
//! - `/v1/readyz`: `200 OK` once the store answers, the health checker finished a round and
//!   every [gate](AdminService::ready_gate) is open; else `503` with the reasons, one a line.
//! - `/metrics`: the Prometheus registry in text format, the store's figures refreshed at each
//!   scrape.
//! - `/v1/cache`: JSON: the store's usage and, per component, its object count and its list
//!   scopes with their metadata (resourceVersion, kind, completion time).
//! - `/v1/journal/rejected`: JSON `{"pending": {"entries", "bytes"}, "rejected": [...]}`: the
//!   offline journal's totals and the records of the writes the reconnect replay gave up on,
//!   oldest first, each with the object, verb, component, attempts and the apiserver's
//!   `Status` (see [`crate::resync`]).
//!
//! Other paths get 404, other methods 405. [`MetricsLayer`] counts the proxy path's requests
//! (in flight, total, response bytes) into [`ProxyMetrics`], which the caller registers in the
//! same registry it hands to [`AdminService::new`].

mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::Service;

pub use metrics::{ComponentLabels, MetricsLayer, MetricsService, ProxyMetrics, RequestLabels};
/// The prometheus-client registry the metrics register in (re-exported for binaries).
pub use prometheus_client::registry::Registry;

use crate::body::Body;
use crate::health::HealthSnapshot;
use crate::store::{RedbStore, Store, StoreHealth};

/// The store's size figures as gauges, refreshed at each scrape.
#[derive(Debug, Default)]
struct StoreGauges {
    objects: Gauge,
    object_bytes: Gauge,
    lists: Gauge,
    file_bytes: Gauge,
    journal_entries: Gauge,
    journal_bytes: Gauge,
}

#[derive(Debug)]
struct State {
    store: RedbStore,
    health: watch::Receiver<HealthSnapshot>,
    gates: Vec<(String, watch::Receiver<bool>)>,
    registry: Registry,
    gauges: StoreGauges,
}

/// The management endpoints; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminService {
    state: Arc<State>,
}

impl AdminService {
    /// Serves figures of `store` and `health` (from
    /// [`HealthChecker::subscribe`](crate::health::HealthChecker::subscribe)) and everything
    /// registered in `registry`, to which it adds the store gauges (`yurthub_store_*`).
    pub fn new(
        store: RedbStore,
        health: watch::Receiver<HealthSnapshot>,
        mut registry: Registry,
    ) -> Self {
        let gauges = StoreGauges::default();
        registry.register(
            "yurthub_store_objects",
            "Objects in the cache store",
            gauges.objects.clone(),
        );
        registry.register(
            "yurthub_store_object_bytes",
            "Bytes of the cached objects' keys and values",
            gauges.object_bytes.clone(),
        );
        registry.register(
            "yurthub_store_lists",
            "List scopes recorded in the cache store",
            gauges.lists.clone(),
        );
        registry.register(
            "yurthub_store_file_bytes",
            "Size of the cache store's file",
            gauges.file_bytes.clone(),
        );
        registry.register(
            "yurthub_journal_entries",
            "Offline writes waiting in the journal for replay",
            gauges.journal_entries.clone(),
        );
        registry.register(
            "yurthub_journal_bytes",
            "Bytes of the offline writes waiting in the journal for replay",
            gauges.journal_bytes.clone(),
        );
        AdminService {
            state: Arc::new(State {
                store,
                health,
                gates: Vec::new(),
                registry,
                gauges,
            }),
        }
    }

    /// Adds a readiness condition: `/v1/readyz` answers 503 (naming `name`) until `gate` holds
    /// `true`, e.g. [`HubConfigWatcher::synced`](crate::hubconfig::HubConfigWatcher::synced).
    /// Call before cloning.
    pub fn ready_gate(mut self, name: &str, gate: watch::Receiver<bool>) -> Self {
        match Arc::get_mut(&mut self.state) {
            Some(state) => state.gates.push((name.to_owned(), gate)),
            None => tracing::warn!(
                gate = name,
                "ready_gate called on a shared AdminService; ignored"
            ),
        }
        self
    }

    /// Why the hub is not ready; empty when it is.
    pub async fn not_ready_reasons(&self) -> Vec<String> {
        let s = &self.state;
        let mut reasons = Vec::new();
        if let Err(e) = s.store.last_healthy().await {
            reasons.push(format!("cache store unavailable: {e}"));
        }
        if s.health.borrow().round == 0 {
            reasons.push("no health check round has finished yet".to_owned());
        }
        for (name, gate) in &s.gates {
            if !*gate.borrow() {
                reasons.push(format!("{name} not ready"));
            }
        }
        reasons
    }

    async fn handle(self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path();
        let known = matches!(
            path,
            "/v1/healthz" | "/v1/readyz" | "/metrics" | "/v1/cache" | "/v1/journal/rejected"
        );
        if !known {
            return text(StatusCode::NOT_FOUND, "404 page not found\n");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match path {
            "/v1/healthz" => match self.state.store.health() {
                StoreHealth::Failed { failures, error } => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "cache store cannot be reopened after an I/O error ({failures} failures): \
                         {error}\n"
                    ),
                ),
                _ => text(StatusCode::OK, "OK"),
            },
            "/v1/readyz" => {
                let reasons = self.not_ready_reasons().await;
                if reasons.is_empty() {
                    text(StatusCode::OK, "OK")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n")
                }
            }
            "/metrics" => self.metrics().await,
            "/v1/journal/rejected" => self.rejected().await,
            _ => self.cache().await,
        }
    }

    async fn metrics(&self) -> Response<Body> {
        let s = &self.state;
        if let Ok(u) = s.store.usage().await {
            s.gauges.objects.set(clamp(u.objects));
            s.gauges.object_bytes.set(clamp(u.object_bytes));
            s.gauges.lists.set(clamp(u.lists));
            s.gauges.file_bytes.set(clamp(u.file_bytes));
        }
        if let Ok(j) = s.store.journal_stats().await {
            s.gauges.journal_entries.set(clamp(j.entries));
            s.gauges.journal_bytes.set(clamp(j.bytes));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.registry) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("encode: {e}\n"));
        }
        let mut resp = text(StatusCode::OK, out);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        resp
    }

    async fn rejected(&self) -> Response<Body> {
        let store = &self.state.store;
        let doc = async {
            let stats = store.journal_stats().await?;
            let records: Vec<Value> = store
                .journal_rejected()
                .await?
                .into_iter()
                .map(|(_, b)| serde_json::from_slice(&b).unwrap_or(Value::Null))
                .collect();
            Ok::<_, crate::store::StoreError>(json!({
                "pending": {"entries": stats.entries, "bytes": stats.bytes},
                "rejected": records,
            }))
        };
        Self::json_or_503(doc.await)
    }

    fn json_or_503(doc: Result<Value, crate::store::StoreError>) -> Response<Body> {
        match doc {
            Ok(v) => {
                let mut resp = text(StatusCode::OK, v.to_string());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cache store: {e}\n"),
            ),
        }
    }

    async fn cache(&self) -> Response<Body> {
        Self::json_or_503(self.cache_json().await)
    }

    /// The `/v1/cache` document.
    pub async fn cache_json(&self) -> Result<Value, crate::store::StoreError> {
        let store = &self.state.store;
        let usage = store.usage().await?;
        let snap_store = store.clone();
        let counts = tokio::task::spawn_blocking(move || snap_store.snapshot()?.object_counts())
            .await
            .map_err(|e| crate::store::StoreError::TaskFailed(e.to_string()))??;
        let mut components = serde_json::Map::new();
        let mut names = store.components().await?;
        for c in counts.keys() {
            if !names.contains(c) {
                names.push(c.clone());
            }
        }
        names.sort();
        for name in names {
            let scopes: Vec<Value> = store
                .scopes(&name)
                .await?
                .into_iter()
                .map(|(key, meta)| {
                    json!({
                        "group": key.gvr.group,
                        "version": key.gvr.version,
                        "resource": key.gvr.resource,
                        "namespace": key.namespace,
                        "labelSelector": key.label_selector,
                        "fieldSelector": key.field_selector,
                        "resourceVersion": meta.resource_version,
                        "kind": meta.kind,
                        "apiVersion": meta.api_version,
                        "completedAtMs": meta.completed_at_ms,
                    })
                })
                .collect();
            let objects = counts.get(&name).copied().unwrap_or(0);
            components.insert(name, json!({ "objects": objects, "scopes": scopes }));
        }
        Ok(json!({
            "usage": {
                "objects": usage.objects,
                "objectBytes": usage.object_bytes,
                "lists": usage.lists,
                "nonResource": usage.nonresource,
                "liveBytes": usage.live_bytes,
                "fileBytes": usage.file_bytes,
            },
            "components": components,
        }))
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl Service<Request<Body>> for AdminService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
