//! Offline reads: get, list (streamed from one store snapshot) and non-resource documents.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Frame;
use tokio::sync::mpsc;
use yurt_core::{RequestInfo, Status};

use super::endpoints::{self, PodView};
use super::{CHUNK_BYTES, Inner, gvr_of, json_response};
use crate::body::{Body, BoxError};
use crate::store::{Gvr, ListMeta, ListScope, ObjectKey, Snapshot, Store, StoreError, rv};

/// A get: the cached object or 404.
pub(super) async fn get(inner: &Arc<Inner>, info: &RequestInfo, component: &str) -> Response<Body> {
    let gvr = gvr_of(info);
    let key = ObjectKey::new(component, &gvr, &info.namespace, &info.name);
    let rewrite = endpoints::applies_to(&gvr);
    let node = inner.config.node_name.clone();
    let found = inner
        .store
        .read_snapshot(move |snap| {
            let Some(obj) = snap.get(&key)? else {
                return Ok(None);
            };
            if rewrite {
                let pods = endpoints::load_pods(snap, &node)?;
                if let Some(new) = endpoints::rewrite(&gvr, &obj.json, &pods) {
                    return Ok(Some(Bytes::from(new)));
                }
            }
            Ok(Some(obj.json))
        })
        .await;
    match found {
        Ok(Some(json)) => {
            // Items cached from a list carry no kind; a GET answer has one.
            let json = match serde_json::from_slice::<serde_json::Value>(&json) {
                Ok(mut v) if v["kind"].as_str().unwrap_or("").is_empty() => {
                    if let Some(kind) = object_kind(inner, &gvr_of(info), component).await {
                        v["kind"] = serde_json::Value::String(kind);
                        v["apiVersion"] = serde_json::Value::String(api_version_of(&gvr_of(info)));
                    }
                    Bytes::from(v.to_string())
                }
                _ => json,
            };
            json_response(StatusCode::OK, json)
        }
        Ok(None) => Status::not_found(&info.api_group, &info.resource, &info.name).to_response(),
        Err(e) => store_failure(e),
    }
}

/// A non-resource document from the store, in the form the client's `Accept` asks for (or
/// the plain form when it also takes JSON), with the content type it was answered with; 404
/// if it was never fetched.
pub(super) async fn document(
    inner: &Arc<Inner>,
    info: &RequestInfo,
    headers: &http::HeaderMap,
) -> Response<Body> {
    use crate::cache::document;
    let form = document::form(headers);
    let mut keys = vec![document::key(&info.path, form.as_deref())];
    if form.is_some() && document::takes_json(headers) {
        keys.push(document::key(&info.path, None));
    }
    for key in keys {
        match inner.store.get_nonresource(&key).await {
            Ok(Some(stored)) => {
                let (content_type, body) = document::decode(stored);
                let mut resp = json_response(StatusCode::OK, body);
                if let Ok(v) = http::HeaderValue::from_str(&content_type) {
                    resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
                }
                return resp;
            }
            Ok(None) => {}
            Err(e) => return store_failure(e),
        }
    }
    Status::path_not_found().to_response()
}

/// A successful offline JSON answer of one object re-encoded as protobuf (the client's
/// `Accept` asked for it); any other answer (an error `Status`, a kind without a protobuf
/// form) is returned as it is, as the apiserver answers a `Status` in JSON.
pub(super) async fn as_protobuf(inner: &Arc<Inner>, resp: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !resp.status().is_success() || !is_json {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_TABLE_SOURCE);
    let bytes = match tokio::time::timeout(inner.store.op_timeout(), limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => return Status::internal(e).to_response(),
        Err(_) => return store_failure(StoreError::Timeout(inner.store.op_timeout())),
    };
    let encoded = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| yurt_core::protobuf::encode(&v).ok());
    match encoded {
        Some(pb) => {
            head.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(yurt_core::protobuf::MEDIA_TYPE),
            );
            head.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(head, Body::from(Bytes::from(pb)))
        }
        None => Response::from_parts(head, Body::from(bytes)),
    }
}

