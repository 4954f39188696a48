//! Offline autonomy through the running hub ([`EdgeHub`]): a TLS test apiserver behind a
//! ChaosLink, real clients (kube-rs, kubectl) talking plain HTTP to the hub's listener.
//!
//! Reads served per DESIGN's offline table (selectors, 404s, 403 on delete), offline watches
//! (local writes, end on reconnect), the journal and its replay (coalesced status writes, a
//! conflict the cloud wins), stale endpoints, the Autonomy condition, pod garbage collection
//! after a restart, the fallback of a read in flight, and a kube-rs reflector through cuts,
//! a blackhole and ten cut/heal cycles ending with exactly the apiserver's state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use yurt_cache::health::HealthConfig;
use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
use yurt_cache::multiplex::PoolScopeResources;
use yurt_cache::store::{Gvr, ListScope, ObjectKey, Store};
use yurt_cache::upstream::UpstreamClient;
use yurt_testkit::TestApiServer;
use yurt_testkit::chaos::ChaosLink;

use crate::net::{WAIT, hub_client};

const NODE: &str = "edge-1";
const KUBELET: &str = "kubelet/v1.36.0 (linux/amd64) kubernetes/test";
const KUBE_PROXY: &str = "kube-proxy/v1.36.0 (linux/amd64) kubernetes/test";

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The cloud (TLS apiserver), the link, and the hub in front of the link.
struct Rig {
    api: TestApiServer,
    link: ChaosLink,
    hub: Option<EdgeHub>,
    config: EdgeHubConfig,
    upstream: UpstreamClient,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Without the multiplexer: every request reaches the cache layer as its own component.
    async fn start() -> Rig {
        Rig::start_with(false).await
    }

    async fn start_with(multiplexer: bool) -> Rig {
        let api = TestApiServer::builder().tls().start().await.unwrap();
        let link = ChaosLink::start(api.addr()).await.unwrap();
        let upstream = hub_client(&api, &format!("system:node:{NODE}"), &["system:nodes"]);
        let dir = tempfile::tempdir().unwrap();
        let server = format!("https://{}", link.local_addr()).parse().unwrap();
        let mut config = EdgeHubConfig::new(NODE, vec![server], dir.path().join("cache.redb"));
        config.proxy_addr = "127.0.0.1:0".parse().unwrap();
        config.admin_addr = "127.0.0.1:0".parse().unwrap();
        config.health = HealthConfig::lease(NODE)
            .interval(Duration::from_millis(250))
            .timeout(Duration::from_millis(400))
            .thresholds(1, 1);
        // No kubelet renews the Lease in these tests.
        config.kubelet_grace = None;
        config.resync.retry_interval = Duration::from_millis(200);
        config.local.bookmark_interval = Duration::from_millis(300);
        if !multiplexer {
            config.multiplex = PoolScopeResources::new([]);
        }
        let hub = EdgeHub::start(config.clone(), upstream.clone())
            .await
            .unwrap();
        config.proxy_addr = hub.proxy_addr();
        config.admin_addr = hub.admin_addr();
        let rig = Rig {
            api,
            link,
            hub: Some(hub),
            config,
            upstream,
            _dir: dir,
        };
        rig.wait_health(true).await;
        rig
    }

    fn hub(&self) -> &EdgeHub {
        self.hub.as_ref().unwrap()
    }

