use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::Service;
use yurt_core::validation;
use yurt_core::{Component, RequestInfo, Status, Verb, protobuf};

use super::KubeletLiveness;
use crate::body::Body;

const GROUP: &str = "coordination.k8s.io";
const RESOURCE: &str = "leases";
const NAMESPACE: &str = "kube-node-lease";

/// State shared by a layer and every service it made.
#[derive(Debug)]
pub(super) struct Shared {
    node: String,
    pub(super) liveness: KubeletLiveness,
    lease: Mutex<Option<Value>>,
    rv: AtomicU64,
    seeding: AtomicBool,
}

impl Shared {
    pub(super) fn new(node: String, liveness: KubeletLiveness) -> Self {
        Shared {
            node,
            liveness,
            lease: Mutex::new(None),
            rv: AtomicU64::new(0),
            seeding: AtomicBool::new(false),
        }
    }

    fn current(&self) -> Option<Value> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `lease` with the next local resourceVersion and returns it.
    fn store(&self, mut lease: Value) -> Value {
        let rv = self.rv.fetch_add(1, Ordering::SeqCst) + 1;
        lease["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease.clone());
        lease
    }

    /// Keeps a lease read from the apiserver as is; later local versions stay above its own.
    fn seed(&self, lease: Value) {
        if let Some(rv) = lease
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
        {
            self.rv.fetch_max(rv, Ordering::SeqCst);
        }
        let mut slot = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(lease);
        }
    }

    fn not_found(&self) -> Response<Body> {
        Status::not_found(GROUP, RESOURCE, &self.node).to_response()
    }
}

/// What a request is to this layer.
enum Kind {
    Get,
    Update,
    Create,
    Other,
}

/// Answers kubelet's own node-Lease requests locally; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct KubeletLeaseService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> KubeletLeaseService<S> {
    pub(super) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        KubeletLeaseService { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn classify<B>(&self, req: &Request<B>) -> Kind {
        let (Some(info), Some(component)) = (
            req.extensions().get::<RequestInfo>(),
            req.extensions().get::<Component>(),
        ) else {
            return Kind::Other;
        };
        if component.as_str() != "kubelet"
            || !info.is_resource_request
            || info.api_group != GROUP
            || info.resource != RESOURCE
            || info.namespace != NAMESPACE
            || !info.subresource.is_empty()
        {
            return Kind::Other;
        }
        match info.verb {
            Verb::Get if info.name == self.shared.node => Kind::Get,
            Verb::Update if info.name == self.shared.node => Kind::Update,
            Verb::Create if info.name.is_empty() => Kind::Create,
            _ => Kind::Other,
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Whether an `Accept` value lets the answer be JSON: absent, or listing JSON or a wildcard.
/// kubelet's `application/vnd.kubernetes.protobuf, application/json` does.
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    accept.split(',').any(|entry| {
        let media = entry.split(';').next().unwrap_or("").trim();
        ["application/json", "application/*", "*/*"]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m))
    }) || !accept.split(',').any(protobuf::is_protobuf)
}

/// The lease in a form `accept` allows: JSON when it may be, protobuf (as the apiserver would
/// answer a protobuf-only client) otherwise.
fn answer(status: StatusCode, value: &Value, accept: Option<&str>) -> Response<Body> {
    if accepts_json(accept) {
        return json_response(status, value);
    }
    match protobuf::encode(value) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(protobuf::MEDIA_TYPE),
            );
            resp
        }
        Err(e) => e.to_status().to_response(),
    }
}

/// The lease in a request body: JSON, or a protobuf body (kubelet's default) decoded to the
/// JSON the apiserver would store. A body that is neither is a 400 (415 for a protobuf kind the
/// decoder does not convert), as from the apiserver; so is a lease the apiserver would refuse
/// (a field of the wrong type: 400, invalid metadata: 422).
fn lease_of(content_type: Option<&str>, bytes: &[u8]) -> Result<Value, Box<Response<Body>>> {
    let lease = if content_type.is_some_and(protobuf::is_protobuf) {
        protobuf::decode(bytes).map_err(|e| Box::new(e.to_status().to_response()))?
    } else {
        serde_json::from_slice::<Value>(bytes).map_err(|e| {
            Box::new(Status::bad_request(format!("decoding the lease: {e}")).to_response())
        })?
    };
    if !lease.is_object() {
        return Err(Box::new(
            Status::bad_request("the lease is not a JSON object").to_response(),
        ));
    }
    // What kube-apiserver would refuse is not kept either (see yurt_core::validation).
    if let Some(reason) = validation::decode_error(&lease, GROUP, "v1", "Lease") {
        return Err(Box::new(
            validation::body_decode_status(&lease, "v1", "Lease", &reason).to_response(),
        ));
    }
    let errors = validation::validate_metadata(&lease, validation::NameRule::Subdomain, true);
    if !errors.is_empty() {
        let name = lease.pointer("/metadata/name").and_then(Value::as_str);
        let st = validation::invalid_status(GROUP, "Lease", name.unwrap_or(""), &errors);
        return Err(Box::new(st.to_response()));
    }
    Ok(lease)
}

fn header(parts: &http::request::Parts, name: http::header::HeaderName) -> Option<&str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

impl<S> Service<Request<Body>> for KubeletLeaseService<S>
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
        let kind = self.classify(&req);
        let shared = self.shared.clone();
        match kind {
            Kind::Other => Box::pin(self.inner.call(req)),
            Kind::Get => {
                shared.liveness.renewed();
                let accept = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(lease) = shared.current() {
                    return Box::pin(async move {
                        Ok(answer(StatusCode::OK, &lease, accept.as_deref()))
                    });
                }
                if shared.seeding.swap(true, Ordering::SeqCst) {
                    return Box::pin(async move { Ok(shared.not_found()) });
                }
                tracing::debug!(node = %shared.node, "seeding kubelet's lease from upstream");
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let resp = fut.await?;
                    if resp.status() != StatusCode::OK {
                        return Ok(shared.not_found());
                    }
                    let content_type = resp
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let Ok(bytes) = resp.into_body().collect().await.map(|c| c.to_bytes()) else {
                        return Ok(shared.not_found());
                    };
                    match lease_of(content_type.as_deref(), &bytes) {
                        Ok(lease) => {
                            shared.seed(lease);
                            let lease = shared.current().unwrap_or_default();
                            Ok(answer(StatusCode::OK, &lease, accept.as_deref()))
                        }
                        _ => Ok(shared.not_found()),
                    }
                })
            }
            Kind::Update | Kind::Create => {
                let create = matches!(kind, Kind::Create);
                // A create for another lease is not ours: it is forwarded with its body.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let (parts, body) = req.into_parts();
                    let bytes = match body.collect().await {
                        Ok(c) => c.to_bytes(),
                        Err(e) => {
                            return Ok(Status::bad_request(format!("reading the lease: {e}"))
                                .to_response());
                        }
                    };
                    let lease = match lease_of(header(&parts, http::header::CONTENT_TYPE), &bytes) {
                        Ok(lease) => lease,
                        Err(resp) => return Ok(*resp),
                    };
                    let named = lease.pointer("/metadata/name").and_then(Value::as_str);
                    if create && named != Some(shared.node.as_str()) {
                        // Forwarded as received: the apiserver reads protobuf itself.
                        let req = Request::from_parts(parts, Body::from(bytes));
                        return inner.call(req).await;
                    }
                    shared.liveness.renewed();
                    let kept = shared.store(lease);
                    let status = if create {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(answer(status, &kept, header(&parts, http::header::ACCEPT)))
                })
            }
        }
    }
}
