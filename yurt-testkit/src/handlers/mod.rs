//! Request handlers: route a request (resolved with [`yurt_core::request::RequestInfo`], as
//! kube-apiserver resolves it) to health checks, discovery, or a resource verb, and answer
//! errors as Kubernetes `Status` bodies.
//!
//! - [`read`]: get and list (selectors, resourceVersion semantics, limit/continue);
//! - [`write`]: create, update, patch (and apply), with the per-kind strategies;
//! - [`delete`]: delete and deletecollection (finalizers, graceful deletion, preconditions);
//! - [`subresources`]: status, scale, approval, binding, eviction, token, reviews, and the
//!   kubelet-proxied subresources this server cannot serve;
//! - watches are in [`crate::watch`].

pub(crate) mod delete;
pub(crate) mod read;
pub(crate) mod subresources;
pub(crate) mod write;

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use yurt_core::protobuf;
use yurt_core::request::{RequestInfo, Verb};
use yurt_core::status::{Status, StatusReason};

use crate::body::{self, Body};
use crate::registry::{ResourceDef, Special};
use crate::server::{Identity, Shared};
use crate::traffic::RecordCell;

/// A failed request: the Status to answer with (boxed: it is large, and the rare path).
pub(crate) type Fail = Box<Status>;

/// A handler's answer: a response, or a Status to answer with.
pub(crate) type Reply = Result<Response<Body>, Fail>;

/// Everything a resource handler needs about one request.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub info: RequestInfo,
    pub def: Arc<ResourceDef>,
    /// The effective namespace (empty for cluster-scoped resources and all-namespace requests).
    pub namespace: String,
    pub user: Identity,
    pub parts: &'a Parts,
    pub body: Bytes,
    /// Warnings for the client (`Warning` headers), e.g. from admission webhooks.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl Ctx<'_> {
    /// The value of a query parameter (first occurrence).
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        let q = self.parts.uri.query()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Adds a warning for the client.
    pub(crate) fn warn(&self, text: &str) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.to_owned());
    }

    /// Whether `dryRun=All` was asked for.
    pub(crate) fn dry_run(&self) -> bool {
        self.query("dryRun").is_some_and(|v| v == "All")
    }

    /// The storage key of the resource.
    pub(crate) fn storage(&self) -> &str {
        &self.def.behaviour.storage_key
    }

    /// The request body as a JSON object (JSON or YAML by `Content-Type`).
    pub(crate) fn body_object(&self) -> Result<Value, Fail> {
        decode_object(&self.parts.headers, &self.body)
    }

    /// 404 for the named object of this resource.
    pub(crate) fn not_found(&self, name: &str) -> Status {
        Status::not_found(&self.def.group, &self.def.plural, name)
    }
}

/// Decodes a request body into a JSON object: JSON, YAML, or protobuf for the kinds
/// [`yurt_core::protobuf`] converts (any other kind in protobuf is a 415 naming it).
pub(crate) fn decode_object(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, Fail> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| Status::bad_request(format!("error converting YAML to JSON: {e}")))?,
        m if protobuf::is_protobuf(m) => {
            protobuf::decode(body).map_err(|e| Box::new(e.to_status()))?
        }
        other => {
            return Err(Status::failure(
                StatusReason::UnsupportedMediaType,
                format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"),
            ).into());
        }
    };
    if !value.is_object() {
        return Err(Status::bad_request("the body of the request must be a JSON object").into());
    }
    Ok(value)
}

/// The encoding of a response, chosen from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/json` (also every `as=` conversion, which the handlers render as JSON).
    Json,
    /// `application/yaml`: documents only, never watch streams.
    Yaml,
    /// `application/vnd.kubernetes.protobuf`: single objects of the kinds
    /// [`yurt_core::protobuf`] converts.
    Protobuf,
}

impl Encoding {
    fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Yaml => "application/yaml",
            Self::Protobuf => protobuf::MEDIA_TYPE,
        }
    }
}

