//! Paginated lists through the running hub: kube-rs follows `limit` + `continue` as client-go's
//! pager does, and the cache replaces the scope only when the last page of a chain arrives,
//! with every page's items at the first page's resourceVersion. A chain the client abandons
//! midway leaves the scope as it was. kube-rs' `watcher` with a page size fills the scope too.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_cache::admin::ProxyMetrics;
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::server::{ProxyStack, Server, ServerConfig};
use yurt_cache::store::{Gvr, ListMeta, ListScope, RedbStore, Store};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};
use crate::util::open;

/// The hub (listener, request info, cache, balancer) in front of one plain-HTTP apiserver.
struct Hub {
    api: TestApiServer,
    url: String,
    store: RedbStore,
    layer: CacheLayer,
    proxy: Server,
    checker: HealthChecker,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start() -> Hub {
        let api = TestApiServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let checker = HealthChecker::spawn(plain_client(), vec![uri(&api)], HealthConfig::readyz());
        wait_for(&mut checker.subscribe(), |s| s.servers[0].healthy).await;
        let (_tx, rx) = watch::channel(CacheAgents::defaults("edge-1"));
        let layer = CacheLayer::new(store.clone(), rx);
        let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::RoundRobin);
        let stack = ProxyStack::new(balancer, Some(layer.clone()), ProxyMetrics::new());
        let proxy = Server::spawn(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            stack,
            ServerConfig::default(),
        )
        .unwrap();
        Hub {
            api,
            url: format!("http://{}", proxy.local_addr()),
            store,
            layer,
            proxy,
            checker,
            _dir: dir,
        }
    }

    /// kube-rs to the hub as kubelet (a cached component).
    fn configmaps(&self) -> Api<ConfigMap> {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("kubelet/v1.36.0 (linux/amd64)"),
        ));
        Api::namespaced(kube::Client::try_from(config).unwrap(), "default")
    }

    /// kube-rs straight to the apiserver.
    fn direct(&self) -> Api<ConfigMap> {
        Api::namespaced(self.api.client(), "default")
    }

    async fn create(&self, name: &str) {
        self.api
            .create_object(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"k": name},
            }))
            .await
            .unwrap();
    }

    /// Waits (bounded) until no tee task runs.
    async fn settled(&self) {
        let metrics = self.layer.metrics().clone();
        bounded("tees settled", async {
            while metrics.active_tees.get() != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    /// `(name, resourceVersion)` of the kubelet's cached ConfigMaps of `default`, and the
    /// scope's list metadata.
    async fn cached(&self) -> (Vec<(String, String)>, Option<ListMeta>) {
        let scope = ListScope::parse(
            "kubelet",
            &Gvr::new("", "v1", "configmaps"),
            "default",
            "",
            "",
        )
        .unwrap();
        let list = self.store.list(&scope).await.unwrap();
        let mut items: Vec<_> = list
            .items
            .iter()
            .map(|o| {
                let v: Value = serde_json::from_slice(&o.json).unwrap();
                (
                    v["metadata"]["name"].as_str().unwrap().to_owned(),
                    o.resource_version.clone(),
                )
            })
            .collect();
        items.sort();
        (items, list.meta)
    }

    async fn shutdown(self) {
        self.proxy.shutdown().await;
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

fn name_rvs(items: &[ConfigMap]) -> Vec<(String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Lists through `api` in pages of `limit` as client-go's pager does, following `continue`
/// for at most `pages` pages. Returns the items, the first page's resourceVersion and whether
/// the chain was followed to its end.
async fn paged(api: &Api<ConfigMap>, limit: u32, pages: usize) -> (Vec<ConfigMap>, String, bool) {
    let mut items = Vec::new();
    let mut rv = String::new();
    let mut token: Option<String> = None;
    for page in 0..pages {
        let mut lp = ListParams::default().limit(limit);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = bounded("a page", api.list(&lp)).await.unwrap();
        if page == 0 {
            rv = list.metadata.resource_version.clone().unwrap_or_default();
        }
        items.extend(list.items);
        token = list.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            return (items, rv, true);
        }
    }
    (items, rv, false)
}

#[tokio::test]
async fn a_paginated_list_replaces_the_scope_when_its_last_page_arrives() {
    let hub = Hub::start().await;
    for i in 0..25 {
        hub.create(&format!("cm-{i:02}")).await;
    }
    // A first, unpaginated list fills the cache; then the apiserver changes: two ConfigMaps
    // deleted, three added. A later page alone would not hold them all.
    bounded("list", hub.configmaps().list(&ListParams::default()))
        .await
        .unwrap();
    hub.settled().await;
    assert_eq!(hub.cached().await.0.len(), 25);
    for name in ["cm-03", "cm-17"] {
        hub.direct()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["new-a", "new-b", "new-c"] {
        hub.create(name).await;
    }

    let (items, rv, complete) = paged(&hub.configmaps(), 10, 10).await;
    assert!(complete);
    assert_eq!(items.len(), 26, "three pages of at most 10");
    hub.settled().await;

    let truth = name_rvs(
        &bounded("direct list", hub.direct().list(&ListParams::default()))
            .await
            .unwrap()
            .items,
    );
    assert_eq!(
        name_rvs(&items),
        truth,
        "the pages are the apiserver's objects"
    );
    let (cached, meta) = hub.cached().await;
    assert_eq!(
        cached, truth,
        "the cache holds exactly the apiserver's objects"
    );
    let meta = meta.expect("the scope was recorded");
    assert_eq!(
        meta.resource_version, rv,
        "at the first page's resourceVersion"
    );
    assert_eq!(meta.kind, "ConfigMapList");

    // A paginated list that fits one page (no `continue`) is a whole list, replaced at once.
    hub.direct()
        .delete("new-a", &DeleteParams::default())
        .await
        .unwrap();
    let (items, _, complete) = paged(&hub.configmaps(), 500, 1).await;
    assert!(complete);
    hub.settled().await;
    assert_eq!(hub.cached().await.0, name_rvs(&items));
    hub.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_chain_leaves_the_previous_contents() {
    let hub = Hub::start().await;
    for i in 0..25 {
        hub.create(&format!("cm-{i:02}")).await;
    }
    bounded("list", hub.configmaps().list(&ListParams::default()))
        .await
        .unwrap();
    hub.settled().await;
    let (before, meta_before) = hub.cached().await;
    assert_eq!(before.len(), 25);
    hub.direct()
        .delete("cm-00", &DeleteParams::default())
        .await
        .unwrap();
    hub.create("late").await;

    // Two pages of three, then the client stops following.
    let (items, _, complete) = paged(&hub.configmaps(), 10, 2).await;
    assert!(!complete);
    assert_eq!(items.len(), 20);
    hub.settled().await;
    let (after, meta_after) = hub.cached().await;
    assert_eq!(after, before, "an abandoned chain replaces nothing");
    assert_eq!(meta_after, meta_before);

    // A page continuing a token the hub never saw (the chain began elsewhere, at a place
    // the abandoned chain's tokens do not name) replaces nothing either, even though it is
    // the last page.
    let first = bounded(
        "first page direct",
        hub.direct().list(&ListParams::default().limit(15)),
    )
    .await
    .unwrap();
    let token = first.metadata.continue_.expect("a continue token");
    let last = bounded(
        "last page through the hub",
        hub.configmaps()
            .list(&ListParams::default().limit(15).continue_token(&token)),
    )
    .await
    .unwrap();
    assert!(last.metadata.continue_.is_none_or(|c| c.is_empty()));
    hub.settled().await;
    assert_eq!(hub.cached().await.0, before);

    // Following a chain to its end afterwards replaces the scope.
    let (items, _, complete) = paged(&hub.configmaps(), 10, 10).await;
    assert!(complete);
    hub.settled().await;
    assert_eq!(hub.cached().await.0, name_rvs(&items));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_paging_watcher_fills_the_scope() {
    use futures::StreamExt;
    use kube::runtime::watcher;

    let hub = Hub::start().await;
    for i in 0..23 {
        hub.create(&format!("cm-{i:02}")).await;
    }
    // kube-rs' watcher lists in pages of 7 (four pages), then watches.
    let mut events = watcher(hub.configmaps(), watcher::Config::default().page_size(7)).boxed();
    let mut seen = Vec::new();
    bounded("the watcher's initial list", async {
        loop {
            match events.next().await {
                Some(Ok(watcher::Event::InitApply(cm))) => seen.push(cm),
                Some(Ok(watcher::Event::InitDone)) => break,
                Some(Ok(_)) => {}
                other => panic!("watcher: {other:?}"),
            }
        }
    })
    .await;
    drop(events);
    hub.settled().await;
    assert_eq!(seen.len(), 23);
    let (cached, meta) = hub.cached().await;
    assert_eq!(cached, name_rvs(&seen), "every page's objects are cached");
    assert!(meta.is_some(), "the scope was recorded");
    hub.shutdown().await;
}
