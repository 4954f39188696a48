//! Watch semantics over raw HTTP (issue item 3, watch).

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use yurt_testkit::TestApiServer;

use crate::support::{Events, call, configmap, pod, request, send, server, watch};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn name(ev: &Value) -> &str {
    ev["object"]["metadata"]["name"].as_str().unwrap_or("")
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_watch_from_a_resource_version_replays_later_history() {
    let s = server().await;
    call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    let (_, b) = call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    let from = rv(&b);
    let (_, a) = call(&s, "GET", &format!("{CMS}/a"), None).await;
    let mut a2 = a.clone();
    a2["data"] = json!({"x": "1"});
    call(&s, "PUT", &format!("{CMS}/a"), Some(a2)).await;
    call(&s, "DELETE", &format!("{CMS}/b"), None).await;

    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={from}")).await;
    let e1 = w.next().await.unwrap();
    assert_eq!((e1["type"].as_str(), name(&e1)), (Some("MODIFIED"), "a"));
    assert_eq!(e1["object"]["kind"], "ConfigMap");
    let e2 = w.next().await.unwrap();
    assert_eq!((e2["type"].as_str(), name(&e2)), (Some("DELETED"), "b"));
    assert!(
        rv(&e2["object"]) > rv(&e1["object"]),
        "a deletion has its own revision"
    );
    call(&s, "POST", CMS, Some(configmap("default", "c", json!({})))).await;
    let e3 = w.next().await.unwrap();
    assert_eq!((e3["type"].as_str(), name(&e3)), (Some("ADDED"), "c"));
    // Another namespace's changes are not seen by a namespaced watch.
    call(
        &s,
        "POST",
        "/api/v1/namespaces/kube-system/configmaps",
        Some(configmap("kube-system", "k", json!({}))),
    )
    .await;
    call(&s, "POST", CMS, Some(configmap("default", "d", json!({})))).await;
    assert_eq!(name(&w.next().await.unwrap()), "d");
}

#[tokio::test]
async fn a_watch_without_resource_version_starts_with_the_current_state() {
    let s = server().await;
    call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    for q in ["watch=true", "watch=true&resourceVersion=0"] {
        let mut w = watch(&s, &format!("{CMS}?{q}")).await;
        let ev = w.next().await.unwrap();
        assert_eq!(
            (ev["type"].as_str(), name(&ev)),
            (Some("ADDED"), "a"),
            "{q}"
        );
    }
    // The legacy /watch/ prefix on a single object.
    let mut w = watch(&s, "/api/v1/watch/namespaces/default/configmaps/a").await;
    assert_eq!(name(&w.next().await.unwrap()), "a");
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "other", json!({}))),
    )
    .await;
    call(&s, "DELETE", &format!("{CMS}/a"), None).await;
    let ev = w.next().await.unwrap();
    assert_eq!((ev["type"].as_str(), name(&ev)), (Some("DELETED"), "a"));
}

#[tokio::test]
async fn a_too_old_resource_version_gets_an_expired_error_event() {
    let s = server().await;
    let (_, a) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    s.compact();
    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={}", rv(&a))).await;
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["kind"], "Status");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(w.next().await.is_none(), "the stream ends after the error");

    // A bounded history expires old revisions by itself.
    let s = TestApiServer::builder()
        .history_limit(2)
        .start()
        .await
        .unwrap();
    let (_, first) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    for n in ["b", "c", "d"] {
        call(&s, "POST", CMS, Some(configmap("default", n, json!({})))).await;
    }
    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={}", rv(&first))).await;
    assert_eq!(w.next().await.unwrap()["object"]["code"], 410);
}

#[tokio::test]
async fn bookmarks_are_sent_when_allowed() {
    let s = TestApiServer::builder()
        .bookmark_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let (_, a) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    let mut w = watch(
        &s,
        &format!(
            "{CMS}?watch=1&allowWatchBookmarks=true&resourceVersion={}",
            rv(&a)
        ),
    )
    .await;
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "BOOKMARK");
    assert_eq!(ev["object"]["kind"], "ConfigMap");
    assert_eq!(ev["object"]["apiVersion"], "v1");
    assert!(rv(&ev["object"]) >= rv(&a));
    // Writes elsewhere advance the bookmark's resourceVersion.
    let (_, other) = call(
        &s,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(json!({"metadata": {"name": "s"}, "type": "Opaque"})),
    )
    .await;
    loop {
        let ev = w.next().await.unwrap();
        if ev["type"] == "BOOKMARK" && rv(&ev["object"]) >= rv(&other) {
            break;
        }
    }
}

