//! Fault controls and traffic accounting (issue items 4 and 5).

use std::time::{Duration, Instant};

use futures::FutureExt as _;
use http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::json;

use crate::support::{bounded, call, configmap, request, send, server, watch};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn go_down_refuses_and_drops_then_come_up_serves_the_same_data() {
    let s = server().await;
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "kept", json!({}))),
    )
    .await;
    let mut w = watch(
        &s,
        &format!("{CMS}?watch=1&resourceVersion={}", s.resource_version()),
    )
    .await;
    let addr = s.addr();
    s.go_down().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "connections are refused"
    );
    assert!(w.next().await.is_none(), "open streams are dropped");
    s.come_up().await.unwrap();
    assert_eq!(s.addr(), addr);
    let (code, cm) = call(&s, "GET", &format!("{CMS}/kept"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(cm["metadata"]["name"], "kept");
}

#[tokio::test]
async fn restart_keeps_data_and_drops_connections() {
    let s = server().await;
    let (_, a) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    let from = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={from}")).await;
    s.restart().await.unwrap();
    assert!(w.next().await.is_none());
    // History survives a restart: resuming from before it works.
    call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={from}")).await;
    assert_eq!(w.next().await.unwrap()["object"]["metadata"]["name"], "b");
}

async fn connection(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = bounded(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn blackhole_accepts_but_never_answers_until_healed() {
    let s = server().await;
    let mut existing = connection(s.addr()).await;
    let first = bounded(existing.send_request(request("GET", "/healthz", "", "")))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    bounded(first.into_body().collect()).await.unwrap();
    s.blackhole();
    // A request on an existing connection reaches the server and is held.
    let mut held = Box::pin(existing.send_request(request("GET", "/api/v1/namespaces", "", "")));
    bounded(async {
        loop {
            if (&mut held).now_or_never().is_some() {
                panic!("answered during the blackhole");
            }
            if s.traffic().records.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!((&mut held).now_or_never().is_none());
    assert_eq!(s.traffic().records[1].status, 0, "no answer yet");
    // A new connection is accepted, but its request is not read.
    let mut fresh = connection(s.addr()).await;
    let mut unread = Box::pin(fresh.send_request(request("GET", "/version", "", "")));
    assert!((&mut unread).now_or_never().is_none());
    assert_eq!(s.traffic().records.len(), 2);
    s.heal();
    assert_eq!(bounded(held).await.unwrap().status(), StatusCode::OK);
    assert_eq!(bounded(unread).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn delay_and_fail_next() {
    let s = server().await;
    s.delay(Duration::from_millis(200));
    let start = Instant::now();
    assert_eq!(call(&s, "GET", CMS, None).await.0, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(200));
    s.delay(Duration::ZERO);

    s.fail_next(2, 503);
    for _ in 0..2 {
        let (code, st) = call(&s, "GET", CMS, None).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            (st["kind"].as_str(), st["reason"].as_str()),
            (Some("Status"), Some("ServiceUnavailable"))
        );
    }
    assert_eq!(call(&s, "GET", CMS, None).await.0, StatusCode::OK);
    s.fail_next(1, 500);
    let (code, st) = call(&s, "POST", CMS, Some(configmap("default", "x", json!({})))).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("InternalError"))
    );
    assert_eq!(
        call(&s, "GET", &format!("{CMS}/x"), None).await.0,
        StatusCode::NOT_FOUND,
        "a failed request changes nothing"
    );
}

#[tokio::test]
async fn cut_watches_ends_every_open_stream() {
    let s = server().await;
    let mut a = watch(&s, &format!("{CMS}?watch=1")).await;
    let mut b = watch(&s, "/api/v1/pods?watch=1").await;
    bounded(async {
        while s.open_watches() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    s.cut_watches();
    assert!(a.next().await.is_none());
    assert!(b.next().await.is_none());
    bounded(async {
        while s.open_watches() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn traffic_is_accounted_per_request() {
    let s = server().await;
    let body = configmap("default", "t", json!({"k": "v"})).to_string();
    let resp = send(
        s.addr(),
        request("POST", CMS, "application/json", body.clone()),
    )
    .await;
    let created = resp.into_body().collect().await.unwrap().to_bytes();
    let resp = send(s.addr(), request("GET", &format!("{CMS}?limit=10"), "", "")).await;
    let listed = resp.into_body().collect().await.unwrap().to_bytes();

    let log = s.traffic();
    assert_eq!(log.records.len(), 2);
    let post = &log.records[0];
    assert_eq!(
        (
            post.method.as_str(),
            post.verb.as_str(),
            post.resource.as_str()
        ),
        ("POST", "create", "configmaps")
    );
    assert_eq!(post.status, 201);
    assert_eq!(post.request_bytes, body.len() as u64);
    assert_eq!(post.response_bytes, created.len() as u64);
    let list = &log.records[1];
    assert_eq!(
        (list.verb.as_str(), list.path.as_str(), list.query.as_str()),
        ("list", CMS, "limit=10")
    );
    assert_eq!(list.response_bytes, listed.len() as u64);
    assert!(list.finished && !list.watch);
    assert_eq!(log.request_bytes(), body.len() as u64);
    assert_eq!(log.response_bytes(), (created.len() + listed.len()) as u64);

    // A watch counts as open while it streams, and its bytes grow.
    s.reset_traffic();
    let mut w = watch(
        &s,
        &format!("{CMS}?watch=1&resourceVersion={}", s.resource_version()),
    )
    .await;
    assert_eq!(s.open_watches(), 1);
    call(&s, "DELETE", &format!("{CMS}/t"), None).await;
    w.next().await.unwrap();
    let rec = s.traffic().with_verb("watch").next().cloned().unwrap();
    assert!(rec.watch && !rec.finished && rec.response_bytes > 0);
    drop(w);
    bounded(async {
        while s.open_watches() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(s.traffic().with_verb("watch").next().unwrap().finished);
}
