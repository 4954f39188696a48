//! The filter layer through a running hub (request info, metrics, filter, cache, balancer) in
//! front of a TestApiServer, with kube-rs clients identifying as kube-proxy, kubelet or coredns.
//! The filters' view (NodePools, Services) is followed by a `ViewWatcher` through the same
//! stack, as the `yurthub` binary does.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::core::CustomResourceExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_cache::admin::{AdminService, ProxyMetrics, Registry};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::filter::{
    ClusterView, ExtraComponents, FilterConfig, FilterLayer, FilterSwitches, PoolSource,
    ViewWatcher, ViewWatcherConfig,
};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::hubconfig::{HubConfig, HubConfigWatcher};
use yurt_cache::server::{ProxyStack, Server, ServerConfig};
use yurt_cache::store::{Gvr, ObjectKey, RedbStore, Store};
use yurt_core::crd::{NodeBucket, NodePool};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};
use crate::util::open;

const NODE: &str = "edge-1";

/// A hub with the filter layer in front of `api`, its view followed through its own stack and
/// its `yurt-hub-cfg` filter keys through a `HubConfigWatcher`.
struct Hub {
    url: String,
    store: RedbStore,
    proxy: Server,
    checker: HealthChecker,
    view: ViewWatcher,
    hubconfig: HubConfigWatcher,
    extra: watch::Receiver<ExtraComponents>,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start(api: &TestApiServer) -> Hub {
        Hub::start_with(api, PoolSource::NodePool).await
    }

    async fn start_with(api: &TestApiServer, pools: PoolSource) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let checker = HealthChecker::spawn(plain_client(), vec![uri(api)], HealthConfig::readyz());
        wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
        let (agents_tx, agents_rx) = watch::channel(CacheAgents::defaults(NODE));
        let (extra_tx, extra_rx) = watch::channel(ExtraComponents::default());
        let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::new()));
        let filter = FilterLayer::new(
            FilterConfig::new(NODE),
            FilterSwitches::default(),
            extra_rx.clone(),
            view_rx,
        );
        let cache = CacheLayer::new(store.clone(), agents_rx);
        let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::RoundRobin);
        let stack = ProxyStack::with_filter(
            balancer,
            Some(filter),
            None,
            Some(cache),
            ProxyMetrics::new(),
        );
        let backoff = (Duration::from_millis(50), Duration::from_millis(500));
        let view = ViewWatcher::spawn(
            stack.clone(),
            view_tx,
            ViewWatcherConfig::default()
                .backoff(backoff.0, backoff.1)
                .pools(pools),
        );
        let hubconfig = HubConfigWatcher::spawn_with_filters(
            stack.clone(),
            agents_tx,
            extra_tx,
            HubConfig::new(NODE).backoff(backoff.0, backoff.1),
        );
        let proxy = Server::spawn(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            stack,
            ServerConfig::default(),
        )
        .unwrap();
        let mut synced = view.synced();
        bounded("view synced", synced.wait_for(|s| *s))
            .await
            .unwrap();
        Hub {
            url: format!("http://{}", proxy.local_addr()),
            store,
            proxy,
            checker,
            view,
            hubconfig,
            extra: extra_rx,
            _dir: dir,
        }
    }

    /// A kube-rs client to the hub with `user_agent`.
    fn kube(&self, user_agent: &'static str) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(user_agent),
        ));
        kube::Client::try_from(config).unwrap()
    }

    /// Waits until the view satisfies `f`.
    async fn wait_view(&self, f: impl FnMut(&Arc<ClusterView>) -> bool) {
        let mut rx = self.view.view();
        bounded("view", rx.wait_for(f)).await.unwrap();
    }

    async fn shutdown(self) {
        self.proxy.shutdown().await;
        self.view.shutdown().await;
        self.hubconfig.shutdown().await;
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}

const KUBE_PROXY: &str = "kube-proxy/v1.36.0 (linux/amd64) kubernetes/abc";
const KUBELET: &str = "kubelet/v1.36.0 (linux/amd64) kubernetes/abc";
const COREDNS: &str = "coredns/1.11.1";
const KUBECTL: &str = "kubectl/v1.36.0";

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

async fn create(api: &TestApiServer, obj: Value) -> Value {
    bounded("create", api.create_object(obj)).await.unwrap()
}