#[tokio::test]
async fn send_initial_events_ends_with_an_annotated_bookmark() {
    let s = server().await;
    call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    let (_, b) = call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    let mut w = watch(&s, &format!(
        "{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    )).await;
    assert_eq!(name(&w.next().await.unwrap()), "a");
    assert_eq!(name(&w.next().await.unwrap()), "b");
    let end = w.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&end["object"]) >= rv(&b));
    call(&s, "POST", CMS, Some(configmap("default", "c", json!({})))).await;
    let ev = w.next_change().await.unwrap();
    assert_eq!((ev["type"].as_str(), name(&ev)), (Some("ADDED"), "c"));

    // Without resourceVersionMatch=NotOlderThan the request is invalid (422).
    let resp = send(
        s.addr(),
        request(
            "GET",
            &format!("{CMS}?watch=1&sendInitialEvents=true"),
            "",
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let s = server().await;
    let mut w = watch(
        &s,
        &format!(
            "{CMS}?watch=1&timeoutSeconds=1&resourceVersion={}",
            s.resource_version()
        ),
    )
    .await;
    assert!(w.next().await.is_none());
    assert_eq!(s.open_watches(), 0);
}

async fn relabel(s: &TestApiServer, app: &str) -> (StatusCode, Value) {
    let (_, cur) = call(s, "GET", &format!("{PODS}/p"), None).await;
    let mut next = cur;
    next["metadata"]["labels"]["app"] = json!(app);
    call(s, "PUT", &format!("{PODS}/p"), Some(next)).await
}

#[tokio::test]
async fn selectors_turn_transitions_into_added_and_deleted() {
    let s = server().await;
    call(&s, "POST", PODS, Some(pod("default", "p", ""))).await;
    let from = s.resource_version();
    let mut w = watch(
        &s,
        &format!("{PODS}?watch=1&labelSelector=app%3Dweb&resourceVersion={from}"),
    )
    .await;
    let (_, moved) = relabel(&s, "db").await;
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(
        ev["object"]["metadata"]["labels"]["app"], "web",
        "the last matching state"
    );
    assert_eq!(
        ev["object"]["metadata"]["resourceVersion"],
        moved["metadata"]["resourceVersion"]
    );
    relabel(&s, "web").await;
    let ev = w.next().await.unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["labels"]["app"], "web");
    // Field selectors too: the kubelet's view of its node.
    let mut w = watch(
        &s,
        &format!(
            "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dn1&resourceVersion={}",
            s.resource_version()
        ),
    )
    .await;
    call(&s, "POST", PODS, Some(pod("default", "on-n2", "n2"))).await;
    call(&s, "POST", PODS, Some(pod("default", "on-n1", "n1"))).await;
    assert_eq!(name(&w.next().await.unwrap()), "on-n1");
}

#[tokio::test]
async fn an_unresponsive_watcher_is_terminated_without_blocking_writers() {
    let s = TestApiServer::builder()
        .watch_buffer(2)
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        let mut cm = configmap("default", &format!("c{i}"), json!({}));
        cm["metadata"]["labels"] = json!({"bulk": "1"});
        call(&s, "POST", CMS, Some(cm)).await;
    }
    let mut w = watch(
        &s,
        &format!("{CMS}?watch=1&resourceVersion={}", s.resource_version()),
    )
    .await;
    // One transaction emits 20 events at once: more than the watcher may queue.
    let (code, _) = call(&s, "DELETE", &format!("{CMS}?labelSelector=bulk%3D1"), None).await;
    assert_eq!(code, StatusCode::OK);
    let mut seen = 0;
    while w.next().await.is_some() {
        seen += 1;
    }
    assert!(seen < 20, "the watcher was cut off after {seen} events");
    // New watches work normally.
    let mut w = watch(
        &s,
        &format!("{CMS}?watch=1&resourceVersion={}", s.resource_version()),
    )
    .await;
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "after", json!({}))),
    )
    .await;
    assert_eq!(name(&w.next().await.unwrap()), "after");
}

#[tokio::test]
async fn core_and_events_k8s_io_events_share_storage() {
    let s = server().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "ctl", "reportingInstance": "ctl-1",
        "action": "Sync", "reason": "Synced", "type": "Normal", "note": "done",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}});
    let (code, created) = call(
        &s,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        Some(ev),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["note"], "done");
    let (code, core) = call(&s, "GET", "/api/v1/namespaces/default/events/e1", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "done");
    assert_eq!(core["involvedObject"]["name"], "p");
    assert_eq!(core["reportingComponent"], "ctl");
    let (_, list) = call(
        &s,
        "GET",
        "/api/v1/events?fieldSelector=involvedObject.name%3Dp",
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn watch_over_h2_shares_one_connection() {
    let s = server().await;
    let resp = crate::support::send_h2(
        s.addr(),
        request("GET", &format!("http://127.0.0.1{CMS}?watch=1"), "", ""),
    )
    .await;
    let mut w = Events::new(resp);
    call(&s, "POST", CMS, Some(configmap("default", "h2", json!({})))).await;
    assert_eq!(name(&w.next().await.unwrap()), "h2");
}
