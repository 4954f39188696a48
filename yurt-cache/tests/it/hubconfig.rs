//! The `yurt-hub-cfg` watcher against a TestApiServer through the balancer: a ConfigMap
//! created, changed and deleted changes the published cache agents live.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tokio::sync::watch;
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::CacheAgents;
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::hubconfig::{HubConfig, HubConfigWatcher};
use yurt_core::Component;
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};

async fn wait_agents(rx: &mut watch::Receiver<CacheAgents>, f: impl FnMut(&CacheAgents) -> bool) {
    tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .expect("cache agents within the wait bound")
        .expect("watcher running");
}

#[tokio::test]
async fn follows_the_configmap_live() {
    let api = TestApiServer::start().await.unwrap();
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&api)], HealthConfig::readyz());
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
    let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::RoundRobin);

    let (tx, mut rx) = watch::channel(CacheAgents::defaults("node-1"));
    let watcher = HubConfigWatcher::spawn(
        balancer,
        tx,
        HubConfig::new("node-1").backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let mut synced = watcher.synced();
    tokio::time::timeout(WAIT, synced.wait_for(|s| *s))
        .await
        .unwrap()
        .unwrap();
    let foo = Component::new("foo");
    assert!(!rx.borrow().is_cached(&foo));

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
    wait_agents(&mut rx, |a| a.is_cached(&foo)).await;

    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "kube-system");
    let patch = serde_json::json!({"data": {"cache_agents": "*,-foo"}});
    cms.patch(
        "yurt-hub-cfg",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_agents(&mut rx, |a| a.caches_all() && !a.is_cached(&foo)).await;

    cms.delete("yurt-hub-cfg", &DeleteParams::default())
        .await
        .unwrap();
    wait_agents(&mut rx, |a| *a == CacheAgents::defaults("node-1")).await;

    let cfg = |agents: &str| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "yurt-hub-cfg",
                "namespace": "kube-system",
                "labels": {"openyurt.io/configmap-name": "yurt-hub-cfg"},
            },
            "data": {"cache_agents": agents},
        })
    };

    // A cut watch is resumed from its resourceVersion, without a new list.
    let lists = api.traffic().count_verb("list");
    api.cut_watches();
    api.create_object(cfg("bar")).await.unwrap();
    wait_agents(&mut rx, |a| a.is_cached(&Component::new("bar"))).await;
    assert_eq!(api.traffic().count_verb("list"), lists);

    // After a compaction the resumed watch gets 410: the watcher lists again.
    api.create_object(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "unrelated", "namespace": "default"},
    }))
    .await
    .unwrap();
    api.compact();
    api.cut_watches();
    let patch = serde_json::json!({"data": {"cache_agents": "baz"}});
    cms.patch(
        "yurt-hub-cfg",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_agents(&mut rx, |a| a.is_cached(&Component::new("baz"))).await;
    assert!(api.traffic().count_verb("list") > lists);

    watcher.shutdown().await;
    checker.shutdown().await;
}