/// The NodePool CRD, pool `hangzhou` with `members`, Service `default/web` annotated with
/// `topology`, and its EndpointSlice and Endpoints with endpoints on edge-1, edge-2, cloud-1.
async fn seed_topology(api: &TestApiServer, members: &[&str], topology: &str) {
    create(api, serde_json::to_value(NodePool::crd()).unwrap()).await;
    create(
        api,
        json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "hangzhou"}, "spec": {"type": "Edge"}}),
    )
    .await;
    set_members(api, members).await;
    create(
        api,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default",
                "annotations": {"openyurt.io/topologyKeys": topology}},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}),
    )
    .await;
    create(
        api,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abcde", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "edge-1"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "nodeName": "edge-2"},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "nodeName": "cloud-1"}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}),
    )
    .await;
    create(
        api,
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [
                {"ip": "10.0.0.1", "nodeName": "edge-1"},
                {"ip": "10.0.0.2", "nodeName": "edge-2"},
                {"ip": "10.0.0.3", "nodeName": "cloud-1"}],
                "ports": [{"port": 8080}]}]}),
    )
    .await;
}

async fn set_members(api: &TestApiServer, members: &[&str]) {
    let pools: Api<NodePool> = Api::all(api.client());
    let patch = Patch::Merge(json!({"status": {"nodes": members}}));
    bounded(
        "patch pool status",
        pools.patch_status("hangzhou", &PatchParams::default(), &patch),
    )
    .await
    .unwrap();
}

fn slice_nodes(s: &EndpointSlice) -> Vec<String> {
    s.endpoints
        .iter()
        .flatten()
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The object named `name` among `items`.
fn named<'a, K: kube::Resource>(items: &'a [K], name: &str) -> &'a K {
    items
        .iter()
        .find(|i| i.meta().name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} listed"))
}

fn first_address(s: &EndpointSlice) -> Vec<String> {
    s.endpoints.as_ref().unwrap()[0].addresses.clone()
}

async fn next_event<T, S>(stream: &mut S) -> WatchEvent<T>
where
    S: Stream<Item = kube::Result<WatchEvent<T>>> + Unpin,
{
    loop {
        let ev = bounded("watch event", stream.next())
            .await
            .expect("the watch stays open")
            .unwrap();
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            return ev;
        }
    }
}

