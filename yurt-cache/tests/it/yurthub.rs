//! The hub composed as the `yurthub` example composes it: `ProxyStack` (request info, metrics,
//! cache, balancer) served by `Server`, with the `yurt-hub-cfg` watcher reading through the same
//! stack. A component added to `cache_agents` gets cached live, a list through the listener is
//! teed into the store, and the management server shows it.

use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_cache::admin::{AdminService, ProxyMetrics};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::hubconfig::{HubConfig, HubConfigWatcher};
use yurt_cache::server::{ProxyStack, Server, ServerConfig};
use yurt_cache::store::Store;
use yurt_core::Component;
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};
use crate::util::open;

#[tokio::test]
async fn a_component_added_to_cache_agents_is_cached_through_the_listener() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&api)], HealthConfig::readyz());
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;

    let (tx, mut agents) = watch::channel(CacheAgents::defaults("node-1"));
    let cache = CacheLayer::new(store.clone(), agents.clone());
    let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::Priority);
    let stack = ProxyStack::new(balancer, Some(cache), ProxyMetrics::new());
    let watcher = HubConfigWatcher::spawn(
        stack.clone(),
        tx,
        HubConfig::new("node-1").backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let proxy = Server::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        stack,
        ServerConfig::default(),
    )
    .unwrap();
    let admin = AdminService::new(store.clone(), checker.subscribe(), Registry::default())
        .ready_gate("yurt-hub-cfg", watcher.synced());

    api.create_object(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "yurt-hub-cfg",
            "namespace": "kube-system",
            "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"},
        },
        "data": {"cache_agents": "foo"},
    }))
    .await
    .unwrap();
    let foo = Component::new("foo");
    tokio::time::timeout(WAIT, agents.wait_for(|a| a.is_cached(&foo)))
        .await
        .unwrap()
        .unwrap();
    assert!(admin.not_ready_reasons().await.is_empty());

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = Request::get(format!(
        "http://{}/api/v1/namespaces/kube-system/configmaps",
        proxy.local_addr()
    ))
    .header("user-agent", "foo/1.0")
    .header("accept", "application/json")
    .body(Empty::new())
    .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "yurt-hub-cfg");

    // The tee finishes after the client got the body: wait for the scope to land.
    tokio::time::timeout(WAIT, async {
        loop {
            if !store.scopes("foo").await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the list is cached for component foo");
    let doc = admin.cache_json().await.unwrap();
    assert_eq!(doc["components"]["foo"]["objects"], 1, "{doc}");
    assert_eq!(
        doc["components"]["foo"]["scopes"][0]["resource"],
        "configmaps"
    );

    proxy.shutdown().await;
    watcher.shutdown().await;
    checker.shutdown().await;
    store.shutdown().await;
}
