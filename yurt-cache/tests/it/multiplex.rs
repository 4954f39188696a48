//! The multiplexer through the running hub (`ProxyStack::with_multiplexer`: request info,
//! metrics, multiplexer, cache, balancer, upstream; served by `Server`) against a TestApiServer
//! over loopback: local clients share one upstream list+watch per resource, kube-rs reflectors
//! end with the apiserver's state after churn, selectors, 410 for too-old versions, 429 before
//! the first list.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_cache::admin::ProxyMetrics;
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::multiplex::{MultiplexLayer, PoolScopeResources};
use yurt_cache::server::{ProxyStack, Server, ServerConfig};
use yurt_cache::store::{RedbStore, Store as _};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};
use crate::util::open;

const NODE: &str = "edge-1";
const FEED_UA: &str = "multiplexer-proxy-edge-1";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

struct Hub {
    url: String,
    layer: MultiplexLayer,
    proxy: Server,
    checker: HealthChecker,
    store: RedbStore,
    http: Client<HttpConnector, Empty<bytes::Bytes>>,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start(api: &TestApiServer, layer: MultiplexLayer) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // One probe round, then none for the test's length: the fault tests must not make the
        // checker mark the apiserver unhealthy.
        let config = HealthConfig::readyz()
            .interval(Duration::from_secs(3600))
            .retry_interval(Duration::from_secs(3600));
        let checker = HealthChecker::spawn(plain_client(), vec![uri(api)], config);
        wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
        let (_tx, agents) = watch::channel(CacheAgents::defaults(NODE));
        let cache = CacheLayer::new(store.clone(), agents);
        let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::Priority);
        let stack = ProxyStack::with_multiplexer(
            balancer,
            Some(layer.clone()),
            None,
            Some(cache),
            ProxyMetrics::new(),
        );
        let proxy = Server::spawn(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            stack,
            ServerConfig::default(),
        )
        .unwrap();
        Hub {
            url: format!("http://{}", proxy.local_addr()),
            layer,
            proxy,
            checker,
            store,
            http: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    /// A kube-rs client to the hub with this User-Agent.
    fn kube(&self, ua: &'static str) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config
            .headers
            .push((http::header::USER_AGENT, http::HeaderValue::from_static(ua)));
        kube::Client::try_from(config).unwrap()
    }

    /// A GET through the hub: status, headers and the response (body unread).
    async fn get(&self, path_and_query: &str) -> http::Response<hyper::body::Incoming> {
        let req = Request::get(format!("{}{path_and_query}", self.url))
            .header("user-agent", "coredns/1.11")
            .header("accept", "application/json")
            .body(Empty::new())
            .unwrap();
        tokio::time::timeout(WAIT, self.http.request(req))
            .await
            .expect("an answer within the wait bound")
            .unwrap()
    }

    /// A GET through the hub, body read whole (a list, or a watch that ends).
    async fn get_json(&self, path_and_query: &str) -> (u16, Value) {
        let resp = self.get(path_and_query).await;
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .expect("body within the wait bound")
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Lists `path` through the hub, retrying (bounded) while the feed is not synced (429).
    async fn synced_list(&self, path: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let (code, v) = self.get_json(path).await;
                if code != 429 {
                    assert_eq!(code, 200, "{v}");
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the feed syncs within the wait bound")
    }

    async fn shutdown(self) {
        self.layer.shutdown();
        self.proxy.shutdown().await;
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Reads newline-delimited watch events from `resp` until `done` holds for the events so far.
async fn read_events(
    resp: http::Response<hyper::body::Incoming>,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !done(&events) {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Some(data) = frame.unwrap().data_ref() {
                buf.extend_from_slice(data);
            }
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
    })
    .await
    .expect("events within the wait bound");
    events
}

fn service(name: &str, app: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": app}},
    }))
    .unwrap()
}

fn slice(name: &str, svc: &str, ip: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip]}],
        "ports": [{"port": 80}],
    }))
    .unwrap()
}

type Keys = BTreeSet<(String, String, String)>;