/// Chooses the response encoding as kube-apiserver does: the acceptable media range with the
/// highest `q` (ties: the earlier one), `None` (406) when nothing acceptable is offered. `yaml`
/// and `protobuf` say whether this response can be written that way.
fn negotiate(headers: &http::HeaderMap, yaml: bool, protobuf: bool) -> Option<Encoding> {
    let mut best: Option<(f32, Encoding)> = None;
    let mut any = false;
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if media.is_empty() && range.trim().is_empty() {
                continue;
            }
            any = true;
            let mut q = 1.0f32;
            let mut conversion = false;
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k.trim() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "as" => conversion = true,
                    _ => {}
                }
            }
            let enc = match media.as_str() {
                "application/json" | "application/*" | "*/*" => Encoding::Json,
                _ if conversion => continue,
                "application/yaml" if yaml => Encoding::Yaml,
                m if protobuf && protobuf::is_protobuf(m) => Encoding::Protobuf,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, enc));
            }
        }
    }
    if !any {
        return Some(Encoding::Json);
    }
    best.map(|(_, e)| e)
}

/// 406 listing what this response could have been written as (apiserver wording).
fn not_acceptable(yaml: bool, protobuf: bool) -> Status {
    let mut types = vec!["application/json"];
    if yaml {
        types.push("application/yaml");
    }
    if protobuf {
        types.push(protobuf::MEDIA_TYPE);
    }
    Status::failure(
        StatusReason::NotAcceptable,
        format!(
            "only the following media types are accepted: {}",
            types.join(", ")
        ),
    )
}

/// Rewrites a JSON document response as YAML or protobuf. Bodies that are not JSON, and JSON
/// of a kind with no protobuf form (a `Status`), are left as they are: clients decode by the
/// response's `Content-Type`.
async fn reencode(resp: Response<Body>, enc: Encoding) -> Response<Body> {
    use http_body_util::BodyExt as _;
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if enc == Encoding::Json || !is_json {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let converted = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| match enc {
            Encoding::Protobuf => protobuf::encode(&v).ok(),
            Encoding::Yaml => serde_yaml::to_string(&v).ok().map(String::into_bytes),
            Encoding::Json => None,
        });
    let body = match converted {
        Some(b) => {
            head.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(enc.media_type()),
            );
            head.headers.remove(http::header::CONTENT_LENGTH);
            body::full(b)
        }
        None => body::full(bytes),
    };
    Response::from_parts(head, body)
}

/// Routes one request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    parts: Parts,
    body: Bytes,
    user: Identity,
    cell: &RecordCell,
) -> Response<Body> {
    let path = parts.uri.path().to_owned();
    let trimmed = path.trim_end_matches('/');
    if parts.method == Method::GET || parts.method == Method::HEAD {
        for probe in ["/healthz", "/livez", "/readyz"] {
            if trimmed == probe || trimmed.starts_with(&format!("{probe}/")) {
                return body::text(StatusCode::OK, "ok");
            }
        }
        if trimmed == "/version" {
            return body::json_value(StatusCode::OK, &crate::server::version_doc(shared));
        }
        if trimmed.is_empty() {
            return body::json_value(StatusCode::OK, &crate::discovery::root_paths(shared));
        }
    }
    let info = match RequestInfo::parse(parts.method.as_str(), &path, parts.uri.query()) {
        Ok(info) => info,
        Err(e) => return body::status(&Status::bad_request(e.to_string())),
    };
    // YAML for resource documents (not watch streams); protobuf for one object of a kind with
    // a protobuf form.
    let yaml = info.is_resource_request && info.verb != Verb::Watch;
    let pb = info.is_resource_request
        && info.subresource.is_empty()
        && matches!(
            info.verb,
            Verb::Get | Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
        && protobuf::kind_for_resource(&info.api_group, &info.api_version, &info.resource)
            .is_some();
    let Some(encoding) = negotiate(&parts.headers, yaml, pb) else {
        return body::status(&not_acceptable(yaml, pb));
    };
    let resource = if info.subresource.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{}", info.resource, info.subresource)
    };
    cell.set_verb(info.verb.as_str(), resource);
    if !info.is_resource_request {
        if parts.method == Method::GET || parts.method == Method::HEAD {
            if let Some(resp) = crate::openapi::serve(shared, trimmed) {
                return resp;
            }
            return crate::discovery::serve(shared, &parts, trimmed)
                .unwrap_or_else(|| body::status(&Status::path_not_found()));
        }
        return body::status(&Status::path_not_found());
    }
    let reply = resource_request(shared, &parts, body, user, info).await;
    reencode(reply.unwrap_or_else(|st| body::status(&st)), encoding).await
}

