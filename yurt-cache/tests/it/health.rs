//! The health checker against TestApiServers: the Lease heartbeat, thresholds, go_down/come_up,
//! the readyz probe on its own schedule, shutdown; and the running hub without any kubelet
//! behind a ChaosLink: healthy while the cloud answers, and back on its own after a heal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use yurt_cache::health::{
    HealthChecker, HealthConfig, HealthMetrics, HealthSnapshot, ServerLabels,
};
use yurt_testkit::TestApiServer;

use crate::net::{WAIT, bytes, hub_client, plain_client, send, uri};

/// Waits (bounded) for a snapshot satisfying `f` and returns it.
pub(crate) async fn wait_for(
    rx: &mut watch::Receiver<HealthSnapshot>,
    f: impl FnMut(&HealthSnapshot) -> bool,
) -> HealthSnapshot {
    tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .expect("health within the wait bound")
        .expect("checker running")
        .clone()
}

/// Runs one probe round now and returns the snapshot after it.
async fn round(
    checker: &HealthChecker,
    rx: &mut watch::Receiver<HealthSnapshot>,
) -> HealthSnapshot {
    let before = rx.borrow().round;
    checker.probe_now();
    wait_for(rx, |s| s.round > before).await
}

fn now_seconds() -> String {
    // RFC 3339 to the second, comparable as a string with a MicroTime's first 19 characters.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn renew_time(server: &TestApiServer) -> String {
    let lease = server
        .get_object(
            "coordination.k8s.io/v1",
            "leases",
            "kube-node-lease",
            "edge-1",
        )
        .expect("the node Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "edge-1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    lease["spec"]["renewTime"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_lease_heartbeat_tracks_a_server_going_down_and_coming_back() {
    let server = TestApiServer::builder().tls().start().await.unwrap();
    let client = hub_client(&server, "system:node:edge-1", &["system:nodes"]);
    // A long interval: after the first round, rounds run only when the test asks.
    let config = HealthConfig::lease("edge-1")
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let node = server
        .create_object(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}
        }))
        .await
        .unwrap();
    let started = now_seconds();
    let checker = HealthChecker::spawn(client, vec![uri(&server)], config);
    let mut rx = checker.subscribe();

    let s = wait_for(&mut rx, |s| s.round >= 1).await;
    assert!(s.servers[0].healthy, "one success in the first round");
    let first = renew_time(&server);
    assert!(
        first[..19] >= *started,
        "fresh renewTime {first} (test started {started})"
    );
    assert_eq!(
        server.traffic().count_verb("create"),
        1,
        "the Lease was created"
    );
    let lease = server
        .get_object(
            "coordination.k8s.io/v1",
            "leases",
            "kube-node-lease",
            "edge-1",
        )
        .unwrap();
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );

    server.go_down().await;
    let s = round(&checker, &mut rx).await;
    assert!(!s.servers[0].healthy, "one failure makes it unhealthy");
    let down_since = s.servers[0].since;

    server.come_up().await.unwrap();
    let s = round(&checker, &mut rx).await;
    assert!(!s.servers[0].healthy, "one success is not enough");
    assert_eq!(s.servers[0].successes, 1);
    assert_eq!(s.servers[0].since, down_since);
    let s = round(&checker, &mut rx).await;
    assert!(
        s.servers[0].healthy,
        "healthy after two consecutive successes"
    );
    assert!(s.servers[0].since > down_since);

    let renewed = renew_time(&server);
    assert!(renewed > first, "renewTime advanced: {first} -> {renewed}");
    assert!(
        server.traffic().count_verb("update") >= 2,
        "renewals are PUTs"
    );
    checker.shutdown().await;
}

