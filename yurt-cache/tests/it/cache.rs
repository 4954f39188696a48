//! The cache layer through the real stack (RequestInfoLayer -> CacheLayer -> recorder ->
//! Balancer -> UpstreamClient) against a TestApiServer over loopback: what is teed into the
//! store, what passes through untouched, and that a tee never disturbs the client's stream.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::{Layer, ServiceBuilder, ServiceExt};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::body::Body;
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::request_info::RequestInfoLayer;
use yurt_cache::store::{Gvr, ListScope, ObjectKey, RedbStore, Store};
use yurt_testkit::TestApiServer;

use crate::net::{WAIT, bytes, plain_client, uri};

const KUBELET: &str = "kubelet/v1.36.0 (linux/amd64)";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

struct Hub {
    server: TestApiServer,
    checker: HealthChecker,
    store: RedbStore,
    layer: CacheLayer,
    /// Request headers as the balancer received them, per path.
    upstream_headers: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    _dir: TempDir,
}

async fn hub() -> Hub {
    let server = TestApiServer::start().await.unwrap();
    let config = HealthConfig::readyz()
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&server)], config);
    let mut rx = checker.subscribe();
    crate::health::wait_for(&mut rx, |s| s.servers[0].healthy).await;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::util::open(dir.path());
    let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults("node-1"));
    let layer = CacheLayer::new(store.clone(), agents);
    Hub {
        server,
        checker,
        store,
        layer,
        upstream_headers: Arc::default(),
        _dir: dir,
    }
}

impl Hub {
    async fn send(&self, req: Request<Body>) -> Response<Body> {
        let seen = self.upstream_headers.clone();
        let balancer = Balancer::new(plain_client(), self.checker.subscribe(), Strategy::Priority);
        let svc = ServiceBuilder::new()
            .layer(RequestInfoLayer::new())
            .layer(self.layer.clone())
            .map_request(move |req: Request<Body>| {
                seen.lock()
                    .unwrap()
                    .push((req.uri().path().to_owned(), req.headers().clone()));
                req
            })
            .service(balancer);
        tokio::time::timeout(WAIT, svc.oneshot(req))
            .await
            .expect("an answer within the wait bound")
            .unwrap()
    }

    /// Sends and reads the whole answer (test side), then waits for every tee to finish.
    async fn call(&self, req: Request<Body>) -> (u16, Value) {
        let resp = self.send(req).await;
        let status = resp.status().as_u16();
        let body = bytes(resp).await;
        self.settled().await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Waits (bounded) until no tee task runs.
    async fn settled(&self) {
        let metrics = self.layer.metrics().clone();
        eventually(|| {
            let m = metrics.clone();
            async move { m.active_tees.get() == 0 }
        })
        .await;
    }

    fn upstream_accept(&self, path: &str) -> Option<String> {
        let seen = self.upstream_headers.lock().unwrap();
        let (_, h) = seen.iter().rev().find(|(p, _)| p == path)?;
        h.get("accept").map(|v| v.to_str().unwrap().to_owned())
    }

    async fn shutdown(self) {
        self.store.shutdown().await;
        self.checker.shutdown().await;
    }
}

/// Polls `f` until it holds, failing the test after [`WAIT`].
async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition within the wait bound");
}

fn req(method: &str, path: &str, ua: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", ua)
        .body(Body::empty())
        .unwrap()
}

fn cms() -> Gvr {
    Gvr::new("", "v1", "configmaps")
}

async fn create_cm(server: &TestApiServer, name: &str, app: &str) -> Value {
    server
        .create_object(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "data": {"k": name},
        }))
        .await
        .unwrap()
}

async fn create_pod(server: &TestApiServer, name: &str, node: Option<&str>) {
    let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    server
        .create_object(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }))
        .await
        .unwrap();
}

fn scope(component: &str, gvr: &Gvr, ns: &str, labels: &str, fields: &str) -> ListScope {
    ListScope::parse(component, gvr, ns, labels, fields).unwrap()
}