async fn resource_request(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: Bytes,
    user: Identity,
    info: RequestInfo,
) -> Reply {
    let def = shared
        .registry()
        .get(&info.api_group, &info.api_version, &info.resource)
        .ok_or_else(Status::path_not_found)?;
    let namespace = if def.behaviour.special == Special::Namespace {
        String::new()
    } else {
        info.namespace.clone()
    };
    if !def.namespaced && !namespace.is_empty() {
        return Err(Status::path_not_found().into());
    }
    let has_name = !info.name.is_empty() && !info.is_collection();
    if def.namespaced && namespace.is_empty() && (has_name || info.verb == Verb::Create) {
        return Err(match info.verb {
            Verb::Create => Status::method_not_supported(&def.group, &def.plural, "create"),
            _ => Status::path_not_found(),
        }
        .into());
    }
    let ctx = Ctx {
        shared,
        def: def.clone(),
        namespace,
        user,
        parts,
        body,
        info,
        warnings: std::sync::Mutex::default(),
    };
    let reply = dispatch(&ctx).await;
    let warnings = std::mem::take(&mut *ctx.warnings.lock().unwrap_or_else(|e| e.into_inner()));
    if warnings.is_empty() {
        return reply;
    }
    let mut resp = reply.unwrap_or_else(|st| body::status(&st));
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    Ok(resp)
}

/// Runs the verb of a resource request.
async fn dispatch(ctx: &Ctx<'_>) -> Reply {
    let def = ctx.def.clone();
    let sub = ctx.info.subresource.clone();
    let verb = ctx.info.verb.clone();
    if !sub.is_empty() {
        return subresources::dispatch(ctx, &sub, &verb).await;
    }
    let verb_name = verb.as_str();
    if !def.allows(verb_name) {
        return Err(Status::method_not_supported(&def.group, &def.plural, verb_name).into());
    }
    match verb {
        Verb::Get => read::get(ctx).await,
        Verb::List => read::list(ctx).await,
        Verb::Watch => crate::watch::watch(ctx).await,
        Verb::Create => write::create(ctx).await,
        Verb::Update => write::update(ctx, None).await,
        Verb::Patch => write::patch(ctx, None).await,
        Verb::Delete => delete::delete(ctx).await,
        Verb::DeleteCollection => delete::delete_collection(ctx).await,
        other => Err(Status::method_not_supported(&def.group, &def.plural, other.as_str()).into()),
    }
}

/// A JSON response holding one stored object as the request's version serves it (through the
/// CRD's conversion webhook when it has one).
pub(crate) async fn object_response(
    ctx: &Ctx<'_>,
    code: StatusCode,
    obj: &crate::storage::Obj,
) -> Reply {
    if crate::conversion::needs_webhook(&ctx.def, &obj.value) {
        return value_response(ctx, code, &obj.value).await;
    }
    Ok(body::json(
        code,
        crate::convert::served_json(&ctx.def, obj, false),
    ))
}