#[tokio::test]
async fn servicetopology_lists_watches_and_refilters_on_pool_change() {
    let api = TestApiServer::start().await.unwrap();
    seed_topology(&api, &["edge-1", "edge-2"], "openyurt.io/nodepool").await;
    let hub = Hub::start(&api).await;
    hub.wait_view(|v| {
        v.pool_members("hangzhou").len() == 2 && v.topology_keys("default", "web").is_some()
    })
    .await;

    let slices: Api<EndpointSlice> = Api::namespaced(hub.kube(KUBE_PROXY), "default");
    let list = bounded("list", slices.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(
        slice_nodes(named(&list.items, "web-abcde")),
        ["edge-1", "edge-2"]
    );
    // coredns is filtered too, core Endpoints included; kubectl is not.
    let eps: Api<Endpoints> = Api::namespaced(hub.kube(COREDNS), "default");
    let web = bounded("list endpoints", eps.list(&ListParams::default()))
        .await
        .unwrap();
    let addrs = named(&web.items, "web").subsets.as_ref().unwrap()[0]
        .addresses
        .as_ref()
        .unwrap()
        .len();
    assert_eq!(addrs, 2);
    let raw: Api<EndpointSlice> = Api::namespaced(hub.kube(KUBECTL), "default");
    let all = bounded("list unfiltered", raw.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(slice_nodes(named(&all.items, "web-abcde")).len(), 3);

    // An open watch gets the slice re-filtered when the pool shrinks, then grows.
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut events = bounded("watch", slices.watch(&WatchParams::default(), &rv))
        .await
        .unwrap()
        .boxed();
    set_members(&api, &["edge-1"]).await;
    match next_event(&mut events).await {
        WatchEvent::Modified(s) => assert_eq!(slice_nodes(&s), ["edge-1"]),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    set_members(&api, &["edge-1", "cloud-1"]).await;
    match next_event(&mut events).await {
        WatchEvent::Modified(s) => assert_eq!(slice_nodes(&s), ["edge-1", "cloud-1"]),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // A change of the slice itself is filtered as it passes.
    let patch = json!({"endpoints": [
        {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "nodeName": "edge-2"},
        {"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "nodeName": "cloud-1"}]});
    let direct = Api::<EndpointSlice>::namespaced(api.client(), "default");
    bounded(
        "patch",
        direct.patch("web-abcde", &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Modified(s) => assert_eq!(slice_nodes(&s), ["cloud-1"]),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}

#[tokio::test]
async fn discardcloudservice_drops_on_list_and_watch_as_deleted() {
    let api = TestApiServer::start().await.unwrap();
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
    )
    .await;
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x-tunnel-server-internal-svc", "namespace": "kube-system"},
            "spec": {"ports": [{"port": 10250}]}}),
    )
    .await;
    let hub = Hub::start(&api).await;
    let services: Api<Service> = Api::all(hub.kube(KUBE_PROXY));
    let list = bounded("list", services.list(&ListParams::default()))
        .await
        .unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert!(names.contains(&"lb".to_owned()), "{names:?}");
    assert!(!names.contains(&"x-tunnel-server-internal-svc".to_owned()));

    let rv = list.metadata.resource_version.clone().unwrap();
    let mut events = bounded("watch", services.watch(&WatchParams::default(), &rv))
        .await
        .unwrap()
        .boxed();
    let patch = json!({"metadata": {"annotations": {"svc.openyurt.io/discard": "true"}}});
    let direct = Api::<Service>::namespaced(api.client(), "default");
    bounded(
        "patch",
        direct.patch("lb", &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("lb")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}

#[tokio::test]
async fn nodeportisolation_follows_the_pool() {
    let api = TestApiServer::start().await.unwrap();
    seed_topology(&api, &["edge-1"], "kubernetes.io/hostname").await;
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "np", "namespace": "default",
                "annotations": {"nodeport.openyurt.io/listen": "hangzhou"}},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    )
    .await;
    let hub = Hub::start(&api).await;
    hub.wait_view(|v| v.pool_members("hangzhou").len() == 1)
        .await;
    let services: Api<Service> = Api::namespaced(hub.kube(KUBE_PROXY), "default");
    let list = bounded("list", services.list(&ListParams::default()))
        .await
        .unwrap();
    assert!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("np"))
    );
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut events = bounded("watch", services.watch(&WatchParams::default(), &rv))
        .await
        .unwrap()
        .boxed();
    // Annotated away from the pool: the watch sees it deleted.
    let patch = json!({"metadata": {"annotations": {"nodeport.openyurt.io/listen": "-hangzhou"}}});
    let direct = Api::<Service>::namespaced(api.client(), "default");
    bounded(
        "patch",
        direct.patch("np", &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("np")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    // The node leaves the pool: the Service is no longer isolated and comes back.
    set_members(&api, &[]).await;
    match next_event(&mut events).await {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("np")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}

#[tokio::test]
async fn kubelet_filters_masterservice_inclusterconfig_serviceenvupdater() {
    // The testkit serves Service and EndpointSlice `default/kubernetes` as an apiserver does.
    let api = TestApiServer::start().await.unwrap();
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": "clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\nmode: iptables\n"}}),
    )
    .await;
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "nginx",
                "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"},
                        {"name": "KUBERNETES_SERVICE_PORT", "value": "443"}]}]}}),
    )
    .await;
    let hub = Hub::start(&api).await;
    let kubelet = hub.kube(KUBELET);

    // masterservice, list and watch.
    let services: Api<Service> = Api::namespaced(kubelet.clone(), "default");
    let list = bounded("list", services.list(&ListParams::default()))
        .await
        .unwrap();
    let spec = named(&list.items, "kubernetes").spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("169.254.2.1"));
    assert_eq!(spec.cluster_ips, Some(vec!["169.254.2.1".to_owned()]));
    let https = spec.ports.unwrap();
    let https = https
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .unwrap();
    assert_eq!(https.port, 10268);
    let mut events = bounded("watch", services.watch(&WatchParams::default(), "0"))
        .await
        .unwrap()
        .boxed();
    match next_event(&mut events).await {
        WatchEvent::Added(s) => {
            assert_eq!(s.spec.unwrap().cluster_ip.as_deref(), Some("169.254.2.1"))
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    drop(events);
    // The store keeps what the apiserver said (the tee writes it as the list streams).
    let key = ObjectKey::new(
        "kubelet",
        &Gvr::new("", "v1", "services"),
        "default",
        "kubernetes",
    );
    let stored = bounded("stored", async {
        loop {
            if let Some(o) = hub.store.get(&key).await.unwrap() {
                break o;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let stored: Value = serde_json::from_slice(&stored.json).unwrap();
    assert_ne!(stored["spec"]["clusterIP"], "169.254.2.1");
    // The hub's own requests are never filtered.
    let own: Api<Service> = Api::namespaced(hub.kube("yurthub/v1"), "default");
    let raw = bounded("own list", own.list(&ListParams::default()))
        .await
        .unwrap();
    assert_ne!(
        named(&raw.items, "kubernetes")
            .spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("169.254.2.1")
    );

    // inclusterconfig on get and list.
    let cms: Api<ConfigMap> = Api::namespaced(kubelet.clone(), "kube-system");
    let cm = bounded("get", cms.get("kube-proxy")).await.unwrap();
    let conf = &cm.data.unwrap()["config.conf"];
    assert!(conf.contains("  #kubeconfig: /var/lib"), "{conf}");
    let listed = bounded("list", cms.list(&ListParams::default()))
        .await
        .unwrap();
    let kube_proxy = listed
        .items
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("kube-proxy"))
        .unwrap();
    let conf = &kube_proxy.data.as_ref().unwrap()["config.conf"];
    assert!(conf.contains("#kubeconfig"), "{conf}");

    // serviceenvupdater on get, list and watch.
    let pods: Api<Pod> = Api::namespaced(kubelet, "default");
    let env = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| e.value.unwrap())
            .collect::<Vec<_>>()
    };
    let pod = bounded("get pod", pods.get("app")).await.unwrap();
    assert_eq!(env(&pod), ["169.254.2.1", "10268"]);
    let list = bounded("list pods", pods.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(env(&list.items[0]), ["169.254.2.1", "10268"]);
    let mut events = bounded("watch pods", pods.watch(&WatchParams::default(), "0"))
        .await
        .unwrap()
        .boxed();
    match next_event(&mut events).await {
        WatchEvent::Added(p) => assert_eq!(env(&p), ["169.254.2.1", "10268"]),
        other => panic!("expected ADDED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}

#[tokio::test]
async fn forwardkubesvctraffic_and_configmap_components() {
    let api = TestApiServer::start().await.unwrap();
    let hub = Hub::start(&api).await;
    let slices: Api<EndpointSlice> = Api::namespaced(hub.kube(KUBE_PROXY), "default");
    let list = bounded("list", slices.list(&ListParams::default()))
        .await
        .unwrap();
    let s = named(&list.items, "kubernetes");
    assert_eq!(first_address(s), ["169.254.2.1"]);
    let ports = s.ports.as_ref().unwrap();
    let https = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .unwrap();
    assert_eq!(https.port, Some(10268));
    let mut events = bounded("watch", slices.watch(&WatchParams::default(), "0"))
        .await
        .unwrap()
        .boxed();
    match next_event(&mut events).await {
        WatchEvent::Added(s) => {
            assert_eq!(s.metadata.name.as_deref(), Some("kubernetes"));
            assert_eq!(first_address(&s), ["169.254.2.1"]);
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    drop(events);

    // `yurt-hub-cfg` key `forwardkubesvctraffic: envoy` adds a component, live.
    let envoy: Api<EndpointSlice> = Api::namespaced(hub.kube("envoy/1.30"), "default");
    let before = bounded("list", envoy.list(&ListParams::default()))
        .await
        .unwrap();
    assert_ne!(
        first_address(named(&before.items, "kubernetes")),
        ["169.254.2.1"]
    );
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "yurt-hub-cfg", "namespace": "kube-system",
                "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"}},
            "data": {"forwardkubesvctraffic": "envoy"}}),
    )
    .await;
    let mut extra = hub.extra.clone();
    bounded(
        "filter components",
        extra.wait_for(|e| {
            e.get(yurt_cache::filter::FilterName::ForwardKubeSvcTraffic)
                .contains(&"envoy".to_owned())
        }),
    )
    .await
    .unwrap();
    let after = bounded("list", envoy.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(
        first_address(named(&after.items, "kubernetes")),
        ["169.254.2.1"]
    );

    // Deleting the ConfigMap resets to the defaults.
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "kube-system");
    bounded("delete", cms.delete("yurt-hub-cfg", &Default::default()))
        .await
        .unwrap();
    bounded(
        "filter components reset",
        extra.wait_for(|e| *e == ExtraComponents::default()),
    )
    .await
    .unwrap();
    let reset = bounded("list", envoy.list(&ListParams::default()))
        .await
        .unwrap();
    assert_ne!(
        first_address(named(&reset.items, "kubernetes")),
        ["169.254.2.1"]
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn readyz_waits_for_the_filter_view() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let checker = HealthChecker::spawn(
        plain_client(),
        vec![uri(&api)],
        HealthConfig::readyz().interval(Duration::from_millis(100)),
    );
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
    api.go_down().await;
    wait_for(&mut checker.subscribe(), |s| !s.any_healthy()).await;

    let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::RoundRobin);
    let stack = ProxyStack::new(balancer, None, ProxyMetrics::new());
    let (view_tx, _view_rx) = watch::channel(Arc::new(ClusterView::new()));
    let view = ViewWatcher::spawn(
        stack,
        view_tx,
        ViewWatcherConfig::default().backoff(Duration::from_millis(50), Duration::from_millis(200)),
    );
    let admin = AdminService::new(store.clone(), checker.subscribe(), Registry::default())
        .ready_gate("resource filters", view.synced());
    // Nothing can be listed while the apiserver is down.
    let reasons = bounded("readyz", admin.not_ready_reasons()).await;
    assert!(
        reasons.contains(&"resource filters not ready".to_owned()),
        "{reasons:?}"
    );

    api.come_up().await.unwrap();
    let mut synced = view.synced();
    bounded("view synced", synced.wait_for(|s| *s))
        .await
        .unwrap();
    let reasons = bounded("readyz", admin.not_ready_reasons()).await;
    assert!(reasons.is_empty(), "{reasons:?}");
    view.shutdown().await;
    checker.shutdown().await;
    store.shutdown().await;
}

#[tokio::test]
async fn servicetopology_from_nodebuckets() {
    let api = TestApiServer::start().await.unwrap();
    // Pool membership from NodeBuckets: the NodePool says nothing of edge-2.
    seed_topology(&api, &["edge-1"], "kubernetes.io/zone").await;
    create(&api, serde_json::to_value(NodeBucket::crd()).unwrap()).await;
    let bucket = |name: &str, nodes: &[&str]| {
        let nodes: Vec<Value> = nodes.iter().map(|n| json!({"name": n})).collect();
        json!({"apiVersion": "apps.openyurt.io/v1alpha1", "kind": "NodeBucket",
            "metadata": {"name": name, "labels": {"openyurt.io/pool-name": "hangzhou"}},
            "numNodes": nodes.len(), "nodes": nodes})
    };
    create(&api, bucket("hangzhou-1", &["edge-1"])).await;
    create(&api, bucket("hangzhou-2", &["edge-2"])).await;
    let hub = Hub::start_with(&api, PoolSource::NodeBucket).await;
    hub.wait_view(|v| v.pool_members("hangzhou").len() == 2)
        .await;
    let slices: Api<EndpointSlice> = Api::namespaced(hub.kube(COREDNS), "default");
    let list = bounded("list", slices.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(
        slice_nodes(named(&list.items, "web-abcde")),
        ["edge-1", "edge-2"]
    );
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut events = bounded("watch", slices.watch(&WatchParams::default(), &rv))
        .await
        .unwrap()
        .boxed();
    let buckets: Api<NodeBucket> = Api::all(api.client());
    bounded(
        "delete bucket",
        buckets.delete("hangzhou-2", &Default::default()),
    )
    .await
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Modified(s) => assert_eq!(slice_nodes(&s), ["edge-1"]),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}

#[tokio::test]
async fn inclusterconfig_on_watch_and_service_annotation_change() {
    let api = TestApiServer::start().await.unwrap();
    seed_topology(&api, &["edge-1", "edge-2"], "kubernetes.io/hostname").await;
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": "clientConnection:\n  kubeconfig: /k.conf\n"}}),
    )
    .await;
    let hub = Hub::start(&api).await;
    hub.wait_view(|v| v.topology_keys("default", "web").is_some())
        .await;

    let cms: Api<ConfigMap> = Api::namespaced(hub.kube(KUBELET), "kube-system");
    let mut events = bounded("watch", cms.watch(&WatchParams::default(), "0"))
        .await
        .unwrap()
        .boxed();
    loop {
        match next_event(&mut events).await {
            WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("kube-proxy") => {
                let conf = &c.data.unwrap()["config.conf"];
                assert_eq!(conf, "clientConnection:\n  #kubeconfig: /k.conf\n");
                break;
            }
            WatchEvent::Added(_) => continue,
            other => panic!("expected ADDED, got {other:?}"),
        }
    }
    drop(events);

    // Host topology: only edge-1; the annotation changes to the pool: edge-2 comes back.
    let slices: Api<EndpointSlice> = Api::namespaced(hub.kube(KUBE_PROXY), "default");
    let list = bounded("list", slices.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(slice_nodes(named(&list.items, "web-abcde")), ["edge-1"]);
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut events = bounded("watch", slices.watch(&WatchParams::default(), &rv))
        .await
        .unwrap()
        .boxed();
    let patch =
        json!({"metadata": {"annotations": {"openyurt.io/topologyKeys": "openyurt.io/nodepool"}}});
    let direct = Api::<Service>::namespaced(api.client(), "default");
    bounded(
        "patch",
        direct.patch("web", &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Modified(s) => assert_eq!(slice_nodes(&s), ["edge-1", "edge-2"]),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    drop(events);
    hub.shutdown().await;
}