/// Largest offline answer turned into a Table.
const MAX_TABLE_SOURCE: usize = 64 << 20;

/// A successful offline get or list answer as a server-side Table (see
/// [`yurt_core::table`]); an error answer is returned as it is.
pub(super) async fn as_table(
    inner: &Arc<Inner>,
    resp: Response<Body>,
    info: &RequestInfo,
    include: yurt_core::table::IncludeObject,
    list: bool,
) -> Response<Body> {
    use http_body_util::BodyExt;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_TABLE_SOURCE);
    let bytes = match tokio::time::timeout(inner.store.op_timeout(), limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => return Status::internal(e).to_response(),
        Err(_) => return store_failure(StoreError::Timeout(inner.store.op_timeout())),
    };
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Status::internal("a cached answer is not JSON").to_response();
    };
    let (objects, rv) = if list {
        let rv = doc["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        (
            match doc["items"].take() {
                serde_json::Value::Array(items) => items,
                _ => Vec::new(),
            },
            rv,
        )
    } else {
        let rv = doc["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        (vec![doc], rv)
    };
    let table = yurt_core::table::table(
        &info.api_group,
        &info.resource,
        &objects,
        include,
        &rv,
        std::time::SystemTime::now(),
    );
    let mut resp = json_response(StatusCode::OK, table.to_string());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(yurt_core::table::TABLE_CONTENT_TYPE),
    );
    resp
}

/// What the list producer sends.
enum Msg {
    /// The next part of the body.
    Data(Bytes),
    /// The scan selected nothing; the scope's recorded list, if it was ever listed.
    Empty(Option<ListMeta>),
    /// The scan failed.
    Failed(StoreError),
}