fn keys<K: kube::Resource>(objs: impl IntoIterator<Item = std::sync::Arc<K>>) -> Keys {
    objs.into_iter()
        .map(|o| {
            let m = o.meta();
            (
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The apiserver's own state (namespace, name, resourceVersion), read directly.
async fn truth<K>(api: &TestApiServer) -> Keys
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = Api::<K>::all(api.client())
        .list(&Default::default())
        .await
        .unwrap();
    keys(list.items.into_iter().map(std::sync::Arc::new))
}

/// A reflector of `K` through `client`, driven by a task the returned handle owns.
fn reflect<K>(client: kube::Client) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    (reader, task)
}

/// Waits (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"));
}

fn layer() -> MultiplexLayer {
    MultiplexLayer::new(NODE, PoolScopeResources::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_share_one_upstream_watch_per_resource_and_end_in_the_apiservers_state() {
    let api = TestApiServer::start().await.unwrap();
    let svcs = Api::<Service>::namespaced(api.client(), "default");
    let slices = Api::<EndpointSlice>::namespaced(api.client(), "default");
    for i in 0..5 {
        let name = format!("s{i}");
        svcs.create(&PostParams::default(), &service(&name, "web"))
            .await
            .unwrap();
        slices
            .create(
                &PostParams::default(),
                &slice(&name, &name, &format!("10.0.0.{i}")),
            )
            .await
            .unwrap();
    }
    let hub = Hub::start(&api, layer()).await;
    api.reset_traffic();

    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for ua in ["kube-proxy/v1.36.0", "coredns/1.11.3", "kubelet/v1.36.0"] {
        let client = hub.kube(ua);
        let (s, t) = reflect::<Service>(client.clone());
        let (e, u) = reflect::<EndpointSlice>(client);
        stores.push((s, e));
        tasks.extend([t, u]);
    }
    for (s, e) in &stores {
        tokio::time::timeout(WAIT, s.wait_until_ready())
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(WAIT, e.wait_until_ready())
            .await
            .unwrap()
            .unwrap();
    }

    // Churn: creates, updates (a label and the endpoints), deletes.
    for i in 5..10 {
        let name = format!("s{i}");
        svcs.create(&PostParams::default(), &service(&name, "api"))
            .await
            .unwrap();
        slices
            .create(&PostParams::default(), &slice(&name, &name, "10.0.1.1"))
            .await
            .unwrap();
    }
    for i in [1, 6] {
        let name = format!("s{i}");
        let patch = json!({"metadata": {"labels": {"tier": "edge"}}});
        svcs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let patch = json!({"endpoints": [{"addresses": ["10.0.9.9"]}]});
        slices
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    for i in [0, 7] {
        let name = format!("s{i}");
        svcs.delete(&name, &DeleteParams::default()).await.unwrap();
        slices
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }

    let want_svcs = truth::<Service>(&api).await;
    let want_slices = truth::<EndpointSlice>(&api).await;
    assert!(want_svcs.iter().any(|k| k.1 == "s9") && !want_svcs.iter().any(|k| k.1 == "s0"));
    for (s, e) in &stores {
        eventually("the reflectors reach the apiserver's state", || {
            let ok = keys(s.state()) == want_svcs && keys(e.state()) == want_slices;
            async move { ok }
        })
        .await;
    }

    // Everything but the test's own direct reads (no User-Agent).
    let mut traffic = api.traffic();
    traffic.records.retain(|r| !r.user_agent.is_empty());
    for path in [SERVICES, SLICES] {
        let watches: Vec<_> = traffic.under(path).filter(|r| r.verb == "watch").collect();
        assert_eq!(
            watches.len(),
            1,
            "one upstream watch of {path}: {watches:#?}"
        );
        assert_eq!(watches[0].user_agent, FEED_UA);
        let lists: Vec<_> = traffic.under(path).filter(|r| r.verb == "list").collect();
        assert_eq!(lists.len(), 1, "one upstream list of {path}: {lists:#?}");
    }
    // The feeds went through the cache layer: their lists are cached as the multiplexer.
    eventually("the feeds' lists are in the store", || {
        let store = hub.store.clone();
        async move { store.scopes(FEED_UA).await.unwrap().len() == 2 }
    })
    .await;
    let m = hub.layer.metrics();
    assert_eq!(m.feeds.get(), 2);
    let svc_label = yurt_cache::multiplex::ResourceLabels {
        resource: "/v1/services".into(),
    };
    // 5 creates, 2 updates, 2 deletes reached the feed once and each of the 3 clients.
    let received = m.events_received.get_or_create(&svc_label).get();
    assert!(received >= 9, "{received}");
    assert!(m.events_fanned_out.get_or_create(&svc_label).get() >= 3 * 9);

    for t in tasks {
        t.abort();
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_namespaces_select_what_the_apiserver_would() {
    let api = TestApiServer::start().await.unwrap();
    let svcs = Api::<Service>::namespaced(api.client(), "default");
    svcs.create(&PostParams::default(), &service("a", "x"))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &service("b", "y"))
        .await
        .unwrap();
    let hub = Hub::start(&api, layer()).await;

    // The first request starts the feed; retry while it is not synced.
    let list = hub.synced_list("/api/v1/namespaces/default/services").await;
    assert_eq!(list["kind"], "ServiceList");
    assert_eq!(list["apiVersion"], "v1");
    let names = |v: &Value| -> BTreeSet<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&list),
        ["a", "b", "kubernetes"].map(String::from).into()
    );
    assert_eq!(list["items"][0]["kind"], "Service");
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
    assert_eq!(rv, api.resource_version().to_string());

    let (code, v) = hub
        .get_json("/api/v1/namespaces/default/services?labelSelector=app%3Dx")
        .await;
    assert_eq!((code, names(&v)), (200, ["a".to_owned()].into()));
    let (_, v) = hub
        .get_json("/api/v1/services?fieldSelector=metadata.name%3Db")
        .await;
    assert_eq!(names(&v), ["b".to_owned()].into());
    let (_, v) = hub
        .get_json("/api/v1/services?fieldSelector=spec.type%3DClusterIP,metadata.namespace%3Ddefault&labelSelector=app")
        .await;
    assert_eq!(names(&v), ["a", "b"].map(String::from).into());
    let (_, v) = hub
        .get_json("/api/v1/namespaces/kube-system/services")
        .await;
    assert!(names(&v).is_empty());
    let (code, v) = hub
        .get_json("/api/v1/services?fieldSelector=spec.ports%3D80")
        .await;
    assert_eq!(code, 400);
    assert_eq!(v["reason"], "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported"),
        "{v}"
    );
    let (code, _) = hub
        .get_json("/api/v1/services?labelSelector=a%20in%20(")
        .await;
    assert_eq!(code, 400);

    // A watch with a label selector from the list's version: a relabel out of the selection
    // is a DELETED, into it an ADDED; other objects are not sent.
    let resp = hub
        .get(&format!(
            "/api/v1/namespaces/default/services?watch=true&labelSelector=app%3Dx&resourceVersion={rv}"
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let relabel = |name: &'static str, app: &'static str| {
        let svcs = svcs.clone();
        async move {
            let patch = json!({"metadata": {"labels": {"app": app}}});
            svcs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    relabel("a", "z").await;
    relabel("b", "x").await;
    svcs.create(&PostParams::default(), &service("c", "x"))
        .await
        .unwrap();
    let events = read_events(resp, |e| e.len() >= 3).await;
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("DELETED", "a"), ("ADDED", "b"), ("ADDED", "c")]
            .map(|(t, n)| (t.to_owned(), n.to_owned()))
    );

    // A watch with timeoutSeconds ends by itself.
    let resp = hub.get("/api/v1/services?watch=1&timeoutSeconds=1").await;
    let events = read_events(resp, |_| false).await;
    assert_eq!(events.len(), 4, "initial ADDED events only: {events:?}");
    assert!(events.iter().all(|e| e["type"] == "ADDED"));

    // sendInitialEvents ends the initial state with the annotated bookmark.
    let resp = hub
        .get("/api/v1/services?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&labelSelector=app%3Dx")
        .await;
    let events = read_events(resp, |e| e.iter().any(|e| e["type"] == "BOOKMARK")).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // A Table (kubectl get) is not multiplexed: it passes through to the apiserver.
    api.reset_traffic();
    let req = Request::get(format!("{}{SERVICES}", hub.url))
        .header("user-agent", "kubectl/v1.36.0")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, hub.http.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let passed: Vec<_> = api
        .traffic()
        .records
        .into_iter()
        .filter(|r| r.path == SERVICES && r.verb == "list")
        .map(|r| r.user_agent)
        .collect();
    assert_eq!(passed, ["kubectl/v1.36.0"]);

    // Shutting the layer down ends open watches; later requests get 503.
    let resp = hub.get("/api/v1/services?watch=1").await;
    hub.layer.shutdown();
    let events = read_events(resp, |_| false).await;
    assert_eq!(events.len(), 4, "initial events, then the end: {events:?}");
    assert_eq!(hub.get(SERVICES).await.status(), 503);
    assert_eq!(hub.layer.metrics().feeds.get(), 0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_version_older_than_the_history_gets_410() {
    let api = TestApiServer::start().await.unwrap();
    let svcs = Api::<Service>::namespaced(api.client(), "default");
    svcs.create(&PostParams::default(), &service("a", "x"))
        .await
        .unwrap();
    let hub = Hub::start(&api, layer().history(2)).await;
    let list = hub.synced_list(SERVICES).await;
    let old: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for app in ["p", "q", "r"] {
        let patch = json!({"metadata": {"labels": {"app": app}}});
        svcs.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let now = api.resource_version();
    // Once the cache holds the last write, the first one has left the 2-event history.
    eventually("the cache catches up", || {
        let hub = &hub;
        async move {
            let (_, v) = hub.get_json(SERVICES).await;
            v["metadata"]["resourceVersion"].as_str() == Some(now.to_string().as_str())
        }
    })
    .await;
    let resp = hub
        .get(&format!("{SERVICES}?watch=true&resourceVersion={old}"))
        .await;
    assert_eq!(resp.status(), 200);
    let events = read_events(resp, |_| false).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");

    // From the version before the last write: exactly that write.
    let resp = hub
        .get(&format!(
            "{SERVICES}?watch=true&resourceVersion={}",
            now - 1
        ))
        .await;
    let events = read_events(resp, |e| !e.is_empty()).await;
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["app"], "r");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_429_until_the_feed_has_listed() {
    let api = TestApiServer::start().await.unwrap();
    let hub = Hub::start(&api, layer()).await;
    // The feed's list is held by the apiserver: the cache cannot sync.
    api.blackhole();
    let resp = hub.get(SLICES).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let resp = hub.get(&format!("{SLICES}?watch=true")).await;
    assert_eq!(resp.status(), 429);
    let label = yurt_cache::multiplex::ResourceLabels {
        resource: "discovery.k8s.io/v1/endpointslices".into(),
    };
    assert_eq!(
        hub.layer.metrics().not_synced.get_or_create(&label).get(),
        2
    );
    api.heal();
    eventually("the feed syncs once the apiserver answers", || {
        let hub = &hub;
        async move { hub.get_json(SLICES).await.0 == 200 }
    })
    .await;
    let (code, v) = hub.get_json(SLICES).await;
    assert_eq!(code, 200);
    assert_eq!(v["kind"], "EndpointSliceList");
    // The upstream saw the multiplexer's list only.
    let lists: Vec<_> = api
        .traffic()
        .records
        .into_iter()
        .filter(|r| r.path == SLICES && r.verb == "list")
        .collect();
    assert!(lists.iter().all(|r| r.user_agent == FEED_UA), "{lists:#?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_rewatches_relists_and_survives_an_outage_while_clients_keep_watching() {
    // Rare bookmarks: none moves the feed past the write the compaction below expires.
    let api = TestApiServer::builder()
        .bookmark_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let svcs = Api::<Service>::namespaced(api.client(), "default");
    svcs.create(&PostParams::default(), &service("a", "x"))
        .await
        .unwrap();
    let layer = layer().backoff(Duration::from_millis(20), Duration::from_millis(200));
    let hub = Hub::start(&api, layer).await;
    let client = hub.kube("kube-proxy/v1.36.0");
    let (store, task) = reflect::<Service>(client);
    tokio::time::timeout(WAIT, store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    let lists = |api: &TestApiServer| {
        api.traffic()
            .under(SERVICES)
            .filter(|r| r.verb == "list" && r.user_agent == FEED_UA)
            .count()
    };
    let converge = |what: &'static str| {
        let (api, store) = (&api, &store);
        async move {
            let want = truth::<Service>(api).await;
            eventually(what, || {
                let ok = keys(store.state()) == want;
                async move { ok }
            })
            .await;
        }
    };

    // A cut watch is re-opened from where it stopped: no re-list.
    api.cut_watches();
    svcs.create(&PostParams::default(), &service("b", "x"))
        .await
        .unwrap();
    converge("the change after a cut").await;
    assert_eq!(lists(&api), 1);

    // A write the services watch does not carry, the history compacted past it, watches cut:
    // the feed's re-watch gets 410 and it re-lists; the client's own watch is untouched (it
    // is served by the hub).
    svcs.create(&PostParams::default(), &service("c", "x"))
        .await
        .unwrap();
    converge("the change before the compaction").await;
    api.create_object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bump", "namespace": "default"},
    }))
    .await
    .unwrap();
    api.compact();
    api.cut_watches();
    svcs.delete("a", &DeleteParams::default()).await.unwrap();
    converge("the change after the re-list").await;
    assert_eq!(lists(&api), 2, "one re-list after the 410");

    // The apiserver goes away: clients are still served the last state; when it is back the
    // feed catches up.
    api.go_down().await;
    let (code, v) = hub.get_json(SERVICES).await;
    assert_eq!(code, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), 3, "{v}");
    api.come_up().await.unwrap();
    svcs.create(&PostParams::default(), &service("d", "x"))
        .await
        .unwrap();
    converge("the change after the outage").await;

    task.abort();
    hub.shutdown().await;
}