/// A JSON response holding an object value in its stored form (not stored: dry run, deleted)
/// as the request's version serves it.
pub(crate) async fn value_response(ctx: &Ctx<'_>, code: StatusCode, stored: &Value) -> Reply {
    let served = crate::conversion::served(ctx.shared, &ctx.def, stored).await?;
    Ok(body::json_value(code, &served))
}

/// Stored objects ready to be listed at the request's version: as they are, unless the CRD's
/// conversion webhook has to convert them (then all in one review).
pub(crate) async fn served_items(
    ctx: &Ctx<'_>,
    items: Vec<Arc<crate::storage::Obj>>,
) -> Result<Vec<Arc<crate::storage::Obj>>, Fail> {
    if !items
        .iter()
        .any(|o| crate::conversion::needs_webhook(&ctx.def, &o.value))
    {
        return Ok(items);
    }
    let values = items.iter().map(|o| o.value.clone()).collect();
    let served = crate::conversion::served_all(ctx.shared, &ctx.def, values).await?;
    Ok(served
        .into_iter()
        .map(|v| Arc::new(crate::storage::Obj::new(v)))
        .collect())
}

/// Creates the objects every cluster has: the four system namespaces and the `kubernetes`
/// Service, Endpoints and EndpointSlice in `default` pointing at this server.
pub(crate) fn bootstrap(shared: &Arc<Shared>) {
    let now = crate::meta::now_rfc3339();
    let port = shared.addr.port();
    shared.store.write(|t| {
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            t.put(
                "/namespaces",
                ns,
                json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": crate::meta::new_uid(), "creationTimestamp": now,
                        "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"}
                }),
            );
        }
        t.put(
            "/services",
            "default/kubernetes",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "uid": crate::meta::new_uid(),
                    "creationTimestamp": now,
                    "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                    "sessionAffinity": "None", "type": "ClusterIP"},
                "status": {"loadBalancer": {}}
            }),
        );
        t.put(
            "/endpoints",
            "default/kubernetes",
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default", "uid": crate::meta::new_uid(),
                    "creationTimestamp": now,
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
            }),
        );
        t.put(
            "discovery.k8s.io/endpointslices",
            "default/kubernetes",
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default", "uid": crate::meta::new_uid(),
                    "creationTimestamp": now, "generation": 1,
                    "labels": {"kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]
            }),
        );
    });
}

/// Creates an object from its JSON, as an administrator's POST would; answers the stored object
/// or the error Status, both as JSON.
pub(crate) async fn create_direct(shared: &Arc<Shared>, object: Value) -> Result<Value, Value> {
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind = object["kind"].as_str().unwrap_or("").to_owned();
    let err = |st: Fail| serde_json::to_value(&*st).unwrap_or(Value::Null);
    let (group, version) = crate::server::split_api_version(&api_version);
    let def = shared
        .registry()
        .all()
        .find(|d| d.group == group && d.version == version && d.kind == kind)
        .cloned()
        .ok_or_else(|| err(Status::path_not_found().into()))?;
    let namespace = if def.namespaced {
        crate::meta::meta_str(&object, "namespace").to_owned()
    } else {
        String::new()
    };
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let path = if namespace.is_empty() {
        format!("{prefix}/{}", def.plural)
    } else {
        format!("{prefix}/namespaces/{namespace}/{}", def.plural)
    };
    let req = http::Request::post(&path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(())
        .map_err(|e| err(Status::internal(e).into()))?;
    let (parts, ()) = req.into_parts();
    let info = RequestInfo::parse("POST", &path, None)
        .map_err(|e| err(Status::bad_request(e.to_string()).into()))?;
    let ctx = Ctx {
        shared,
        def,
        namespace,
        user: Identity::new("admin", &["system:masters", "system:authenticated"]),
        parts: &parts,
        body: Bytes::from(serde_json::to_vec(&object).unwrap_or_default()),
        info,
        warnings: std::sync::Mutex::default(),
    };
    let resp = write::create(&ctx).await.map_err(err)?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&bytes).map_err(|e| err(Status::internal(e).into()))
}