    fn client(&self, agent: &'static str) -> kube::Client {
        let mut config = kube::Config::new(
            format!("http://{}", self.hub().proxy_addr())
                .parse()
                .unwrap(),
        );
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(agent),
        ));
        kube::Client::try_from(config).unwrap()
    }

    async fn wait_health(&self, healthy: bool) {
        let mut rx = self.hub().health();
        bounded("hub health", rx.wait_for(|h| h.any_healthy() == healthy))
            .await
            .unwrap();
    }

    /// Waits until the list scope is recorded (the client gets its response before the tee
    /// has stored it).
    async fn wait_list(&self, component: &str, gvr: Gvr, ns: &str, labels: &str, fields: &str) {
        let store = self.hub().store().clone();
        let scope = ListScope::parse(component, &gvr, ns, labels, fields).unwrap();
        bounded("the list to be cached", async {
            while store.list(&scope).await.unwrap().meta.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Waits until the object is cached for `component`.
    async fn wait_object(&self, component: &str, gvr: Gvr, ns: &str, name: &str) {
        let store = self.hub().store().clone();
        let key = ObjectKey::new(component, &gvr, ns, name);
        bounded("the object to be cached", async {
            while store.get(&key).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    async fn cut(&self) {
        self.link.cut();
        self.hub().probe_now();
        self.wait_health(false).await;
    }

    async fn blackhole(&self) {
        self.link.blackhole();
        self.hub().probe_now();
        self.wait_health(false).await;
    }

    async fn heal(&self) {
        self.link.heal();
        self.hub().probe_now();
        self.wait_health(true).await;
    }

    async fn restart(&mut self) {
        self.hub.take().unwrap().shutdown().await;
        self.hub = Some(
            EdgeHub::start(self.config.clone(), self.upstream.clone())
                .await
                .unwrap(),
        );
    }

    async fn journal_drained(&self) {
        let store = self.hub().store().clone();
        bounded("the journal replay", async {
            while !store.journal().await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    async fn create(&self, v: Value) -> Value {
        self.api.create_object(v).await.unwrap()
    }

    async fn shutdown(mut self) {
        self.hub.take().unwrap().shutdown().await;
        self.link.shutdown().await;
    }
}

fn pod_json(name: &str, app: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}})
}

fn node_json(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": annotations}})
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|i| i.meta().name.clone().unwrap_or_default())
        .collect();
    n.sort();
    n
}

fn pods_gvr() -> Gvr {
    Gvr::new("", "v1", "pods")
}

fn node_field() -> String {
    format!("spec.nodeName={NODE}")
}

fn on_node() -> ListParams {
    ListParams::default().fields(&format!("spec.nodeName={NODE}"))
}

/// The apiserver's pods of the node: name -> resourceVersion.
async fn cloud_pods(api: &TestApiServer) -> BTreeMap<String, String> {
    let list = Api::<Pod>::all(api.client())
        .list(&on_node())
        .await
        .unwrap();
    list.items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap(),
                p.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

fn status_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_reads_follow_the_table() {
    let rig = Rig::start().await;
    rig.create(node_json(
        json!({"node.openyurt.io/autonomy-duration": "0"}),
    ))
    .await;
    for (n, app) in [("web-1", "a"), ("web-2", "a"), ("web-3", "b")] {
        rig.create(pod_json(n, app, NODE)).await;
    }
    rig.create(pod_json("elsewhere", "a", "edge-2")).await;
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}}))
        .await;
    let kubelet = rig.client(KUBELET);
    let pods: Api<Pod> = Api::all(kubelet.clone());
    let ns_pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    let scope_a = on_node().labels("app=a");
    let scope_b = on_node().labels("app=b");
    let online_a = pods.list(&scope_a).await.unwrap();
    let online_b = pods.list(&scope_b).await.unwrap();
    ns_pods.get("web-1").await.unwrap();
    Api::<Node>::all(kubelet.clone()).get(NODE).await.unwrap();
    Api::<ConfigMap>::namespaced(kubelet.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap();
    let version_online = kubelet.apiserver_version().await.unwrap();
    let coredns = rig.client("coredns/v1.11.1");
    let discovery = coredns
        .request_text(http::Request::get("/api/v1").body(vec![]).unwrap())
        .await
        .unwrap();
    rig.wait_list("kubelet", pods_gvr(), "", "app=a", &node_field())
        .await;
    rig.wait_list("kubelet", pods_gvr(), "", "app=b", &node_field())
        .await;
    rig.wait_list(
        "kubelet",
        Gvr::new("", "v1", "configmaps"),
        "default",
        "",
        "",
    )
    .await;
    rig.wait_object("kubelet", Gvr::new("", "v1", "nodes"), "", NODE)
        .await;
    bounded("documents cached", async {
        while rig
            .hub()
            .store()
            .get_nonresource("/api/v1")
            .await
            .unwrap()
            .is_none()
            || rig
                .hub()
                .store()
                .get_nonresource("/version")
                .await
                .unwrap()
                .is_none()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    rig.cut().await;
    // Two scopes of one resource for one component, each with its own selection.
    let a = pods.list(&scope_a).await.unwrap();
    let b = pods.list(&scope_b).await.unwrap();
    assert_eq!(names(&a.items), vec!["web-1", "web-2"]);
    assert_eq!(names(&b.items), vec!["web-3"]);
    assert_eq!(names(&a.items), names(&online_a.items));
    assert_eq!(names(&b.items), names(&online_b.items));
    // The list's resourceVersion is its highest item resourceVersion.
    let max_rv = a
        .items
        .iter()
        .map(|p| {
            p.metadata
                .resource_version
                .clone()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(a.metadata.resource_version, Some(max_rv.to_string()));
    // Kubelet's pod list with nothing cached is 404, never an empty list.
    let none = pods.list(&on_node().labels("app=zzz")).await.unwrap_err();
    assert_eq!(status_code(none), 404);
    // Gets: the cached object with its kind; 404 when absent.
    let got = ns_pods.get("web-1").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(status_code(ns_pods.get("nope").await.unwrap_err()), 404);
    let raw = kubelet
        .request_text(
            http::Request::get("/api/v1/namespaces/default/pods/web-2")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(raw.contains("\"kind\":\"Pod\""), "{raw}");
    Api::<Node>::all(kubelet.clone()).get(NODE).await.unwrap();
    let cms = Api::<ConfigMap>::namespaced(kubelet.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(names(&cms.items), vec!["cfg"]);
    // Deletes are the cloud's decision.
    let del = ns_pods
        .delete("web-1", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(del), 403);
    // Creates are echoed; Events are journaled.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(kubelet.clone(), "default");
    let ev: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"generateName": "web-1.", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "reason": "Started", "message": "offline", "type": "Normal"}))
    .unwrap();
    let created = events.create(&PostParams::default(), &ev).await.unwrap();
    assert!(created.metadata.name.unwrap().starts_with("web-1."));
    assert!(created.metadata.uid.is_some());
    assert_eq!(rig.hub().store().journal().await.unwrap().len(), 1);
    // Documents from the cache (coredns needs discovery offline, #880).
    assert_eq!(
        kubelet.apiserver_version().await.unwrap().git_version,
        version_online.git_version
    );
    let discovery_offline = coredns
        .request_text(http::Request::get("/api/v1").body(vec![]).unwrap())
        .await
        .unwrap();
    assert_eq!(discovery_offline, discovery);
    // A component the hub does not cache gets the balancer's 503, not an empty cache's 404.
    // (Sent to the stack directly: kube-rs retries 503s by itself.)
    let req = http::Request::get("/api/v1/pods")
        .header("user-agent", "some-operator/v1")
        .body(yurt_cache::body::Body::empty())
        .unwrap();
    let other = tower::ServiceExt::oneshot(rig.hub().stack(), req)
        .await
        .unwrap();
    assert_eq!(other.status(), 503);
    let served = rig
        .hub()
        .local()
        .unwrap()
        .metrics()
        .served_count("list", "pods", "kubelet");
    assert!(served >= 3, "{served}");

    // Back online: the Event reaches the cloud.
    rig.heal().await;
    rig.journal_drained().await;
    let cloud_events =
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(rig.api.client(), "default")
            .list(&Default::default())
            .await
            .unwrap();
    assert!(
        cloud_events
            .items
            .iter()
            .any(|e| e.message.as_deref() == Some("offline"))
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_watches_deliver_local_writes_and_end_on_reconnect() {
    let rig = Rig::start().await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    let kubelet = rig.client(KUBELET);
    let pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    pods.list(&on_node()).await.unwrap();
    rig.wait_list("kubelet", pods_gvr(), "default", "", &node_field())
        .await;
    rig.cut().await;
    let list = pods.list(&on_node()).await.unwrap();
    let rv = list.metadata.resource_version.clone().unwrap();
    let wp = WatchParams::default()
        .fields(&format!("spec.nodeName={NODE}"))
        .timeout(290);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    // A bookmark arrives on the hub's interval.
    let first = bounded("a bookmark", stream.next()).await.unwrap().unwrap();
    assert!(matches!(first, WatchEvent::Bookmark(_)), "{first:?}");
    // An offline status patch reaches the watch as MODIFIED.
    let patch = json!({"status": {"phase": "Running", "podIP": "10.1.0.7"}});
    let patched = pods
        .patch_status("web-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().pod_ip.as_deref(), Some("10.1.0.7"));
    let modified = loop {
        match bounded("the MODIFIED event", stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchEvent::Modified(p) => break p,
            WatchEvent::Bookmark(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(modified.status.unwrap().pod_ip.as_deref(), Some("10.1.0.7"));
    // A watch with timeoutSeconds ends by itself.
    let short = WatchParams::default().timeout(1);
    let mut ends = pods.watch(&short, &rv).await.unwrap().boxed();
    let start = Instant::now();
    while bounded("the short watch to end", ends.next())
        .await
        .is_some()
    {}
    println!(
        "an offline watch with timeoutSeconds=1 ended after {:?}",
        start.elapsed()
    );
    // Reconnect ends the offline watch, so the client re-watches upstream.
    rig.heal().await;
    while let Some(ev) = bounded("the offline watch to end on reconnect", stream.next()).await {
        assert!(matches!(ev, Ok(WatchEvent::Bookmark(_))), "{ev:?}");
    }
    rig.journal_drained().await;
    let cloud = rig
        .api
        .get_object("v1", "pods", "default", "web-1")
        .unwrap();
    assert_eq!(cloud["status"]["podIP"], "10.1.0.7");
    rig.shutdown().await;
}

/// The first `n` lines of a streamed (watch) body.
async fn first_lines(resp: http::Response<yurt_cache::body::Body>, n: usize) -> Vec<Value> {
    use http_body_util::BodyExt;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = bounded("a watch line", body.frame())
            .await
            .expect("the watch stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_watches_start_as_the_apiserver_starts_them() {
    let rig = Rig::start().await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    let kubelet = rig.client(KUBELET);
    let pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    pods.list(&on_node()).await.unwrap();
    rig.wait_list("kubelet", pods_gvr(), "default", "", &node_field())
        .await;
    rig.cut().await;

    // resourceVersion "0" (kube-rs) starts with ADDED for the cached state.
    let wp = WatchParams::default()
        .fields(&format!("spec.nodeName={NODE}"))
        .timeout(290);
    let mut stream = pods.watch(&wp, "0").await.unwrap().boxed();
    match bounded("the initial ADDED", stream.next())
        .await
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("web-1")),
        other => panic!("{other:?}"),
    }

    let proxy: http::Uri = format!("http://{}", rig.hub().proxy_addr())
        .parse()
        .unwrap();
    let client = crate::net::plain_client();
    let base =
        format!("/api/v1/namespaces/default/pods?watch=true&fieldSelector=spec.nodeName%3D{NODE}");
    let get = |query: &str| {
        http::Request::get(format!("{base}{query}"))
            .header("user-agent", KUBELET)
            .header("accept", "application/json")
            .body(yurt_cache::body::Body::empty())
            .unwrap()
    };
    // resourceVersion unset: the same.
    let resp = crate::net::send(&client, &proxy, get("")).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let lines = first_lines(resp, 1).await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "web-1");

    // A streaming list without bookmarks is accepted (v1.36) and starts with the state.
    let resp = crate::net::send(
        &client,
        &proxy,
        get("&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let lines = first_lines(resp, 1).await;
    assert_eq!(lines[0]["type"], "ADDED");

    // With bookmarks, the initial events end with the annotated bookmark.
    let resp = crate::net::send(
        &client,
        &proxy,
        get("&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
    )
    .await
    .unwrap();
    let lines = first_lines(resp, 2).await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // Bare sendInitialEvents is the apiserver's 422, word for word.
    let resp = crate::net::send(&client, &proxy, get("&sendInitialEvents=true"))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
    let status = crate::net::json(resp).await;
    assert_eq!(
        status["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: \
         sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    );
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "resourceVersionMatch"
    );
    // The apiserver itself says the same.
    let direct = crate::net::hub_client(&rig.api, "system:node:edge-1", &["system:nodes"]);
    let api_uri: http::Uri = rig.api.url().parse().unwrap();
    let resp = crate::net::send(&direct, &api_uri, get("&sendInitialEvents=true"))
        .await
        .unwrap();
    assert_eq!(crate::net::json(resp).await["message"], status["message"]);

    drop(stream);
    rig.heal().await;
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_replays_coalesced_status_and_the_cloud_wins_conflicts() {
    let rig = Rig::start().await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    rig.create(pod_json("web-2", "a", NODE)).await;
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v1"}}))
        .await;
    let kubelet = rig.client(KUBELET);
    let pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(kubelet.clone(), "default");
    pods.list(&on_node()).await.unwrap();
    let mut cm = cms.get("cfg").await.unwrap();
    rig.wait_list("kubelet", pods_gvr(), "default", "", &node_field())
        .await;
    rig.wait_object(
        "kubelet",
        Gvr::new("", "v1", "configmaps"),
        "default",
        "cfg",
    )
    .await;

    rig.cut().await;
    for (i, phase) in ["Pending", "Running", "Running"].iter().enumerate() {
        let p = json!({"status": {"phase": phase, "podIP": format!("10.1.0.{}", i + 1)}});
        pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    let p = json!({"status": {"phase": "Failed"}});
    pods.patch_status("web-2", &PatchParams::default(), &Patch::Strategic(&p))
        .await
        .unwrap();
    // An offline update of an object the cloud changes meanwhile.
    cm.data = Some([("k".to_owned(), "edge".to_owned())].into());
    let updated = cms
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    assert_eq!(updated.data.unwrap()["k"], "edge");
    Api::<ConfigMap>::namespaced(rig.api.client(), "default")
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"k": "cloud"}})),
        )
        .await
        .unwrap();
    assert_eq!(rig.hub().store().journal().await.unwrap().len(), 5);

    rig.heal().await;
    rig.journal_drained().await;
    let m = rig.hub().resync_metrics().unwrap();
    assert_eq!(
        m.replayed_count("coalesced"),
        2,
        "two earlier web-1 status writes"
    );
    assert_eq!(
        m.replayed_count("applied"),
        2,
        "web-1's final status and web-2's"
    );
    assert_eq!(m.replayed_count("conflict"), 1, "the configmap update");
    let web1 = rig
        .api
        .get_object("v1", "pods", "default", "web-1")
        .unwrap();
    assert_eq!(web1["status"]["podIP"], "10.1.0.3");
    assert_eq!(web1["status"]["phase"], "Running");
    let web2 = rig
        .api
        .get_object("v1", "pods", "default", "web-2")
        .unwrap();
    assert_eq!(web2["status"]["phase"], "Failed");
    let cfg = rig
        .api
        .get_object("v1", "configmaps", "default", "cfg")
        .unwrap();
    assert_eq!(
        cfg["data"]["k"], "cloud",
        "the cloud's version wins a conflict"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_served_offline_follow_the_pods_new_addresses() {
    endpoints_follow_the_pods(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_through_the_multiplexer_follow_the_pods_new_addresses_offline() {
    endpoints_follow_the_pods(true).await;
}

/// Kube-proxy's EndpointSlices while the node's pod changes address offline, with
/// endpointslices served directly from the cache, or through the multiplexer (whose feed is
/// itself served from the cache).
async fn endpoints_follow_the_pods(via_multiplexer: bool) {
    let rig = Rig::start_with(via_multiplexer).await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    Api::<Pod>::namespaced(rig.api.client(), "default")
        .patch_status(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
            "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    rig.create(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": NODE,
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"}}],
        "ports": [{"port": 80, "protocol": "TCP", "name": ""}]}))
        .await;
    let kubelet = rig.client(KUBELET);
    let proxy = rig.client(KUBE_PROXY);
    let pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(proxy.clone(), "default");
    let slice_gvr = Gvr::new("discovery.k8s.io", "v1", "endpointslices");
    pods.list(&on_node()).await.unwrap();
    let addrs = |l: &[EndpointSlice]| -> Vec<String> {
        l.iter()
            .filter(|s| s.metadata.name.as_deref() == Some("web-x1"))
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .flatten()
                    .flat_map(|e| e.addresses.clone())
            })
            .collect()
    };
    let online = bounded("the online list", async {
        loop {
            match slices.list(&Default::default()).await {
                Ok(l) if !addrs(&l.items).is_empty() => return l,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(addrs(&online.items), vec!["10.1.0.5"]);
    rig.wait_list("kubelet", pods_gvr(), "default", "", &node_field())
        .await;
    let holder = if via_multiplexer {
        format!("multiplexer-proxy-{NODE}")
    } else {
        "kube-proxy".to_owned()
    };
    let ns = if via_multiplexer { "" } else { "default" };
    rig.wait_list(&holder, slice_gvr.clone(), ns, "", "").await;

    rig.cut().await;
    let rv = slices
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch = slices
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .unwrap()
        .boxed();
    // The node rebooted offline: kubelet reports the pod at a new address.
    let p = json!({"status": {"podIP": "10.1.0.9", "podIPs": [{"ip": "10.1.0.9"}]}});
    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    // Open watches of endpoints get the rewritten slice (possibly after a re-send of the
    // slice as the pods were when the watch started).
    loop {
        let ev = bounded("the re-sent slice", watch.next()).await;
        match ev.unwrap().unwrap() {
            WatchEvent::Modified(s) => {
                let a = s.endpoints.unwrap()[0].addresses.clone();
                if a == vec!["10.1.0.9"] {
                    break;
                }
                assert_eq!(a, vec!["10.1.0.5"], "only the old or the new address");
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    let offline = slices.list(&Default::default()).await.unwrap();
    assert_eq!(addrs(&offline.items), vec!["10.1.0.9"]);
    if !via_multiplexer {
        let got = slices.get("web-x1").await.unwrap();
        assert_eq!(got.endpoints.unwrap()[0].addresses, vec!["10.1.0.9"]);
    }
    // The store keeps what the apiserver sent.
    let stored = rig
        .hub()
        .store()
        .get(&ObjectKey::new(&holder, &slice_gvr, "default", "web-x1"))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&stored.json).contains("10.1.0.5"));
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autonomy_condition_follows_the_annotations() {
    let rig = Rig::start().await;
    rig.create(node_json(
        json!({"node.openyurt.io/autonomy-duration": "1h"}),
    ))
    .await;
    let nodes: Api<Node> = Api::all(rig.client(KUBELET));
    let n = nodes.get(NODE).await.unwrap();
    let cond = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "Autonomy")
                    .map(|c| c.status.clone())
            })
    };
    assert_eq!(cond(&n).as_deref(), Some("True"));
    let cloud = rig.api.get_object("v1", "nodes", "", NODE).unwrap();
    let conds = cloud["status"]["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Autonomy" && c["status"] == "True"),
        "{cloud}"
    );
    // Turned off: the label says this is not an edge worker.
    Api::<Node>::all(rig.api.client())
        .patch(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"labels": {"openyurt.io/is-edge-worker": "false"}}}),
            ),
        )
        .await
        .unwrap();
    let n = nodes.get(NODE).await.unwrap();
    assert_eq!(cond(&n).as_deref(), Some("False"));
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_cloud_reachable_drops_pods_it_no_longer_has() {
    let mut rig = Rig::start().await;
    for i in 0..3 {
        rig.create(pod_json(&format!("p-{i}"), "a", NODE)).await;
    }
    let pods: Api<Pod> = Api::all(rig.client(KUBELET));
    pods.list(&on_node()).await.unwrap();
    rig.wait_list("kubelet", pods_gvr(), "", "", &node_field())
        .await;
    let cached = |rig: &Rig| {
        let store = rig.hub().store().clone();
        async move {
            let scope =
                ListScope::parse("kubelet", &Gvr::new("", "v1", "pods"), "", "", "").unwrap();
            let mut n: Vec<String> = store
                .list(&scope)
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| {
                    serde_json::from_slice::<Value>(&o.json).unwrap()["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(cached(&rig).await, vec!["p-0", "p-1", "p-2"]);
    let admin: Api<Pod> = Api::namespaced(rig.api.client(), "default");
    let now = DeleteParams::default().grace_period(0);
    admin.delete("p-1", &now).await.unwrap();
    rig.restart().await;
    rig.wait_health(true).await;
    bounded("garbage collection", async {
        while cached(&rig).await != vec!["p-0", "p-2"] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Never all at once: a cloud that lists none of them leaves the cache alone.
    admin.delete("p-0", &now).await.unwrap();
    admin.delete("p-2", &now).await.unwrap();
    rig.restart().await;
    rig.wait_health(true).await;
    let store = rig.hub().store().clone();
    let m = rig.hub().resync_metrics().unwrap().clone();
    bounded("the first pass", async {
        while m.passes.get() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = store;
    assert_eq!(cached(&rig).await, vec!["p-0", "p-2"]);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_when_the_link_blackholes_is_served_from_the_cache() {
    let rig = Rig::start().await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    let pods: Api<Pod> = Api::all(rig.client(KUBELET));
    pods.list(&on_node()).await.unwrap();
    rig.wait_list("kubelet", pods_gvr(), "", "", &node_field())
        .await;
    // The link swallows everything from now on; the next list hangs upstream until the
    // health probe times out, then comes from the cache.
    rig.link.blackhole();
    let list = bounded("the fallback list", pods.list(&on_node()))
        .await
        .unwrap();
    assert_eq!(names(&list.items), vec!["web-1"]);
    assert!(rig.hub().local().unwrap().metrics().fallbacks.get() >= 1);
    rig.heal().await;
    rig.shutdown().await;
}

/// One round of cloud-side churn: a new pod, a label change, a delete.
async fn churn(api: &TestApiServer, round: usize) {
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let new = format!("p-{}", 10 + round);
    api.create_object(pod_json(&new, "a", NODE)).await.unwrap();
    let update = format!("p-{}", round % 5);
    let _ = pods
        .patch(
            &update,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"round": round.to_string()}}})),
        )
        .await;
    let _ = pods
        .delete(&format!("p-{}", 5 + round % 5), &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_ends_with_the_apiservers_state_through_cuts_blackholes_and_flaps() {
    let rig = Rig::start().await;
    for i in 0..10 {
        rig.create(pod_json(&format!("p-{i}"), "a", NODE)).await;
    }
    let pods: Api<Pod> = Api::all(rig.client(KUBELET));
    let (reader, writer) = reflector::store::<Pod>();
    let wc = watcher::Config::default()
        .fields(&format!("spec.nodeName={NODE}"))
        .timeout(290);
    let task = tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(pods, wc))
            .default_backoff()
            .touched_objects();
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    bounded("the reflector", reader.wait_until_ready())
        .await
        .unwrap();
    rig.wait_list("kubelet", pods_gvr(), "", "", &node_field())
        .await;
    let converge = |what: &'static str| {
        let reader = reader.clone();
        let api = &rig.api;
        async move {
            let start = Instant::now();
            let deadline = start + Duration::from_secs(60);
            loop {
                let want = cloud_pods(api).await;
                let have: BTreeMap<String, String> = reader
                    .state()
                    .iter()
                    .map(|p| {
                        (
                            p.metadata.name.clone().unwrap(),
                            p.metadata.resource_version.clone().unwrap(),
                        )
                    })
                    .collect();
                if want == have {
                    println!(
                        "{what}: converged in {:?} ({} pods)",
                        start.elapsed(),
                        have.len()
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: no convergence\nwant {want:?}\nhave {have:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A cut link (RST).
    rig.cut().await;
    churn(&rig.api, 0).await;
    rig.heal().await;
    converge("cut").await;
    // A blackholed link (no answer: detected by the probe timeout).
    rig.blackhole().await;
    churn(&rig.api, 1).await;
    rig.heal().await;
    converge("blackhole").await;
    // A flapping link: ten cut/heal cycles with churn in between.
    for round in 2..12 {
        rig.cut().await;
        churn(&rig.api, round).await;
        rig.heal().await;
    }
    converge("10 cut/heal cycles").await;
    task.abort();
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_offline() {
    const KUBECTL: &str = "/usr/bin/kubectl";
    if !crate::clients::tool(KUBECTL, &["version", "--client"]) {
        return;
    }
    let rig = Rig::start().await;
    rig.create(pod_json("web-1", "a", NODE)).await;
    // kubectl is not a default cache agent: the operator adds it.
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "yurt-hub-cfg", "namespace": "kube-system",
                     "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"}},
        "data": {"cache_agents": "kubectl"}}))
        .await;
    let mut agents = rig.hub().agents();
    bounded(
        "kubectl as a cache agent",
        agents.wait_for(|a| a.is_cached(&yurt_core::Component::new("kubectl"))),
    )
    .await
    .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let server = format!("http://{}", rig.hub().proxy_addr());
    let kubectl = move |args: &[&str]| {
        let mut all = vec![
            "--server",
            server.as_str(),
            "--request-timeout=20s",
            "--cache-dir",
        ];
        let dir = cache_dir.path().to_str().unwrap().to_owned();
        let mut owned: Vec<String> = all.drain(..).map(str::to_owned).collect();
        owned.push(dir);
        owned.extend(args.iter().map(|s| (*s).to_owned()));
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(KUBECTL)
                    .args(&owned)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = kubectl(&["get", "pods", "-A"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&["get", "--raw", "/version"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rig.wait_list("kubectl", pods_gvr(), "", "", "").await;
    rig.cut().await;
    let out = kubectl(&["get", "pods", "-A"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-1"), "{text}");
    let out = kubectl(&["get", "--raw", "/version"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["gitVersion"].is_string());
    rig.heal().await;
    rig.shutdown().await;
}

/// Offline kubectl where no client asked for anything while online: the hub fetched
/// `/version`, discovery (both forms) and OpenAPI itself when the cloud turned healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_offline_without_any_client_fetching_first() {
    const KUBECTL: &str = "/usr/bin/kubectl";
    if !crate::clients::tool(KUBECTL, &["version", "--client"]) {
        return;
    }
    let rig = Rig::start().await;
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "yurt-hub-cfg", "namespace": "kube-system",
                     "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"}},
        "data": {"cache_agents": "kubectl"}}))
        .await;
    let mut agents = rig.hub().agents();
    bounded(
        "kubectl as a cache agent",
        agents.wait_for(|a| a.is_cached(&yurt_core::Component::new("kubectl"))),
    )
    .await
    .unwrap();
    // The hub's own prefetch, not a client, stored the documents.
    let store = rig.hub().store().clone();
    let aggregated = "/apis#application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    bounded("the prefetched documents", async {
        loop {
            let mut all = true;
            for key in [
                "/version",
                "/api",
                "/apis",
                "/api/v1",
                aggregated,
                "/apis/apps/v1",
            ] {
                all &= store.get_nonresource(key).await.unwrap().is_some();
            }
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        rig.api
            .traffic()
            .records
            .iter()
            .filter(|r| r.user_agent.starts_with("kubectl"))
            .count(),
        0,
        "no kubectl request reached the cloud"
    );
    rig.cut().await;

    let cache_dir = tempfile::tempdir().unwrap();
    let server = format!("http://{}", rig.hub().proxy_addr());
    let manifest = cache_dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata:\n  k: v\n",
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let mut all: Vec<String> = vec![
            "--server".into(),
            server.clone(),
            "--request-timeout=20s".into(),
            "--cache-dir".into(),
            cache_dir.path().join("kube").to_str().unwrap().to_owned(),
        ];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(KUBECTL)
                    .args(&all)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v: Value = serde_json::from_str(&ok(&kubectl(&["version", "-o", "json"]).await)).unwrap();
    assert!(v["serverVersion"]["gitVersion"].is_string(), "{v}");
    let v: Value =
        serde_json::from_str(&ok(&kubectl(&["get", "--raw", "/version"]).await)).unwrap();
    assert!(v["gitVersion"].is_string(), "{v}");
    let text = ok(&kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ])
    .await);
    assert!(text.contains("configmap/applied"), "{text}");
    rig.heal().await;
    rig.shutdown().await;
}

/// `kubectl get nodes -o wide` through the hub online (the apiserver's Table passed through,
/// aggregated discovery in two requests) and offline (a Table built from the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_the_apiservers_columns_online_and_offline() {
    const KUBECTL: &str = "/usr/bin/kubectl";
    if !crate::clients::tool(KUBECTL, &["version", "--client"]) {
        return;
    }
    let rig = Rig::start().await;
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "yurt-hub-cfg", "namespace": "kube-system",
                     "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"}},
        "data": {"cache_agents": "kubectl"}}))
        .await;
    let mut agents = rig.hub().agents();
    bounded(
        "kubectl as a cache agent",
        agents.wait_for(|a| a.is_cached(&yurt_core::Component::new("kubectl"))),
    )
    .await
    .unwrap();
    rig.create(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"node-role.kubernetes.io/edge": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
            "nodeInfo": {"kubeletVersion": "v1.36.0", "osImage": "EdgeOS 1",
                         "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://2.0"}}}))
        .await;

    let cache_dir = tempfile::tempdir().unwrap();
    let server = format!("http://{}", rig.hub().proxy_addr());
    let kubectl = |args: &[&str]| {
        let mut all: Vec<String> = vec![
            "--server".into(),
            server.clone(),
            "--request-timeout=20s".into(),
            "--cache-dir".into(),
            cache_dir.path().join("kube").to_str().unwrap().to_owned(),
        ];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(KUBECTL)
                    .args(&all)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wide = |text: &str| {
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME"
            ],
            "{text}"
        );
        let row: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(row[..3], [NODE, "Ready", "edge"], "{text}");
        assert_eq!(row[4..7], ["v1.36.0", "10.0.0.5", "<none>"], "{text}");
    };

    rig.api.reset_traffic();
    wide(&ok(&kubectl(&["get", "nodes", "-o", "wide"]).await));
    // Aggregated discovery passed through: /api and /apis once each, no per-group documents.
    let discovery = rig
        .api
        .traffic()
        .records
        .iter()
        .filter(|r| {
            r.user_agent.starts_with("kubectl")
                && r.resource.is_empty()
                && r.path.starts_with("/api")
        })
        .map(|r| r.path.clone())
        .collect::<Vec<_>>();
    assert!(discovery.len() <= 2, "{discovery:?}");

    // The Table list (asked upstream with whole objects) cached the nodes for kubectl;
    // offline, the Table is built from the cache.
    rig.wait_list("kubectl", Gvr::new("", "v1", "nodes"), "", "", "")
        .await;
    rig.cut().await;
    wide(&ok(&kubectl(&["get", "nodes", "-o", "wide"]).await));
    let narrow = ok(&kubectl(&["get", "nodes"]).await);
    assert!(narrow.starts_with("NAME"), "{narrow}");
    assert!(!narrow.contains("INTERNAL-IP"), "{narrow}");
    rig.heal().await;
    rig.shutdown().await;
}

/// kubelet's protobuf write to the hub's listener, over HTTP.
async fn protobuf_write(rig: &Rig, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", KUBELET)
        .header("accept", crate::protobuf::ACCEPT)
        .header("content-type", crate::protobuf::CONTENT_TYPE)
        .body(yurt_cache::body::Body::from(body))
        .unwrap();
    let proxy: http::Uri = format!("http://{}", rig.hub().proxy_addr())
        .parse()
        .unwrap();
    let resp = crate::net::send(&crate::net::plain_client(), &proxy, req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, crate::net::json(resp).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_protobuf_writes_are_journaled_as_json_and_replayed() {
    let rig = Rig::start().await;
    let kubelet = rig.client(KUBELET);
    rig.create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v1"}}))
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(kubelet.clone(), "default");
    let cloud_cm = cms.get("cfg").await.unwrap();
    rig.wait_object(
        "kubelet",
        Gvr::new("", "v1", "configmaps"),
        "default",
        "cfg",
    )
    .await;
    rig.cut().await;

    // kubelet's Event POST in protobuf: accepted (201, JSON), journaled as JSON.
    let (status, created) = protobuf_write(
        &rig,
        "POST",
        "/api/v1/namespaces/default/events",
        crate::protobuf::event("web-1", "protobuf offline"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "Event");
    assert!(
        created["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-1.")
    );
    assert_eq!(created["message"], "protobuf offline");
    let journal = rig.hub().store().journal().await.unwrap();
    assert_eq!(journal.len(), 1);
    let entry = yurt_cache::local::JournalEntry::from_bytes(&journal[0].1).unwrap();
    assert_eq!(entry.content_type, "application/json");
    assert_eq!(entry.body["message"], "protobuf offline");

    // A ConfigMap update in protobuf: applied to the cached copy and journaled as JSON.
    let rv = cloud_cm.metadata.resource_version.clone().unwrap();
    let (status, updated) = protobuf_write(
        &rig,
        "PUT",
        "/api/v1/namespaces/default/configmaps/cfg",
        crate::protobuf::configmap("cfg", &rv, "v2"),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["k"], "v2");
    assert_eq!(cms.get("cfg").await.unwrap().data.unwrap()["k"], "v2");
    let journal = rig.hub().store().journal().await.unwrap();
    assert_eq!(journal.len(), 2);
    let entry = yurt_cache::local::JournalEntry::from_bytes(&journal[1].1).unwrap();
    assert_eq!(entry.content_type, "application/json");
    assert_eq!(entry.body["data"]["k"], "v2");

    // A kind the decoder does not convert: 415 with the decoder's message naming it.
    let (status, refused) = protobuf_write(
        &rig,
        "POST",
        "/apis/apps/v1/namespaces/default/daemonsets",
        crate::protobuf::daemon_set("ds"),
    )
    .await;
    assert_eq!(status, 415, "{refused}");
    assert_eq!(refused["kind"], "Status");
    assert_eq!(refused["reason"], "UnsupportedMediaType");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("Kind=DaemonSet"), "{message}");
    assert_eq!(rig.hub().store().journal().await.unwrap().len(), 2);

    // Back online: the replay sends JSON and the apiserver has the Event.
    rig.heal().await;
    rig.journal_drained().await;
    let cloud_events =
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(rig.api.client(), "default")
            .list(&Default::default())
            .await
            .unwrap();
    let replayed = cloud_events
        .items
        .iter()
        .find(|e| e.message.as_deref() == Some("protobuf offline"))
        .expect("the Event reached the apiserver");
    assert_eq!(replayed.reason.as_deref(), Some("Started"));
    assert_eq!(replayed.involved_object.name.as_deref(), Some("web-1"));
    let cloud_cm = Api::<ConfigMap>::namespaced(rig.api.client(), "default")
        .get("cfg")
        .await
        .unwrap();
    assert_eq!(cloud_cm.data.unwrap()["k"], "v2");
    rig.shutdown().await;
}
