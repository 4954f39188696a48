use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Service, ServiceExt};
use yurt_core::wellknown::node;
use yurt_core::{Component, RequestInfo, Status, Verb};

use super::{MAX_NODE_BYTES, Shared};
use crate::body::Body;

/// Consecutive failing observations after which the condition turns `Unknown`.
const MAX_CACHE_FAILURES: u64 = 3;
const PATCH_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("yurthub/", env!("CARGO_PKG_VERSION"));

/// The autonomy layer's service; see the [module docs](super).
#[derive(Clone)]
pub struct AutonomyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for AutonomyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutonomyService")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl<S> AutonomyService<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        AutonomyService { inner, shared }
    }

    fn is_kubelet_get_node(&self, req: &Request<Body>) -> bool {
        let (Some(info), Some(component)) = (
            req.extensions().get::<RequestInfo>(),
            req.extensions().get::<Component>(),
        ) else {
            return false;
        };
        component.as_str() == "kubelet"
            && info.is_resource_request
            && info.verb == Verb::Get
            && info.api_group.is_empty()
            && info.resource == "nodes"
            && info.subresource.is_empty()
            && info.name == self.shared.node
    }
}

/// The condition the Node should carry: (status, reason, message).
pub(crate) fn desired(
    node_obj: &Value,
    cache_failing: bool,
) -> (&'static str, &'static str, &'static str) {
    let ann = &node_obj["metadata"]["annotations"];
    let beta = ann[node::AUTONOMY_ANNOTATION]
        .as_str()
        .is_some_and(|v| v != "false");
    let duration = ann[node::AUTONOMY_DURATION_ANNOTATION]
        .as_str()
        .is_some_and(|v| !v.is_empty());
    let not_edge = node_obj["metadata"]["labels"][node::IS_EDGE_WORKER_LABEL] == "false";
    if !(beta || duration) || not_edge {
        (
            "False",
            "autonomy disabled",
            "The autonomy is disabled or this node is not edge node",
        )
    } else if cache_failing {
        ("Unknown", "cache failed", "the hub's cache reported errors")
    } else {
        (
            "True",
            "autonomy enabled successfully",
            "The autonomy is enabled and it works fine",
        )
    }
}

/// The current status of the Node's `Autonomy` condition, if any.
fn current(node_obj: &Value) -> Option<&str> {
    node_obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == node::AUTONOMY_CONDITION)
        .and_then(|c| c["status"].as_str())
}

impl Shared {
    /// One observation of the cache errors; whether the cache counts as failing.
    fn observe(&self) -> bool {
        let now = (self.errors)();
        let before = self.last_errors.swap(now, Ordering::SeqCst);
        if now > before {
            self.failing.fetch_add(1, Ordering::SeqCst) + 1 > MAX_CACHE_FAILURES
        } else {
            self.failing.store(0, Ordering::SeqCst);
            false
        }
    }
}

impl<S> Service<Request<Body>> for AutonomyService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !self.is_kubelet_get_node(&req) {
            return Box::pin(self.inner.call(req));
        }
        let fut = self.inner.call(req);
        let patcher = self.inner.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let resp = fut.await?;
            if resp.status() != StatusCode::OK {
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let bytes = match http_body_util::Limited::new(body, MAX_NODE_BYTES)
                .collect()
                .await
            {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Ok(Status::failure(
                        yurt_core::StatusReason::InternalError,
                        format!("reading the Node failed: {e}"),
                    )
                    .with_code(502)
                    .to_response());
                }
            };
            let original = || Response::from_parts(parts.clone(), Body::from(bytes.clone()));
            let Ok(node_obj) = serde_json::from_slice::<Value>(&bytes) else {
                return Ok(original());
            };
            let (status, reason, message) = desired(&node_obj, shared.observe());
            let offline = shared
                .health
                .as_ref()
                .is_some_and(|h| !h.borrow().any_healthy());
            if current(&node_obj) == Some(status) || offline {
                return Ok(original());
            }
            let now = yurt_core::time::format_time(SystemTime::now());
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": node::AUTONOMY_CONDITION,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }]}});
            let path = format!("/api/v1/nodes/{}/status", shared.node);
            let mut req = Request::new(Body::from(patch.to_string()));
            *req.method_mut() = Method::PATCH;
            *req.uri_mut() = path.parse().unwrap_or_default();
            let h = req.headers_mut();
            h.insert(
                http::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            );
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/strategic-merge-patch+json"),
            );
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(info) = RequestInfo::from_request(&req) {
                req.extensions_mut().insert(info);
            }
            req.extensions_mut().insert(Component::new("yurthub"));
            let patched = tokio::time::timeout(PATCH_TIMEOUT, async move {
                let resp = patcher.oneshot(req).await.ok()?;
                if !resp.status().is_success() {
                    tracing::debug!(status = %resp.status(), "the Autonomy condition was not updated");
                    return None;
                }
                let (p, b) = resp.into_parts();
                let b = http_body_util::Limited::new(b, MAX_NODE_BYTES)
                    .collect()
                    .await
                    .ok()?
                    .to_bytes();
                Some(Response::from_parts(p, Body::from(b)))
            })
            .await
            .ok()
            .flatten();
            match patched {
                Some(resp) => {
                    tracing::info!(node = %shared.node, status, reason, "updated the node's Autonomy condition");
                    Ok(resp)
                }
                None => Ok(original()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions() {
        let plain = json!({"metadata": {"name": "n"}});
        assert_eq!(desired(&plain, false).0, "False");
        let beta = json!({"metadata": {"annotations": {node::AUTONOMY_ANNOTATION: "true"}}});
        assert_eq!(desired(&beta, false).0, "True");
        assert_eq!(desired(&beta, true).0, "Unknown");
        let off = json!({"metadata": {"annotations": {node::AUTONOMY_ANNOTATION: "false"}}});
        assert_eq!(desired(&off, false).0, "False");
        // Upstream ignores the newer annotation; we honour it.
        let duration =
            json!({"metadata": {"annotations": {node::AUTONOMY_DURATION_ANNOTATION: "10m"}}});
        assert_eq!(desired(&duration, false).0, "True");
        let not_edge = json!({"metadata": {
            "annotations": {node::AUTONOMY_DURATION_ANNOTATION: "0"},
            "labels": {node::IS_EDGE_WORKER_LABEL: "false"}}});
        assert_eq!(desired(&not_edge, false).0, "False");
    }

    #[test]
    fn unknown_after_more_than_three_failing_observations() {
        use std::sync::atomic::AtomicU64;
        let errors = Arc::new(AtomicU64::new(0));
        let e2 = errors.clone();
        let shared = Shared {
            node: "n".into(),
            errors: Arc::new(move || e2.load(Ordering::SeqCst)),
            last_errors: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            health: None,
        };
        let mut seen = Vec::new();
        for _ in 0..5 {
            errors.fetch_add(1, Ordering::SeqCst);
            seen.push(shared.observe());
        }
        assert_eq!(seen, vec![false, false, false, true, true]);
        // A clean observation resets.
        assert!(!shared.observe());
    }
}
