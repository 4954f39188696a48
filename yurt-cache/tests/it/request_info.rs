//! The request-info layer: resolved info reaches the inner service, malformed requests are
//! answered with a 400 Status without calling it.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use yurt_cache::body::Body;
use yurt_cache::request_info::RequestInfoLayer;
use yurt_core::{Component, RequestInfo, Status, Verb};

type Seen = Arc<Mutex<Vec<(RequestInfo, Component)>>>;

fn recording(
    seen: Seen,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<Body>, std::convert::Infallible>>,
> + Clone {
    service_fn(move |req: Request<Body>| {
        let seen = seen.clone();
        async move {
            let info = req.extensions().get::<RequestInfo>().cloned();
            let component = req.extensions().get::<Component>().cloned();
            if let (Some(i), Some(c)) = (info, component) {
                seen.lock().unwrap().push((i, c));
            }
            Ok(Response::new(Body::from("inner")))
        }
    })
}

#[tokio::test]
async fn resolved_info_and_component_reach_the_inner_service() {
    let seen = Seen::default();
    let svc = RequestInfoLayer::new().layer(recording(seen.clone()));
    let req =
        Request::get("/api/v1/namespaces/kube-system/pods?watch=true&labelSelector=app%3Dweb")
            .header("user-agent", "Kube-Proxy/v1.36.0 (linux/amd64)")
            .body(Body::empty())
            .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (info, component) = &seen[0];
    assert_eq!(info.verb, Verb::Watch);
    assert_eq!(info.resource, "pods");
    assert_eq!(info.namespace, "kube-system");
    assert_eq!(info.options.label_selector.as_deref(), Some("app=web"));
    assert_eq!(component.as_str(), "kube-proxy");
}

#[tokio::test]
async fn a_bad_query_is_a_400_status_and_the_inner_service_is_not_called() {
    let seen = Seen::default();
    let svc = RequestInfoLayer::new().layer(recording(seen.clone()));
    let req = Request::get("/api/v1/pods?limit=ten")
        .header("user-agent", "kubelet/v1.36.0")
        .body(Body::empty())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let status = Status::from_json(&body).expect("a Status body");
    assert_eq!(status.code, 400);
    assert_eq!(
        status.reason.map(|r| r.as_str().to_owned()).as_deref(),
        Some("BadRequest")
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn composed_over_the_balancer_bad_requests_never_reach_the_apiserver() {
    use std::time::Duration;

    use yurt_cache::balancer::{Balancer, Strategy};
    use yurt_cache::health::{HealthChecker, HealthConfig};
    use yurt_testkit::TestApiServer;

    use crate::net::{WAIT, plain_client, uri};

    let server = TestApiServer::start().await.unwrap();
    let config = HealthConfig::readyz()
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&server)], config);
    let mut rx = checker.subscribe();
    crate::health::wait_for(&mut rx, |s| s.servers[0].healthy).await;
    server.reset_traffic();
    let balancer = Balancer::new(plain_client(), checker.subscribe(), Strategy::RoundRobin);
    let svc = RequestInfoLayer::new().layer(balancer);

    let bad = Request::get("/api/v1/namespaces/default/configmaps?timeoutSeconds=soon")
        .body(Body::empty())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, svc.clone().oneshot(bad))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(server.traffic().records.is_empty());

    let good = Request::get("/api/v1/namespaces/default/configmaps?limit=5")
        .header("user-agent", "coredns/v1.11")
        .body(Body::empty())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, svc.oneshot(good))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let traffic = server.traffic();
    assert_eq!(traffic.records.len(), 1);
    assert_eq!(traffic.records[0].verb, "list");
    assert_eq!(traffic.records[0].user_agent, "coredns/v1.11");
    checker.shutdown().await;
}
