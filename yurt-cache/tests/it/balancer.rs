//! The balancer over two TestApiServers with a real health checker: rr, priority, failover,
//! retry of reads on connect failure, no retry of writes or watches, 503 with none healthy.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tower::{Service, ServiceExt};
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::body::Body;
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::upstream::Error;
use yurt_core::Status;
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{bytes, get, plain_client, uri};

const LIST: &str = "/api/v1/namespaces/default/configmaps";

struct Pair {
    a: TestApiServer,
    b: TestApiServer,
    checker: HealthChecker,
}

/// Two plain servers and a checker whose automatic rounds are an hour apart: after the first
/// round, health changes only when a test asks for a round.
async fn pair() -> Pair {
    let a = TestApiServer::start().await.unwrap();
    let b = TestApiServer::start().await.unwrap();
    let config = HealthConfig::readyz()
        .interval(Duration::from_secs(3600))
        .retry_interval(Duration::from_secs(3600));
    let checker = HealthChecker::spawn(plain_client(), vec![uri(&a), uri(&b)], config);
    let mut rx = checker.subscribe();
    let s = wait_for(&mut rx, |s| s.round >= 1).await;
    assert!(s.servers.iter().all(|s| s.healthy));
    a.reset_traffic();
    b.reset_traffic();
    Pair { a, b, checker }
}

impl Pair {
    fn balancer(&self, strategy: Strategy) -> Balancer {
        Balancer::new(plain_client(), self.checker.subscribe(), strategy)
    }

    /// Lists seen by (a, b).
    fn lists(&self) -> (usize, usize) {
        (
            self.a.traffic().count_verb("list"),
            self.b.traffic().count_verb("list"),
        )
    }

    async fn round(&self) {
        let mut rx = self.checker.subscribe();
        let before = rx.borrow().round;
        self.checker.probe_now();
        wait_for(&mut rx, |s| s.round > before).await;
    }
}

async fn send(balancer: &mut Balancer, req: Request<Body>) -> http::Response<Body> {
    tokio::time::timeout(crate::net::WAIT, balancer.ready().await.unwrap().call(req))
        .await
        .expect("an answer within the wait bound")
        .unwrap()
}

#[tokio::test]
async fn round_robin_alternates_between_healthy_servers() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::RoundRobin);
    let mut seq = Vec::new();
    for _ in 0..4 {
        let before = p.lists();
        let resp = send(&mut lb, get(LIST)).await;
        assert_eq!(resp.status(), 200);
        let after = p.lists();
        seq.push(if after.0 > before.0 { 'a' } else { 'b' });
        assert_eq!(after.0 + after.1, before.0 + before.1 + 1);
    }
    assert_eq!(seq, ['a', 'b', 'a', 'b']);
}

#[tokio::test]
async fn priority_sticks_to_the_first_and_fails_over_when_it_goes_down() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::Priority);
    for _ in 0..3 {
        assert_eq!(send(&mut lb, get(LIST)).await.status(), 200);
    }
    assert_eq!(p.lists(), (3, 0));

    p.a.go_down().await;
    p.round().await;
    assert!(!p.checker.snapshot().servers[0].healthy);
    for _ in 0..2 {
        assert_eq!(send(&mut lb, get(LIST)).await.status(), 200);
    }
    assert_eq!(p.b.traffic().count_verb("list"), 2);

    p.a.come_up().await.unwrap();
    p.round().await;
    p.round().await;
    assert!(p.checker.snapshot().servers[0].healthy);
    assert_eq!(send(&mut lb, get(LIST)).await.status(), 200);
    assert_eq!(
        p.a.traffic().count_verb("list"),
        4,
        "back on the first server"
    );
}

#[tokio::test]
async fn round_robin_skips_a_server_that_went_down() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::RoundRobin);
    p.b.go_down().await;
    p.round().await;
    for _ in 0..3 {
        assert_eq!(send(&mut lb, get(LIST)).await.status(), 200);
    }
    assert_eq!(p.a.traffic().count_verb("list"), 3);
}

#[tokio::test]
async fn a_read_whose_connect_fails_is_retried_on_the_next_healthy_server() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::Priority);
    // Down, but the checker has not noticed: the balancer still picks a first.
    p.a.go_down().await;
    assert!(p.checker.snapshot().servers[0].healthy);
    let resp = send(&mut lb, get(LIST)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(p.b.traffic().count_verb("list"), 1);
    let resp = send(&mut lb, get("/api/v1/namespaces/default")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(p.b.traffic().count_verb("get"), 1);
}

#[tokio::test]
async fn writes_and_watches_are_not_retried() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::Priority);
    p.a.go_down().await;
    let post = Request::post(LIST)
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
        ))
        .unwrap();
    let resp = send(&mut lb, post).await;
    assert_eq!(resp.status(), 503);
    let err = resp
        .extensions()
        .get::<Arc<Error>>()
        .expect("the error")
        .clone();
    assert!(err.is_connect());
    let status = Status::from_json(&bytes(resp).await).expect("a Status body");
    assert_eq!(status.code, 503);

    let resp = send(&mut lb, get(&format!("{LIST}?watch=true"))).await;
    assert_eq!(resp.status(), 503);
    assert!(
        p.b.traffic().records.is_empty(),
        "nothing reached the second server"
    );
}

#[tokio::test]
async fn with_no_healthy_server_the_answer_is_a_503_status() {
    let p = pair().await;
    let mut lb = p.balancer(Strategy::RoundRobin);
    p.a.go_down().await;
    p.b.go_down().await;
    p.round().await;
    let resp = send(&mut lb, get(LIST)).await;
    assert_eq!(resp.status(), 503);
    assert!(matches!(
        resp.extensions().get::<Arc<Error>>().map(|e| &**e),
        Some(Error::NoHealthyUpstream)
    ));
    let status = Status::from_json(&bytes(resp).await).expect("a Status body");
    assert_eq!(status.code, 503);
    assert_eq!(status.message, "no healthy upstream");
}
