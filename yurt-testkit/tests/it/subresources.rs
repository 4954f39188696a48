//! Pod binding and eviction, workload scale, virtual reviews and the kubelet-proxied
//! subresources (issue item 2).

use http::StatusCode;
use serde_json::json;

use std::time::Duration;

use crate::support::{bounded, call, pod, send, server};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let s = server().await;
    call(&s, "POST", PODS, Some(pod("default", "p", ""))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, st) = call(
        &s,
        "POST",
        &format!("{PODS}/p/binding"),
        Some(binding.clone()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    assert_eq!(st["status"], "Success");
    let (_, p) = call(&s, "GET", &format!("{PODS}/p"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert!(
        p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
    );
    let (code, st) = call(&s, "POST", &format!("{PODS}/p/binding"), Some(binding)).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );
    // The namespaced `bindings` resource does the same.
    call(&s, "POST", PODS, Some(pod("default", "q", ""))).await;
    let (code, _) = call(
        &s,
        "POST",
        "/api/v1/namespaces/default/bindings",
        Some(json!({"apiVersion": "v1",
        "kind": "Binding", "metadata": {"name": "q"}, "target": {"kind": "Node", "name": "n2"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, q) = call(&s, "GET", &format!("{PODS}/q"), None).await;
    assert_eq!(q["spec"]["nodeName"], "n2");
}

#[tokio::test]
async fn eviction_deletes_the_pod() {
    let s = server().await;
    call(&s, "POST", PODS, Some(pod("default", "victim", "n1"))).await;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "victim", "namespace": "default"}, "deleteOptions": {"gracePeriodSeconds": 0}});
    let (code, st) = call(
        &s,
        "POST",
        &format!("{PODS}/victim/eviction"),
        Some(eviction),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/victim"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (code, _) = call(
        &s,
        "POST",
        &format!("{PODS}/ghost/eviction"),
        Some(json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ghost"}})),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deployments_scale() {
    let s = server().await;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (code, created) = call(
        &s,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(d),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        created["status"],
        json!({}),
        "status is the controller's, reset on create"
    );
    let path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let (_, scale) = call(&s, "GET", path, None).await;
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let mut next = scale.clone();
    next["spec"]["replicas"] = json!(5);
    let (code, out) = call(&s, "PUT", path, Some(next)).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let (_, d) = call(
        &s,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    // A stale Scale conflicts.
    let (code, _) = call(&s, "PUT", path, Some(scale)).await;
    assert_eq!(code, StatusCode::CONFLICT);
}

#[tokio::test]
async fn reviews_and_kubelet_subresources() {
    let s = server().await;
    let (code, review) = call(
        &s,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(review["status"]["allowed"], true);
    // Create-only resources cannot be listed.
    assert_eq!(
        call(
            &s,
            "GET",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            None
        )
        .await
        .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    call(&s, "POST", PODS, Some(pod("default", "loose", ""))).await;
    let (code, st) = call(&s, "GET", &format!("{PODS}/loose/exec?command=sh"), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(st["message"], "pod loose does not have a host assigned");
    call(&s, "POST", PODS, Some(pod("default", "bound", "n1"))).await;
    let (code, st) = call(&s, "GET", &format!("{PODS}/bound/log"), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{st}");
    assert_eq!(st["message"], "nodes \"n1\" not found");
    call(
        &s,
        "POST",
        "/api/v1/nodes",
        Some(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})),
    )
    .await;
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/bound/exec?command=sh"), None)
            .await
            .0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/bound/nonsense"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pod_log_answers_the_canned_text_and_follow_stays_open() {
    use http_body_util::BodyExt as _;

    let s = server().await;
    call(
        &s,
        "POST",
        "/api/v1/nodes",
        Some(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})),
    )
    .await;
    call(&s, "POST", PODS, Some(pod("default", "web", "n1"))).await;
    let get = |query: &str| {
        http::Request::get(format!("{PODS}/web/log{query}"))
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };

    // No text set: deterministic lines naming the pod, container and node.
    let resp = send(s.addr(), get("")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "yurt-testkit canned log: pod default/web, container app, node n1\n\
         app: started (no container runs in the test apiserver)\n\
         app: ready\n"
    );
    let resp = send(s.addr(), get("?tailLines=1")).await;
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"app: ready\n");
    let (code, st) = call(&s, "GET", &format!("{PODS}/web/log?container=nope"), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(st["message"], "container nope is not valid for pod web");
    let (code, _) = call(&s, "GET", &format!("{PODS}/web/log?tailLines=x"), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, st) = call(&s, "GET", &format!("{PODS}/missing/log"), None).await;
    assert_eq!(
        (code, &st["message"]),
        (StatusCode::NOT_FOUND, &json!("pods \"missing\" not found"))
    );

    s.set_pod_log("default", "web", "line 1\nline 2\n");
    let resp = send(s.addr(), get("?container=app")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"line 1\nline 2\n");

    // follow: the text, then the stream stays open until the watches are cut.
    let resp = send(s.addr(), get("?follow=true")).await;
    let mut body = resp.into_body();
    let first = bounded(body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"line 1\nline 2\n");
    let pending = tokio::time::timeout(Duration::from_millis(200), body.frame()).await;
    assert!(pending.is_err(), "a followed log stays open");
    s.cut_watches();
    assert!(bounded(body.frame()).await.is_none(), "ends when cut");

    // The pod gone: 404.
    s.set_pod_log("default", "other", "x");
    let resp = send(
        s.addr(),
        http::Request::get(format!("{PODS}/other/log"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn kubectl_logs_prints_the_canned_lines() {
    let s = server().await;
    let Some(k) = crate::kubectl::Kubectl::new(&s) else {
        return;
    };
    call(
        &s,
        "POST",
        "/api/v1/nodes",
        Some(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}})),
    )
    .await;
    let mut two = pod("default", "web-1", "edge-1");
    two["spec"]["containers"] =
        json!([{"name": "app", "image": "i"}, {"name": "sidecar", "image": "i"}]);
    call(&s, "POST", PODS, Some(two)).await;
    let out = k
        .ok(&["logs", "web-1", "-c", "sidecar", "--tail=2"], None)
        .await;
    assert_eq!(
        out,
        "sidecar: started (no container runs in the test apiserver)\nsidecar: ready\n"
    );
    let (ok, _, err) = k.run(&["logs", "web-1", "-c", "nope"], None).await;
    assert!(
        !ok && err.contains("container nope is not valid for pod web-1"),
        "{err}"
    );
    let (ok, _, err) = k.run(&["logs", "gone"], None).await;
    assert!(!ok && err.contains("pods \"gone\" not found"), "{err}");
}
