//! Kubelet's own node-Lease requests through the real stack (`ProxyStack` with the kubelet
//! lease layer) against a TestApiServer: answered locally while the hub's heartbeat renews the
//! real Lease, other lease requests forwarded, and kubelet's liveness gating the node Lease
//! renewal (never server health).

use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use yurt_cache::admin::ProxyMetrics;
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::body::Body;
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig, HealthSnapshot};
use yurt_cache::lease::{KubeletLeaseLayer, KubeletLiveness};
use yurt_cache::server::ProxyStack;
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, plain_client, uri};
use crate::util::open;

const NODE: &str = "edge-1";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/edge-1";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
const KUBELET: &str = "kubelet/v1.36.0";

fn request(method: &str, path: &str, agent: &str, body: Option<&Value>) -> Request<Body> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", agent)
        .header("accept", "application/json");
    match body {
        Some(v) => req
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    }
}

/// Sends `req` through the stack (the future does not borrow `stack`, so it is `Send`).
fn send(
    stack: &ProxyStack,
    req: Request<Body>,
) -> impl Future<Output = (StatusCode, Value)> + Send + use<> {
    let svc = stack.clone();
    async move {
        let resp = tokio::time::timeout(WAIT, svc.oneshot(req))
            .await
            .expect("answer within the wait bound")
            .unwrap();
        let status = resp.status();
        let bytes = tokio::time::timeout(WAIT, http_body_util::BodyExt::collect(resp.into_body()))
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// Kubelet's lease requests that reached the apiserver.
fn kubelet_lease_requests(api: &TestApiServer) -> usize {
    api.traffic()
        .under(LEASES)
        .filter(|r| r.user_agent.starts_with("kubelet"))
        .count()
}

fn real_lease(api: &TestApiServer) -> Value {
    api.get_object("coordination.k8s.io/v1", "leases", "kube-node-lease", NODE)
        .expect("the real Lease exists")
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The edge stack of the `yurthub` example over `api`, with a Lease heartbeat coupled to
/// `liveness`.
fn hub(
    api: &TestApiServer,
    dir: &std::path::Path,
    liveness: &KubeletLiveness,
    health: HealthConfig,
) -> (ProxyStack, HealthChecker) {
    let checker = HealthChecker::spawn(
        plain_client(),
        vec![uri(api)],
        health.kubelet_liveness(liveness.clone()),
    );
    let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults(NODE));
    let cache = CacheLayer::new(open(dir), agents);
    let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::Priority);
    let stack = ProxyStack::with_kubelet_lease(
        balancer,
        Some(KubeletLeaseLayer::new(NODE, liveness.clone())),
        Some(cache),
        ProxyMetrics::new(),
    );
    (stack, checker)
}

/// Runs one probe round now and returns the snapshot after it.
async fn round(checker: &HealthChecker) -> HealthSnapshot {
    let mut rx = checker.subscribe();
    let before = rx.borrow().round;
    checker.probe_now();
    wait_for(&mut rx, |s| s.round > before).await
}

#[tokio::test]
async fn kubelet_lease_requests_are_answered_locally_while_the_hub_renews_the_real_lease() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let liveness = KubeletLiveness::new(Duration::from_secs(3600));
    let health = HealthConfig::lease(NODE)
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let (stack, checker) = hub(&api, dir.path(), &liveness, health);
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
    let created = real_lease(&api);
    assert_eq!(created["spec"]["holderIdentity"], NODE);

    // The first GET seeds the in-memory lease from the apiserver, once.
    api.reset_traffic();
    let (status, seeded) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seeded["metadata"]["name"], NODE);
    assert_eq!(kubelet_lease_requests(&api), 1, "the seed is forwarded");

    // From now on nothing of kubelet's lease traffic reaches the apiserver.
    api.reset_traffic();
    let mut renewal = seeded.clone();
    renewal["spec"]["renewTime"] = json!("2030-01-01T00:00:00.000000Z");
    renewal["spec"]["holderIdentity"] = json!("kubelet-says-so");
    let (status, put) = send(&stack, request("PUT", LEASE, KUBELET, Some(&renewal))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(put["spec"], renewal["spec"], "the body is kept");
    assert!(rv(&put) > rv(&seeded), "a new resourceVersion: {put}");
    let (status, got) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!((status, &got), (StatusCode::OK, &put));
    let (status, again) = send(&stack, request("PUT", LEASE, KUBELET, Some(&got))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rv(&again) > rv(&put), "monotonic: {again} after {put}");
    assert_eq!(kubelet_lease_requests(&api), 0, "{:?}", api.traffic());

    // The hub's own heartbeat renews the real Lease, with the hub as holder.
    let before = real_lease(&api);
    assert!(round(&checker).await.any_healthy());
    let after = real_lease(&api);
    assert!(
        api.traffic()
            .under(LEASE)
            .any(|r| r.method == "PUT" && r.user_agent.starts_with("yurthub")),
        "{:?}",
        api.traffic()
    );
    assert_ne!(after["spec"]["renewTime"], before["spec"]["renewTime"]);
    assert_eq!(after["spec"]["holderIdentity"], NODE);
    assert_ne!(after["spec"]["renewTime"], renewal["spec"]["renewTime"]);
    assert_eq!(kubelet_lease_requests(&api), 0);

    // Another component's request for the same lease is forwarded and sees the real one.
    api.reset_traffic();
    let (status, other) = send(
        &stack,
        request("GET", LEASE, "kube-controller-manager/v1.36.0", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other["spec"], after["spec"]);
    assert_eq!(api.traffic().under(LEASE).count(), 1);
    // So is kubelet's request for another node's lease.
    let (status, _) = send(
        &stack,
        request("GET", &format!("{LEASES}/edge-2"), KUBELET, None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(kubelet_lease_requests(&api), 1);
    checker.shutdown().await;
}

#[tokio::test]
async fn without_upstream_kubelet_gets_not_found_then_creates_its_lease_locally() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    api.go_down().await;
    let liveness = KubeletLiveness::new(Duration::from_secs(3600));
    let health = HealthConfig::lease(NODE)
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let (stack, checker) = hub(&api, dir.path(), &liveness, health);
    wait_for(&mut checker.subscribe(), |s| s.round >= 1).await;

    let (status, missing) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(missing["code"], 404);

    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": NODE, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40},
    });
    let (status, created) = send(&stack, request("POST", LEASES, KUBELET, Some(&lease))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["spec"], lease["spec"]);
    assert!(rv(&created) > 0);
    let (status, got) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!((status, got), (StatusCode::OK, created));

    let (status, bad) = send(&stack, request("PUT", LEASE, KUBELET, Some(&json!([1])))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    checker.shutdown().await;
}

#[tokio::test]
async fn while_kubelet_does_not_renew_the_node_lease_rests_but_servers_stay_healthy() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let liveness = KubeletLiveness::new(Duration::from_millis(300));
    let health = HealthConfig::lease(NODE)
        .interval(Duration::from_millis(50))
        .thresholds(2, 1);
    let (stack, checker) = hub(&api, dir.path(), &liveness, health);
    let mut rx = checker.subscribe();

    // A kubelet renewing through the hub every 50 ms.
    let kubelet = |stack: ProxyStack| {
        tokio::spawn(async move {
            let lease = json!({"metadata": {"name": NODE}, "spec": {"holderIdentity": NODE}});
            loop {
                let (status, _) = send(&stack, request("PUT", LEASE, KUBELET, Some(&lease))).await;
                assert_eq!(status, StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let renewing = kubelet(stack.clone());
    wait_for(&mut rx, |s| s.any_healthy()).await;

    // Kubelet stops: the real Lease is no longer renewed, but the cloud is still reachable,
    // so the servers stay healthy (probed with /readyz) and requests are still forwarded.
    renewing.abort();
    let _ = renewing.await;
    tokio::time::timeout(WAIT, async {
        while liveness.is_alive() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("kubelet's grace period passes");
    let now = rx.borrow().round;
    wait_for(&mut rx, |s| s.round > now).await;
    api.reset_traffic();
    let s = wait_for(&mut rx, |s| s.round >= now + 4).await;
    assert!(s.servers.iter().all(|s| s.healthy), "{s:?}");
    assert_eq!(
        api.traffic().under(LEASES).count(),
        0,
        "{:?}",
        api.traffic()
    );
    assert!(
        api.traffic().records.iter().any(|r| r.path == "/readyz"),
        "{:?}",
        api.traffic()
    );
    let (status, _) = send(&stack, request("GET", "/api/v1/namespaces", "curl/8", None)).await;
    assert_eq!(status, StatusCode::OK, "still forwarded");

    // Kubelet renews again: the heartbeat resumes.
    let renewing = kubelet(stack.clone());
    tokio::time::timeout(WAIT, async {
        while !api
            .traffic()
            .under(LEASE)
            .any(|r| r.method == "PUT" && !r.user_agent.starts_with("kubelet"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the hub renews the node Lease again");
    renewing.abort();
    checker.shutdown().await;
}

/// kubelet's request with a protobuf body and kubelet's (or the given) `Accept`.
fn protobuf_request(method: &str, path: &str, accept: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", KUBELET)
        .header("accept", accept)
        .header("content-type", crate::protobuf::CONTENT_TYPE)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn kubelet_protobuf_lease_writes_are_accepted_as_the_apiserver_accepts_them() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let liveness = KubeletLiveness::new(Duration::from_secs(3600));
    let health = HealthConfig::lease(NODE)
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let (stack, checker) = hub(&api, dir.path(), &liveness, health);
    wait_for(&mut checker.subscribe(), |s| s.any_healthy()).await;
    let (status, seeded) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!(status, StatusCode::OK);

    // kubelet's renewal: protobuf body, JSON allowed in the answer -> 200 JSON, kept.
    api.reset_traffic();
    let renewal = crate::protobuf::lease(
        NODE,
        seeded["metadata"]["resourceVersion"].as_str().unwrap(),
        1_893_456_000,
    );
    let (status, put) = send(
        &stack,
        protobuf_request("PUT", LEASE, crate::protobuf::ACCEPT, renewal),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["kind"], "Lease");
    assert_eq!(put["spec"]["renewTime"], "2030-01-01T00:00:00.123456Z");
    assert_eq!(put["spec"]["holderIdentity"], NODE);
    assert!(rv(&put) > rv(&seeded));
    let (status, got) = send(&stack, request("GET", LEASE, KUBELET, None)).await;
    assert_eq!((status, &got), (StatusCode::OK, &put));
    assert_eq!(kubelet_lease_requests(&api), 0, "answered locally");

    // A client that accepts only protobuf gets protobuf, as from the apiserver.
    let again = crate::protobuf::lease(NODE, "", 1_893_456_060);
    let resp = tokio::time::timeout(
        WAIT,
        stack.clone().oneshot(protobuf_request(
            "PUT",
            LEASE,
            crate::protobuf::CONTENT_TYPE,
            again,
        )),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        crate::protobuf::CONTENT_TYPE
    );
    let bytes = crate::net::bytes(resp).await;
    let decoded = yurt_core::protobuf::decode(&bytes).unwrap();
    assert_eq!(decoded["spec"]["renewTime"], "2030-01-01T00:01:00.123456Z");

    // A malformed protobuf body is the apiserver's 400.
    let (status, bad) = send(
        &stack,
        protobuf_request(
            "PUT",
            LEASE,
            crate::protobuf::ACCEPT,
            b"k8s\0\xff\xff".to_vec(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["kind"], "Status");

    // kubelet's create of a lease that is not the node's is forwarded as received: the
    // apiserver reads the protobuf and holds the renewTime.
    let other = crate::protobuf::lease("edge-2", "", 1_893_456_120);
    let (status, created) = send(
        &stack,
        protobuf_request("POST", LEASES, crate::protobuf::ACCEPT, other),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let held = api
        .get_object(
            "coordination.k8s.io/v1",
            "leases",
            "kube-node-lease",
            "edge-2",
        )
        .expect("the apiserver has the forwarded Lease");
    assert_eq!(held["spec"]["renewTime"], "2030-01-01T00:02:00.123456Z");
    assert_eq!(held["spec"]["holderIdentity"], "edge-2");
    assert_eq!(kubelet_lease_requests(&api), 1);
    checker.shutdown().await;
}
