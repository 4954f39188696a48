//! Behaviour measured against a real kube-apiserver v1.36: periodic compaction, initial events of
//! a watch from `0`, pod container-status defaults, YAML answers.

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use yurt_testkit::TestApiServer;

use crate::support::{LIMIT, bounded, call, configmap, pod, request, send, server, watch};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn rv_of(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn history_is_compacted_on_an_interval() {
    let s = TestApiServer::builder()
        .compaction_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let (_, a) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    let exact = format!(
        "{CMS}?resourceVersion={}&resourceVersionMatch=Exact",
        rv_of(&a)
    );
    // Two ticks later the revision of `a` is compacted; nothing else writes meanwhile.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let st = loop {
        let (code, body) = call(&s, "GET", &exact, None).await;
        if code == StatusCode::GONE {
            break body;
        }
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never compacted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(st["reason"], "Expired");
    assert_eq!(
        st["message"],
        "The resourceVersion for the provided list is too old."
    );
    let mut w = watch(&s, &format!("{CMS}?watch=1&resourceVersion={}", rv_of(&a))).await;
    let ev = w.next().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410))
    );
    assert!(
        ev["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version: "),
        "{ev}"
    );
    // The current revision is still readable exactly, and watchable.
    let (_, list) = call(&s, "GET", CMS, None).await;
    let now = rv_of(&list);
    let (code, _) = call(
        &s,
        "GET",
        &format!("{CMS}?resourceVersion={now}&resourceVersionMatch=Exact"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);

    // The default (five minutes, as kube-apiserver) keeps a fresh revision readable.
    let s = server().await;
    let (_, a) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    call(&s, "POST", CMS, Some(configmap("default", "b", json!({})))).await;
    let exact = format!(
        "{CMS}?resourceVersion={}&resourceVersionMatch=Exact",
        rv_of(&a)
    );
    let (code, list) = call(&s, "GET", &exact, None).await;
    assert_eq!(
        (code, list["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
}

#[tokio::test]
async fn a_watch_from_zero_sends_no_initial_events_end_bookmark() {
    // v1.36 annotates the end of the initial events only for sendInitialEvents=true with
    // bookmarks allowed (a "watch list"); a legacy watch from 0 gets the ADDED events and
    // then plain periodic bookmarks.
    let s = TestApiServer::builder()
        .bookmark_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    let mut w = watch(
        &s,
        &format!("{CMS}?watch=1&resourceVersion=0&allowWatchBookmarks=true"),
    )
    .await;
    let first = w.next().await.unwrap();
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );
    let bookmark = w.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert!(
        bookmark["object"]["metadata"]["annotations"].is_null(),
        "{bookmark}"
    );
}

#[tokio::test]
async fn container_statuses_get_their_defaults() {
    let s = server().await;
    call(&s, "POST", PODS, Some(pod("default", "web", "n1"))).await;
    let (_, mut p) = call(&s, "GET", &format!("{PODS}/web"), None).await;
    p["status"]["containerStatuses"] =
        json!([{"name": "app", "state": {"running": {"startedAt": "2026-11-22T02:14:09Z"}}}]);
    p["status"]["initContainerStatuses"] =
        json!([{"name": "init", "restartCount": 2, "ready": true}]);
    let (code, updated) = call(&s, "PUT", &format!("{PODS}/web/status"), Some(p)).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    let (_, p) = call(&s, "GET", &format!("{PODS}/web"), None).await;
    assert_eq!(
        p["status"]["containerStatuses"][0],
        json!({"name": "app", "state": {"running": {"startedAt": "2026-11-22T02:14:09Z"}},
            "lastState": {}, "ready": false, "restartCount": 0, "image": "", "imageID": ""})
    );
    assert_eq!(p["status"]["initContainerStatuses"][0]["restartCount"], 2);
    assert_eq!(p["status"]["initContainerStatuses"][0]["ready"], true);
}

#[tokio::test]
async fn yaml_answers() {
    let s = server().await;
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "a", json!({"k": "v"}))),
    )
    .await;
    let get = |path: &str| {
        let mut req = request("GET", path, "", "");
        req.headers_mut()
            .insert("accept", "application/yaml".parse().unwrap());
        send(s.addr(), req)
    };
    let resp = get(&format!("{CMS}/a")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.starts_with("apiVersion: v1\n"), "{text}");
    let yaml: Value = serde_yaml::from_str(text).unwrap();
    let (_, json) = call(&s, "GET", &format!("{CMS}/a"), None).await;
    assert_eq!(yaml, json);
    // Lists and errors too.
    let resp = get(CMS).await;
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let list: Value = serde_yaml::from_slice(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    let resp = get(&format!("{CMS}/missing")).await;
    assert_eq!(
        (
            resp.status(),
            resp.headers()["content-type"].to_str().unwrap()
        ),
        (StatusCode::NOT_FOUND, "application/yaml")
    );
    // Watch streams are not written as YAML: 406 when nothing else is acceptable.
    let resp = get(&format!("{CMS}?watch=1")).await;
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
}
