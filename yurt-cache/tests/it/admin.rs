//! The management server: healthz, readyz before and after the first health round, the metrics
//! text after proxied requests, and the `/v1/cache` document.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{ServiceBuilder, ServiceExt};
use yurt_cache::admin::{AdminService, MetricsLayer, ProxyMetrics};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::health::{HealthChecker, HealthConfig, HealthMetrics, HealthSnapshot};
use yurt_cache::request_info::RequestInfoLayer;
use yurt_cache::server::{Server, ServerConfig};
use yurt_cache::store::{ListMeta, ListScope, Store};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, bytes, get, plain_client, uri};
use crate::util::{open, pod, pods};

type Http = Client<HttpConnector, Empty<Bytes>>;

async fn fetch(client: &Http, addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_health_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (health_tx, health_rx) = watch::channel(HealthSnapshot::unprobed(vec![
        "https://127.0.0.1:6443".parse().unwrap(),
    ]));
    let (gate_tx, gate_rx) = watch::channel(false);
    let admin = AdminService::new(store.clone(), health_rx, Registry::default())
        .ready_gate("yurt-hub-cfg", gate_rx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::spawn(listener, admin, ServerConfig::default()).unwrap();
    let addr = server.local_addr();
    let client = Client::builder(TokioExecutor::new()).build_http();

    assert_eq!(
        fetch(&client, addr, "/v1/healthz").await,
        (StatusCode::OK, "OK".into())
    );
    let (status, reason) = fetch(&client, addr, "/v1/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reason.contains("no health check round"), "{reason}");
    assert!(reason.contains("yurt-hub-cfg not ready"), "{reason}");

    health_tx.send_modify(|s| s.round = 1);
    let (status, reason) = fetch(&client, addr, "/v1/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!reason.contains("no health check round"), "{reason}");
    gate_tx.send_replace(true);
    assert_eq!(
        fetch(&client, addr, "/v1/readyz").await,
        (StatusCode::OK, "OK".into())
    );

    assert_eq!(fetch(&client, addr, "/nope").await.0, StatusCode::NOT_FOUND);
    server.shutdown().await;
    store.shutdown().await;
}

#[tokio::test]
async fn metrics_and_cache_report_requests_health_and_store() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    let mut registry = Registry::default();
    let health_metrics = HealthMetrics::default();
    health_metrics.register(&mut registry);
    let proxy_metrics = ProxyMetrics::new();
    proxy_metrics.register(&mut registry);

    let checker = HealthChecker::spawn(
        plain_client(),
        vec![uri(&api)],
        HealthConfig::readyz().metrics(health_metrics),
    );
    wait_for(&mut checker.subscribe(), |s| s.round >= 1).await;
    let stack = ServiceBuilder::new()
        .layer(RequestInfoLayer::new())
        .layer(MetricsLayer::new(proxy_metrics))
        .service(Balancer::new(
            plain_client(),
            checker.subscribe(),
            Strategy::RoundRobin,
        ));
    let resp = tokio::time::timeout(
        WAIT,
        stack.oneshot(get("/api/v1/namespaces/default/configmaps")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let listed = bytes(resp).await;

    // Something in the store, for its figures and the cache document.
    store
        .put(
            "kubelet",
            &pods(),
            pod("default", "web", 5, "web", "node-1"),
        )
        .await
        .unwrap();
    let scope = ListScope::parse("kubelet", &pods(), "default", "", "").unwrap();
    let meta = ListMeta {
        resource_version: "5".into(),
        kind: "PodList".into(),
        api_version: "v1".into(),
        completed_at_ms: 1_700_000_000_000,
    };
    store
        .replace_list(
            &scope,
            meta,
            vec![pod("default", "web", 5, "web", "node-1")],
        )
        .await
        .unwrap();

    let admin = AdminService::new(store.clone(), checker.subscribe(), registry);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::spawn(listener, admin, ServerConfig::default()).unwrap();
    let addr = server.local_addr();
    let client = Client::builder(TokioExecutor::new()).build_http();

    let (status, text) = fetch(&client, addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    };
    has(r#"yurthub_requests_total{verb="list",resource="configmaps",component="kubelet"} 1"#);
    has(r#"yurthub_in_flight_requests{verb="list",resource="configmaps",component="kubelet"} 0"#);
    has(&format!(
        r#"yurthub_proxied_response_bytes_total{{component="kubelet"}} {}"#,
        listed.len()
    ));
    has(&format!(
        r#"yurt_cache_health_server_healthy{{server="{}"}} 1"#,
        uri(&api)
    ));
    has("yurthub_store_objects 1");
    has("yurthub_store_lists 1");
    assert!(
        text.lines()
            .any(|l| l.starts_with("yurthub_store_file_bytes ")),
        "{text}"
    );

    let (status, doc) = fetch(&client, addr, "/v1/cache").await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["usage"]["objects"], 1);
    let kubelet = &doc["components"]["kubelet"];
    assert_eq!(kubelet["objects"], 1);
    assert_eq!(kubelet["scopes"][0]["resource"], "pods");
    assert_eq!(kubelet["scopes"][0]["namespace"], "default");
    assert_eq!(kubelet["scopes"][0]["resourceVersion"], "5");
    assert_eq!(kubelet["scopes"][0]["completedAtMs"], 1_700_000_000_000u64);

    server.shutdown().await;
    checker.shutdown().await;
    store.shutdown().await;
}