#[tokio::test]
async fn the_readyz_probe_runs_on_its_interval_and_shutdown_ends_the_task() {
    let server = TestApiServer::start().await.unwrap();
    let metrics = HealthMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let config = HealthConfig::readyz()
        .interval(Duration::from_millis(20))
        .metrics(metrics.clone());
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&server)], config);
    let mut rx = checker.subscribe();

    let labels = ServerLabels {
        server: uri(&server).to_string(),
    };
    wait_for(&mut rx, |s| s.servers[0].healthy).await;
    assert_eq!(metrics.healthy.get_or_create(&labels).get(), 1);
    server.go_down().await;
    wait_for(&mut rx, |s| !s.servers[0].healthy).await;
    assert_eq!(metrics.healthy.get_or_create(&labels).get(), 0);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("yurt_cache_health_server_healthy{server="),
        "{text}"
    );
    assert!(text.contains("yurt_cache_health_probes_total{"), "{text}");
    server.come_up().await.unwrap();
    let s = wait_for(&mut rx, |s| s.servers[0].healthy).await;
    assert!(s.servers[0].successes >= 2);
    assert!(server.traffic().records.iter().all(|r| r.path == "/readyz"));
    assert_eq!(server.traffic().count_verb("update"), 0, "no Lease writes");

    checker.shutdown().await;
    // The sender lived in the task: once the task is gone, the channel is closed.
    let closed = tokio::time::timeout(WAIT, async { while rx.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "the task ended");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_its_probe_by_timeout() {
    let server = TestApiServer::start().await.unwrap();
    let config = HealthConfig::readyz()
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600))
        .timeout(Duration::from_millis(100));
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&server)], config);
    let mut rx = checker.subscribe();
    assert!(wait_for(&mut rx, |s| s.round >= 1).await.servers[0].healthy);

    server.blackhole();
    let s = round(&checker, &mut rx).await;
    assert!(
        !s.servers[0].healthy,
        "a probe without an answer is a failure"
    );
    assert_eq!(s.servers[0].failures, 1);

    server.heal();
    round(&checker, &mut rx).await;
    assert!(round(&checker, &mut rx).await.servers[0].healthy);
    checker.shutdown().await;
}

/// The hub with no kubelet at all, behind a link that goes down and comes back. The heartbeat
/// interval is an hour, so only the fast retry of an unhealthy server can bring it back, and
/// kubelet's grace period has long passed by then, so only the `/readyz` fallback can succeed.
#[tokio::test]
async fn without_kubelet_the_hub_stays_healthy_and_returns_by_itself_after_a_heal() {
    use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
    use yurt_testkit::chaos::ChaosLink;

    let api = TestApiServer::builder().tls().start().await.unwrap();
    let link = ChaosLink::start(api.addr()).await.unwrap();
    let upstream = hub_client(&api, "system:node:edge-1", &["system:nodes"]);
    let dir = tempfile::tempdir().unwrap();
    let server: http::Uri = format!("https://{}", link.local_addr()).parse().unwrap();
    let mut config = EdgeHubConfig::new("edge-1", vec![server.clone()], dir.path().join("c.redb"));
    config.proxy_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.health = HealthConfig::lease("edge-1")
        .interval(Duration::from_secs(3600))
        .timeout(Duration::from_millis(500));
    config.kubelet_grace = Some(Duration::from_millis(200));
    let hub = EdgeHub::start(config, upstream).await.unwrap();
    let mut rx = hub.health();
    wait_for(&mut rx, |s| s.any_healthy()).await;
    let liveness = hub
        .kubelet_liveness()
        .expect("edge mode couples kubelet")
        .clone();
    tokio::time::timeout(WAIT, async {
        while liveness.is_alive() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("kubelet's grace period passes");

    link.cut();
    hub.probe_now();
    wait_for(&mut rx, |s| !s.any_healthy()).await;
    api.reset_traffic();
    link.heal();
    // No probe_now: the unhealthy server is retried on its own.
    let s = wait_for(&mut rx, |s| s.any_healthy()).await;
    assert!(s.servers[0].successes >= 2, "{s:?}");
    let traffic = api.traffic();
    assert!(
        traffic.records.iter().any(|r| r.path == "/readyz"),
        "{traffic:?}"
    );
    assert!(
        traffic.records.iter().all(|r| !r.path.contains("/leases")),
        "kubelet is gone: the node Lease is left alone; {traffic:?}"
    );

    // The hub proxies again, with its own identity.
    let proxy: http::Uri = format!("http://{}", hub.proxy_addr()).parse().unwrap();
    let resp = send(
        &plain_client(),
        &proxy,
        crate::net::get("/api/v1/namespaces"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);

    // The recovery was measured.
    let admin: http::Uri = format!("http://{}", hub.admin_addr()).parse().unwrap();
    let resp = send(&plain_client(), &admin, crate::net::get("/metrics"))
        .await
        .unwrap();
    let text = String::from_utf8(bytes(resp).await.to_vec()).unwrap();
    let count = format!("yurt_cache_health_recovery_seconds_count{{server=\"{server}\"}} 1");
    assert!(text.contains(&count), "{count} in {text}");

    hub.shutdown().await;
    link.shutdown().await;
}