/// (name, resourceVersion) of stored items, sorted.
async fn stored(store: &RedbStore, scope: &ListScope) -> Vec<(String, String)> {
    let list = store.list(scope).await.unwrap();
    let mut out: Vec<(String, String)> = list
        .items
        .iter()
        .map(|i| {
            let v: Value = serde_json::from_slice(&i.json).unwrap();
            (
                v["metadata"]["name"].as_str().unwrap().to_owned(),
                i.resource_version.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

/// (name, resourceVersion) of a list answer's items, sorted.
fn listed(list: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_owned(),
                i["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn get_stored(store: &RedbStore, gvr: &Gvr, name: &str) -> Option<String> {
    store
        .get(&ObjectKey::new("kubelet", gvr, "default", name))
        .await
        .unwrap()
        .map(|o| o.resource_version)
}

/// Reads a watch body until an event of type `ty` for `name` arrives; returns the events read.
async fn read_until(body: &mut Body, ty: &str, name: &str, buf: &mut Vec<u8>) -> Vec<Value> {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = body.frame().await.expect("stream open").unwrap();
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
            }
            let text = String::from_utf8_lossy(buf).into_owned();
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if events
                .iter()
                .any(|e| e["type"] == ty && e["object"]["metadata"]["name"] == name)
            {
                return events;
            }
        }
    })
    .await
    .expect("the event within the wait bound")
}

#[tokio::test]
async fn kubelet_get_list_and_watch_mirror_the_apiserver() {
    let h = hub().await;
    let pods = Gvr::new("", "v1", "pods");
    create_pod(&h.server, "bound-1", Some("node-1")).await;
    create_pod(&h.server, "bound-2", Some("node-2")).await;
    create_pod(&h.server, "pending", None).await;

    // get: stored with the apiserver's resourceVersion; an unbound pod is not stored.
    let (status, got) = h
        .call(req(
            "GET",
            "/api/v1/namespaces/default/pods/bound-1",
            KUBELET,
        ))
        .await;
    assert_eq!(status, 200);
    let direct = h
        .server
        .get_object("v1", "pods", "default", "bound-1")
        .unwrap();
    assert_eq!(
        got["metadata"]["resourceVersion"],
        direct["metadata"]["resourceVersion"]
    );
    assert_eq!(
        get_stored(&h.store, &pods, "bound-1").await.as_deref(),
        direct["metadata"]["resourceVersion"].as_str()
    );
    let (status, _) = h
        .call(req(
            "GET",
            "/api/v1/namespaces/default/pods/pending",
            KUBELET,
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(get_stored(&h.store, &pods, "pending").await, None);

    // list: the scope holds exactly the bound pods the apiserver listed, with their RVs.
    let (status, list) = h
        .call(req("GET", "/api/v1/namespaces/default/pods", KUBELET))
        .await;
    assert_eq!(status, 200);
    let all = scope("kubelet", &pods, "default", "", "");
    let want: Vec<_> = listed(&list)
        .into_iter()
        .filter(|(n, _)| n != "pending")
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(stored(&h.store, &all).await, want);
    let meta = h
        .store
        .list(&all)
        .await
        .unwrap()
        .meta
        .expect("scope recorded");
    assert_eq!(meta.resource_version, list["metadata"]["resourceVersion"]);
    assert_eq!(meta.kind, "PodList");

    // watch of configmaps: ADDED and DELETED events land in the store.
    let (_, cml) = h.call(req("GET", CMS, KUBELET)).await;
    let rv = cml["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = h
        .send(req(
            "GET",
            &format!("{CMS}?watch=true&resourceVersion={rv}"),
            KUBELET,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let created = create_cm(&h.server, "w1", "a").await;
    create_cm(&h.server, "w2", "b").await;
    read_until(&mut body, "ADDED", "w2", &mut buf).await;
    // While the watch is open, w1's event is committed to the store.
    let crv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = h.store.clone();
    eventually(|| {
        let store = store.clone();
        let crv = crv.clone();
        async move { get_stored(&store, &cms(), "w1").await == Some(crv) }
    })
    .await;
    // A delete by an uncached client reaches the store through the kubelet's watch.
    // (`send`, not `call`: the watch's own tee stays active while it is open.)
    let resp = h
        .send(req("DELETE", &format!("{CMS}/w2"), "kubectl/v1.36.0"))
        .await;
    assert_eq!(resp.status(), 200);
    let _ = bytes(resp).await;
    read_until(&mut body, "DELETED", "w2", &mut buf).await;
    let store = h.store.clone();
    eventually(|| {
        let store = store.clone();
        async move { get_stored(&store, &cms(), "w2").await.is_none() }
    })
    .await;
    drop(body);
    h.settled().await;
    // The store's cluster-wide view equals the apiserver's (listed by an uncached client).
    let (_, direct) = h.call(req("GET", CMS, "kubectl/v1.36.0")).await;
    let cm_scope = scope("kubelet", &cms(), "", "", "");
    assert_eq!(stored(&h.store, &cm_scope).await, listed(&direct));
    assert_eq!(listed(&direct).len(), 1);
    assert!(h.layer.metrics().cached_count("watch") >= 1);
    assert_eq!(h.layer.metrics().cached_count("list"), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn every_label_scope_is_cached_and_a_relist_drops_deleted_objects() {
    let h = hub().await;
    for (name, app) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        create_cm(&h.server, name, app).await;
    }
    let (sa, la) = h
        .call(req("GET", &format!("{CMS}?labelSelector=app%3Da"), KUBELET))
        .await;
    let (sb, lb) = h
        .call(req("GET", &format!("{CMS}?labelSelector=app%3Db"), KUBELET))
        .await;
    assert_eq!((sa, sb), (200, 200));
    let scope_a = scope("kubelet", &cms(), "default", "app=a", "");
    let scope_b = scope("kubelet", &cms(), "default", "app=b", "");
    assert_eq!(stored(&h.store, &scope_a).await, listed(&la));
    assert_eq!(stored(&h.store, &scope_b).await, listed(&lb));
    assert_eq!(listed(&la).len(), 2);
    // A metadata.name field selector is one more scope, holding that one object.
    let (_, one) = h
        .call(req(
            "GET",
            &format!("{CMS}?fieldSelector=metadata.name%3Db1"),
            KUBELET,
        ))
        .await;
    let scope_b1 = scope("kubelet", &cms(), "default", "", "metadata.name=b1");
    assert_eq!(listed(&one).len(), 1);
    assert_eq!(stored(&h.store, &scope_b1).await, listed(&one));
    let scopes = h.store.scopes("kubelet").await.unwrap();
    assert_eq!(scopes.len(), 3, "{scopes:?}");

    // A delete through the hub is not cached: the store keeps a2 until a relist.
    let (status, _) = h.call(req("DELETE", &format!("{CMS}/a2"), KUBELET)).await;
    assert_eq!(status, 200);
    assert!(get_stored(&h.store, &cms(), "a2").await.is_some());
    assert!(
        h.server
            .get_object("v1", "configmaps", "default", "a2")
            .is_none()
    );

    let (_, la2) = h
        .call(req("GET", &format!("{CMS}?labelSelector=app%3Da"), KUBELET))
        .await;
    assert_eq!(listed(&la2).len(), 1);
    assert_eq!(stored(&h.store, &scope_a).await, listed(&la2));
    assert_eq!(get_stored(&h.store, &cms(), "a2").await, None);
    assert_eq!(
        stored(&h.store, &scope_b).await,
        listed(&lb),
        "sibling scope untouched"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn uncached_components_errors_and_streaming_subresources_leave_the_store_alone() {
    let h = hub().await;
    create_cm(&h.server, "c1", "a").await;
    create_pod(&h.server, "p", Some("node-1")).await;

    let (status, _) = h.call(req("GET", CMS, "kubectl/v1.36.0")).await;
    assert_eq!(status, 200);
    let (status, _) = h.call(req("GET", &format!("{CMS}/missing"), KUBELET)).await;
    assert_eq!(status, 404);
    let (status, _) = h
        .call(req(
            "POST",
            "/api/v1/namespaces/default/pods/p/exec?command=ls",
            KUBELET,
        ))
        .await;
    assert_ne!(status, 200);
    let resp = h
        .send(req(
            "GET",
            "/api/v1/namespaces/default/pods/p/proxy/",
            KUBELET,
        ))
        .await;
    let _ = bytes(resp).await;
    h.settled().await;
    let (status, _) = h.call(req("GET", "/healthz", KUBELET)).await;
    assert_eq!(status, 200);

    let usage = h.store.usage().await.unwrap();
    assert_eq!((usage.objects, usage.lists, usage.nonresource), (0, 0, 0));
    assert!(h.store.components().await.unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn accept_negotiation_asks_for_json_or_passes_through() {
    let h = hub().await;
    create_cm(&h.server, "c1", "a").await;
    let path = format!("{CMS}/c1");

    // client-go's default: protobuf preferred, anything accepted -> JSON, cached.
    let mut r = req("GET", &path, KUBELET);
    r.headers_mut().insert(
        "accept",
        "application/vnd.kubernetes.protobuf, */*".parse().unwrap(),
    );
    r.headers_mut()
        .insert("accept-encoding", "gzip".parse().unwrap());
    let resp = h.send(r).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body = bytes(resp).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["metadata"]["name"], "c1");
    h.settled().await;
    assert_eq!(
        h.upstream_accept(&path).as_deref(),
        Some("application/json")
    );
    {
        let seen = h.upstream_headers.lock().unwrap();
        assert!(!seen.last().unwrap().1.contains_key("accept-encoding"));
    }
    assert!(get_stored(&h.store, &cms(), "c1").await.is_some());

    // Table with includeObject left to the server: the Accept goes upstream untouched, the
    // rows are asked with whole objects, and they are cached as the list of the scope.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let mut r = req("GET", CMS, KUBELET);
    r.headers_mut().insert("accept", table.parse().unwrap());
    let resp = h.send(r).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("as=Table")
    );
    let v: Value = serde_json::from_slice(&bytes(resp).await).unwrap();
    assert_eq!(v["kind"], "Table");
    assert_eq!(v["rows"][0]["cells"][0], "c1");
    h.settled().await;
    assert_eq!(h.upstream_accept(CMS).as_deref(), Some(table));
    let rec = h.server.traffic();
    let last = rec.records.iter().rev().find(|r| r.path == CMS).unwrap();
    assert!(
        last.query.contains("includeObject=Object"),
        "{}",
        last.query
    );
    assert_eq!(h.store.scopes("kubelet").await.unwrap().len(), 1);

    // A Table asked with only metadata passes through as asked, not cached.
    let mut r = req(
        "GET",
        &format!("{CMS}?includeObject=Metadata&labelSelector=x%3Dy"),
        KUBELET,
    );
    r.headers_mut().insert("accept", table.parse().unwrap());
    let resp = h.send(r).await;
    assert_eq!(resp.status(), 200);
    let _ = bytes(resp).await;
    h.settled().await;
    assert_eq!(h.store.scopes("kubelet").await.unwrap().len(), 1);

    // Protobuf only: passed through (the testkit answers 406), not cached.
    let mut r = req("GET", CMS, KUBELET);
    r.headers_mut().insert(
        "accept",
        "application/vnd.kubernetes.protobuf".parse().unwrap(),
    );
    let (status, _) = h.call(r).await;
    assert_eq!(status, 406);
    assert_eq!(
        h.upstream_accept(CMS).as_deref(),
        Some("application/vnd.kubernetes.protobuf")
    );
    assert_eq!(h.store.scopes("kubelet").await.unwrap().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn version_and_discovery_documents_are_cached() {
    let h = hub().await;
    for path in ["/version", "/api"] {
        let resp = h.send(req("GET", path, KUBELET)).await;
        assert_eq!(resp.status(), 200);
        let body = bytes(resp).await;
        h.settled().await;
        assert_eq!(
            h.store.get_nonresource(path).await.unwrap().as_deref(),
            Some(&body[..]),
            "{path}"
        );
    }
    assert_eq!(h.layer.metrics().cached_count("nonresource"), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_watch_dropped_mid_stream_ends_its_tee_and_keeps_what_was_delivered() {
    let h = hub().await;
    let resp = h
        .send(req("GET", &format!("{CMS}?watch=true"), KUBELET))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    create_cm(&h.server, "d1", "a").await;
    read_until(&mut body, "ADDED", "d1", &mut buf).await;
    assert_eq!(h.layer.metrics().active_tees.get(), 1);
    drop(body);
    h.settled().await;
    assert!(get_stored(&h.store, &cms(), "d1").await.is_some());
    let server = &h.server;
    eventually(|| async { server.open_watches() == 0 }).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_failing_tee_does_not_break_the_clients_list() {
    let h = hub().await;
    for i in 0..20 {
        create_cm(&h.server, &format!("c{i}"), "a").await;
    }
    h.store.shutdown().await;
    let (status, list) = h.call(req("GET", CMS, KUBELET)).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&list).len(), 20);
    assert_eq!(h.layer.metrics().failure_count("store"), 1);
    h.checker.shutdown().await;
}

/// The layer composes with `Layer::layer` directly too (no ServiceBuilder).
#[tokio::test]
async fn the_layer_wraps_any_inner_service() {
    let h = hub().await;
    let balancer = Balancer::new(plain_client(), h.checker.subscribe(), Strategy::Priority);
    let svc = RequestInfoLayer::new().layer(h.layer.layer(balancer));
    let resp = tokio::time::timeout(WAIT, svc.oneshot(req("GET", "/api/v1/namespaces", KUBELET)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = bytes(resp).await;
    h.settled().await;
    let all = scope("kubelet", &Gvr::new("", "v1", "namespaces"), "", "", "");
    assert!(!stored(&h.store, &all).await.is_empty());
    h.shutdown().await;
}

fn with_body(method: &str, path: &str, content_type: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", KUBELET)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn writes_by_a_cached_component_store_the_answer_but_dry_runs_do_not() {
    let h = hub().await;
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "w", "namespace": "default"}, "data": {"k": "1"},
    });
    let (status, created) = h
        .call(with_body("POST", CMS, "application/json", cm.clone()))
        .await;
    assert_eq!(status, 201);
    let rv = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(get_stored(&h.store, &cms(), "w").await, Some(rv(&created)));

    let mut updated = created.clone();
    updated["data"]["k"] = json!("2");
    let (status, updated) = h
        .call(with_body(
            "PUT",
            &format!("{CMS}/w"),
            "application/json",
            updated,
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(get_stored(&h.store, &cms(), "w").await, Some(rv(&updated)));

    let (status, patched) = h
        .call(with_body(
            "PATCH",
            &format!("{CMS}/w"),
            "application/merge-patch+json",
            json!({"data": {"k": "3"}}),
        ))
        .await;
    assert_eq!(status, 200);
    let stored_obj = h
        .store
        .get(&ObjectKey::new("kubelet", &cms(), "default", "w"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_obj.resource_version, rv(&patched));
    let v: Value = serde_json::from_slice(&stored_obj.json).unwrap();
    assert_eq!(v["data"]["k"], "3");

    let mut dry = cm;
    dry["metadata"]["name"] = json!("dry");
    let (status, _) = h
        .call(with_body(
            "POST",
            &format!("{CMS}?dryRun=All"),
            "application/json",
            dry,
        ))
        .await;
    assert_eq!(status, 201);
    assert!(
        h.server
            .get_object("v1", "configmaps", "default", "dry")
            .is_none()
    );
    assert_eq!(get_stored(&h.store, &cms(), "dry").await, None);
    assert_eq!(h.layer.metrics().cached_count("object"), 3);
    h.shutdown().await;
}

/// A list answer in `chunks` pieces, all ready at once (a stream that never waits).
fn chunked_list(items: &[&str], chunks: usize) -> Response<Body> {
    let items: Vec<Value> = items
        .iter()
        .map(|n| json!({"kind": "ConfigMap", "metadata": {"name": n, "namespace": "default", "resourceVersion": "5"}}))
        .collect();
    let text = json!({"kind": "ConfigMapList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "5"}, "items": items})
    .to_string();
    let size = text.len().div_ceil(chunks);
    let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = text
        .as_bytes()
        .chunks(size)
        .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
        .collect();
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::new(http_body_util::StreamBody::new(
            futures::stream::iter(frames),
        )))
        .unwrap()
}

/// On a current-thread runtime the tee task cannot run while the client reads chunks that are
/// all ready, so with room for one chunk it deterministically falls behind: the client still
/// gets every byte, and the scope keeps its previous contents.
#[tokio::test(flavor = "current_thread")]
async fn a_tee_that_falls_behind_gives_up_without_touching_the_client_or_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::util::open(dir.path());
    let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults("node-1"));
    let layer = CacheLayer::new(store.clone(), agents).tee_capacity(1);
    let answers = Arc::new(Mutex::new(vec![
        chunked_list(&["new-1", "new-2"], 4),
        chunked_list(&["old"], 1),
    ]));
    let inner = tower::service_fn(move |_req: Request<Body>| {
        let resp = answers.lock().unwrap().pop().unwrap();
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let svc = RequestInfoLayer::new().layer(layer.clone().layer(inner));
    let metrics = layer.metrics().clone();
    let settled = || {
        let m = metrics.clone();
        eventually(move || {
            let m = m.clone();
            async move { m.active_tees.get() == 0 }
        })
    };
    let all = scope("kubelet", &cms(), "default", "", "");

    let resp = svc.clone().oneshot(req("GET", CMS, KUBELET)).await.unwrap();
    let _ = bytes(resp).await;
    settled().await;
    assert_eq!(
        stored(&store, &all).await,
        [("old".to_owned(), "5".to_owned())]
    );

    let resp = svc.oneshot(req("GET", CMS, KUBELET)).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes(resp).await).unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        2,
        "the client got it all"
    );
    settled().await;
    assert_eq!(metrics.failure_count("overflow"), 1);
    assert_eq!(
        stored(&store, &all).await,
        [("old".to_owned(), "5".to_owned())]
    );
    store.shutdown().await;
}

/// A real kube-apiserver answers the OpenAPI v3 root as `text/plain` and aggregated
/// discovery with its own media type; the testkit serves neither, so an upstream answering as
/// kube-apiserver v1.36 does stands in for it. Each document is stored in its form with its
/// content type and served back so offline.
#[tokio::test]
async fn documents_keep_their_content_type_and_form_online_and_offline() {
    use yurt_cache::health::HealthSnapshot;
    use yurt_cache::local::{LocalConfig, LocalServer};
    const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    let dir = tempfile::tempdir().unwrap();
    let store = crate::util::open(dir.path());
    let mut snapshot = HealthSnapshot::unprobed(["http://apiserver:6443".parse().unwrap()]);
    snapshot.servers[0].healthy = true;
    let (health, rx) = tokio::sync::watch::channel(snapshot);
    let local = LocalServer::new(store.clone(), rx, LocalConfig::new("node-1"));
    let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults("node-1"));
    let layer = CacheLayer::new(store.clone(), agents).serve_offline(local);
    let apiserver = tower::service_fn(|req: Request<Body>| async move {
        let accept = req
            .headers()
            .get("accept")
            .map(|v| v.to_str().unwrap().to_owned());
        let (ct, body) = match req.uri().path() {
            "/openapi/v3" => ("text/plain; charset=utf-8", r#"{"paths":{"api/v1":{}}}"#),
            "/apis"
                if accept
                    .as_deref()
                    .is_some_and(|a| a.contains("as=APIGroupDiscoveryList")) =>
            {
                (AGGREGATED, r#"{"kind":"APIGroupDiscoveryList","items":[]}"#)
            }
            _ => ("application/json", r#"{"kind":"APIGroupList","groups":[]}"#),
        };
        Ok::<_, std::convert::Infallible>(
            Response::builder()
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
    });
    let svc = ServiceBuilder::new()
        .layer(RequestInfoLayer::new())
        .layer(layer.clone())
        .service(apiserver);
    let get = |path: &str, accept: &str| {
        Request::get(path)
            .header("user-agent", KUBELET)
            .header("accept", accept)
            .body(Body::empty())
            .unwrap()
    };
    let fetch = |req: Request<Body>| {
        let svc = svc.clone();
        async move {
            let resp = tokio::time::timeout(WAIT, svc.oneshot(req))
                .await
                .unwrap()
                .unwrap();
            let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
            (ct, String::from_utf8(bytes(resp).await.to_vec()).unwrap())
        }
    };
    let online = [
        fetch(get("/openapi/v3", "application/json, */*")).await,
        fetch(get("/apis", KUBECTL_ACCEPT)).await,
        fetch(get("/apis", "application/json")).await,
    ];
    eventually(|| {
        let m = layer.metrics().clone();
        async move { m.active_tees.get() == 0 }
    })
    .await;
    let raw = store.get_nonresource("/openapi/v3").await.unwrap().unwrap();
    assert!(raw.starts_with(b"\0text/plain; charset=utf-8\n"), "{raw:?}");

    health.send_modify(|h| h.servers[0].healthy = false);
    let offline = [
        fetch(get("/openapi/v3", "application/json, */*")).await,
        fetch(get("/apis", KUBECTL_ACCEPT)).await,
        fetch(get("/apis", "application/json")).await,
    ];
    assert_eq!(offline, online);
    assert_eq!(offline[0].0, "text/plain; charset=utf-8");
    assert_eq!(offline[1].0, AGGREGATED);
    assert!(offline[2].1.contains("APIGroupList"));
    store.shutdown().await;
}

/// The reconnect pass fetches the OpenAPI v3 root and the group documents it links to, and
/// on the next reconnect fetches a group document again only if its hash changed.
#[tokio::test]
async fn reconnects_fetch_openapi_group_documents_only_when_their_hash_changes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use yurt_cache::health::HealthSnapshot;
    use yurt_cache::resync::{Resync, ResyncConfig};

    let dir = tempfile::tempdir().unwrap();
    let store = crate::util::open(dir.path());
    let (health, rx) =
        tokio::sync::watch::channel(HealthSnapshot::unprobed(["http://apiserver:6443"
            .parse()
            .unwrap()]));
    let hash = Arc::new(Mutex::new("h1".to_owned()));
    let group_fetches = Arc::new(AtomicUsize::new(0));
    let apiserver = tower::service_fn({
        let hash = hash.clone();
        let group_fetches = group_fetches.clone();
        move |req: Request<Body>| {
            let hash = hash.lock().unwrap().clone();
            let group_fetches = group_fetches.clone();
            async move {
                let (code, ct, body) = match req.uri().path() {
                    "/openapi/v3" => (
                        200,
                        "text/plain; charset=utf-8",
                        json!({"paths": {"apis/apps/v1": {
                            "serverRelativeURL": format!("/openapi/v3/apis/apps/v1?hash={hash}")}}})
                        .to_string(),
                    ),
                    "/openapi/v3/apis/apps/v1" => {
                        group_fetches.fetch_add(1, Ordering::SeqCst);
                        (
                            200,
                            "application/json",
                            json!({"openapi": "3.0.0", "hash": hash}).to_string(),
                        )
                    }
                    _ => (404, "application/json", "{}".to_owned()),
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(code)
                        .header("content-type", ct)
                        .body(Body::from(body))
                        .unwrap(),
                )
            }
        }
    });
    let mut config = ResyncConfig::new("node-1");
    config.gc_pods_on_start = false;
    let resync = Resync::spawn(apiserver, store.clone(), rx, config);
    let passes = resync.metrics().passes.clone();
    // The cloud drops and returns until the resync task has started a new pass and the group
    // document is stored (a watch channel keeps only the latest value, so a drop the task did
    // not see is simply repeated).
    let reconnect = || {
        let n = passes.get() + 1;
        let passes = passes.clone();
        let store = store.clone();
        let health = &health;
        async move {
            eventually(|| {
                let (passes, store) = (passes.clone(), store.clone());
                async move {
                    if passes.get() < n {
                        health.send_modify(|h| h.servers[0].healthy = false);
                        for _ in 0..10 {
                            tokio::task::yield_now().await;
                        }
                        health.send_modify(|h| h.servers[0].healthy = true);
                        return false;
                    }
                    store
                        .get_nonresource("/openapi/v3/apis/apps/v1")
                        .await
                        .unwrap()
                        .is_some()
                }
            })
            .await;
        }
    };
    reconnect().await;
    // The pass is over once the last document it fetches is stored; the group document is
    // fetched after the root.
    let stored = store.get_nonresource("/openapi/v3").await.unwrap().unwrap();
    assert!(stored.starts_with(b"\0text/plain"), "{stored:?}");
    assert_eq!(group_fetches.load(Ordering::SeqCst), 1);
    reconnect().await;
    let first = store
        .get_nonresource("/openapi/v3/apis/apps/v1")
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("h1"));
    *hash.lock().unwrap() = "h2".to_owned();
    reconnect().await;
    eventually(|| {
        let store = store.clone();
        async move {
            let doc = store
                .get_nonresource("/openapi/v3/apis/apps/v1")
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&doc).contains("h2")
        }
    })
    .await;
    assert_eq!(
        group_fetches.load(Ordering::SeqCst),
        2,
        "fetched again only for the new hash"
    );
    resync.shutdown().await;
    store.shutdown().await;
}