/// A list: the component's cached scope, selectors applied here, streamed in chunks.
pub(super) async fn list(
    inner: &Arc<Inner>,
    info: &RequestInfo,
    component: &str,
) -> Response<Body> {
    let gvr = gvr_of(info);
    let scope = match super::scope_of(info, component) {
        Ok(s) => s,
        Err(status) => return status.to_response(),
    };
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let store = inner.store.clone();
    let node = inner.config.node_name.clone();
    // Owned by the response: it ends when the scan ends or the receiver (the body) is gone.
    tokio::task::spawn_blocking(move || {
        let result = store
            .snapshot()
            .and_then(|snap| produce(&snap, &scope, &node, &tx));
        if let Err(e) = result {
            let _ = tx.blocking_send(Msg::Failed(e));
        }
    });
    let timeout = inner.store.op_timeout();
    let first = match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => return Status::internal("the local list ended early").to_response(),
        Err(_) => return store_failure(StoreError::Timeout(timeout)),
    };
    match first {
        Msg::Failed(e) => store_failure(e),
        Msg::Empty(_) if component == "kubelet" && gvr == Gvr::new("", "v1", "pods") => {
            // An empty pod list would make kubelet delete every pod it runs.
            Status::not_found("", "pods", "").to_response()
        }
        Msg::Empty(None) => {
            // Never listed and nothing cached: an empty list would read as "there is none" (a
            // client would drop what it holds); say the truth, the cache cannot answer yet.
            Status::service_unavailable(format!(
                "the cloud is unreachable and {component} never listed {} here",
                info.resource
            ))
            .with_retry_after(1)
            .to_response()
        }
        Msg::Empty(Some(meta)) => {
            let (kind, api_version) = list_kind(inner, &gvr, component).await;
            let body = serde_json::json!({
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": meta.resource_version},
                "items": [],
            });
            json_response(StatusCode::OK, body.to_string())
        }
        Msg::Data(head) => {
            let rest = futures::stream::unfold((rx, timeout), |(mut rx, timeout)| async move {
                let item: Result<Frame<Bytes>, BoxError> =
                    match tokio::time::timeout(timeout, rx.recv()).await {
                        Ok(Some(Msg::Data(b))) => Ok(Frame::data(b)),
                        Ok(Some(Msg::Failed(e))) => Err(Box::new(e)),
                        Ok(Some(Msg::Empty(_))) | Ok(None) => return None,
                        Err(_) => Err(Box::new(StoreError::Timeout(timeout))),
                    };
                Some((item, (rx, timeout)))
            });
            let first = futures::stream::once(async move { Ok::<_, BoxError>(Frame::data(head)) });
            let stream = futures::StreamExt::chain(first, rest);
            let mut resp = Response::new(Body::new(http_body_util::StreamBody::new(stream)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
    }
}

/// Scans `scope` in `snap` and sends the list body in chunks (see the module docs).
fn produce(
    snap: &Snapshot,
    scope: &ListScope,
    node: &str,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), StoreError> {
    let pods: Option<PodView> = if endpoints::applies_to(&scope.gvr) {
        Some(endpoints::load_pods(snap, node)?)
    } else {
        None
    };
    let meta = snap.list_meta(&scope.key())?;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut count = 0usize;
    let mut best: Option<String> = None;
    let mut gone = false;
    snap.scan(scope, |item_rv, json| {
        if count == 0 {
            let (kind, api_version) = match &meta {
                Some(m) if !m.kind.is_empty() => (m.kind.clone(), api_version_of(&scope.gvr)),
                _ => (
                    item_kind(json)
                        .map(|k| format!("{k}List"))
                        .unwrap_or_default(),
                    api_version_of(&scope.gvr),
                ),
            };
            buf.extend_from_slice(b"{\"kind\":");
            buf.extend_from_slice(serde_json::Value::String(kind).to_string().as_bytes());
            buf.extend_from_slice(b",\"apiVersion\":");
            buf.extend_from_slice(
                serde_json::Value::String(api_version)
                    .to_string()
                    .as_bytes(),
            );
            buf.extend_from_slice(b",\"items\":[");
        } else {
            buf.push(b',');
        }
        match pods
            .as_ref()
            .and_then(|p| endpoints::rewrite(&scope.gvr, json, p))
        {
            Some(new) => buf.extend_from_slice(&new),
            None => buf.extend_from_slice(json),
        }
        count += 1;
        if best.as_deref().is_none_or(|b| rv::is_older(b, item_rv)) {
            best = Some(item_rv.to_owned());
        }
        if buf.len() >= CHUNK_BYTES {
            let chunk = Bytes::from(std::mem::replace(
                &mut buf,
                Vec::with_capacity(CHUNK_BYTES + 4096),
            ));
            if tx.blocking_send(Msg::Data(chunk)).is_err() {
                gone = true;
                return false;
            }
        }
        true
    })?;
    if gone {
        return Ok(());
    }
    if count == 0 {
        let _ = tx.blocking_send(Msg::Empty(meta));
        return Ok(());
    }
    let rv = best.unwrap_or_default();
    buf.extend_from_slice(b"],\"metadata\":{\"resourceVersion\":");
    buf.extend_from_slice(serde_json::Value::String(rv).to_string().as_bytes());
    buf.extend_from_slice(b"}}");
    let _ = tx.blocking_send(Msg::Data(Bytes::from(buf)));
    Ok(())
}

/// `apiVersion` of a resource type: `v1` or `group/version`.
pub(super) fn api_version_of(gvr: &Gvr) -> String {
    if gvr.group.is_empty() {
        gvr.version.clone()
    } else {
        format!("{}/{}", gvr.group, gvr.version)
    }
}

/// The `kind` of an object's JSON.
fn item_kind(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct K {
        kind: Option<String>,
    }
    serde_json::from_slice::<K>(json).ok()?.kind
}

/// The list kind and apiVersion of a resource type for `component`: from a recorded list of
/// it, else a cached object of it, else the cached discovery document, else empty.
pub(super) async fn list_kind(inner: &Arc<Inner>, gvr: &Gvr, component: &str) -> (String, String) {
    let kind = object_kind(inner, gvr, component).await;
    (
        kind.map(|k| format!("{k}List")).unwrap_or_default(),
        api_version_of(gvr),
    )
}

/// The `kind` of a resource type's objects, as [`list_kind`] finds it.
pub(super) async fn object_kind(inner: &Arc<Inner>, gvr: &Gvr, component: &str) -> Option<String> {
    let gvr2 = gvr.clone();
    let component = component.to_owned();
    let from_store = inner
        .store
        .read_snapshot(move |snap| {
            // A recorded list of the resource, this component's first, then any component's.
            let kind_of = |metas: Vec<(crate::store::ListScopeKey, crate::store::ListMeta)>| {
                metas
                    .into_iter()
                    .filter(|(k, _)| k.gvr == gvr2)
                    .find_map(|(_, m)| {
                        m.kind
                            .strip_suffix("List")
                            .filter(|k| !k.is_empty())
                            .map(str::to_owned)
                    })
            };
            if let Some(k) = kind_of(snap.scopes(&component)?) {
                return Ok(Some(k));
            }
            for other in snap.components()? {
                if let Some(k) = kind_of(snap.scopes(&other)?) {
                    return Ok(Some(k));
                }
            }
            // A cached object that carries its kind (from a get or a watch event).
            let scope = ListScope::parse(&component, &gvr2, "", "", "")?;
            let mut kind = None;
            snap.scan(&scope, |_, json| {
                kind = item_kind(json);
                kind.is_none()
            })?;
            Ok(kind)
        })
        .await
        .ok()
        .flatten();
    if from_store.is_some() {
        return from_store;
    }
    let path = if gvr.group.is_empty() {
        format!("/api/{}", gvr.version)
    } else {
        format!("/apis/{}/{}", gvr.group, gvr.version)
    };
    let from_discovery = async {
        let doc = inner.store.get_nonresource(&path).await.ok().flatten()?;
        let (_, doc) = crate::cache::document::decode(doc);
        let v: serde_json::Value = serde_json::from_slice(&doc).ok()?;
        v["resources"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == gvr.resource.as_str())
            .and_then(|r| r["kind"].as_str())
            .map(str::to_owned)
    };
    if let Some(k) = from_discovery.await {
        return Some(k);
    }
    builtin_kind(&gvr.group, &gvr.resource).map(str::to_owned)
}

/// The kinds of the built-in resources edge components read most.
fn builtin_kind(group: &str, resource: &str) -> Option<&'static str> {
    Some(match (group, resource) {
        ("", "pods") => "Pod",
        ("", "nodes") => "Node",
        ("", "services") => "Service",
        ("", "endpoints") => "Endpoints",
        ("", "configmaps") => "ConfigMap",
        ("", "secrets") => "Secret",
        ("", "namespaces") => "Namespace",
        ("", "events") => "Event",
        ("", "serviceaccounts") => "ServiceAccount",
        ("", "persistentvolumes") => "PersistentVolume",
        ("", "persistentvolumeclaims") => "PersistentVolumeClaim",
        ("discovery.k8s.io", "endpointslices") => "EndpointSlice",
        ("coordination.k8s.io", "leases") => "Lease",
        ("events.k8s.io", "events") => "Event",
        ("storage.k8s.io", "csidrivers") => "CSIDriver",
        ("storage.k8s.io", "csinodes") => "CSINode",
        ("node.k8s.io", "runtimeclasses") => "RuntimeClass",
        _ => return None,
    })
}

/// The 500 Status for a store failure.
pub(super) fn store_failure(e: StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "local cache read failed");
    Status::internal(format!("the local cache failed: {e}")).to_response()
}
