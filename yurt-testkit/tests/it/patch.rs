//! PATCH end to end through HTTP: merge, JSON, strategic merge (with the list semantics of the
//! Kubernetes types) and apply (issue item 3, patch).

use http::StatusCode;
use serde_json::json;

use crate::support::{call, configmap, patch, pod, server};

const PODS: &str = "/api/v1/namespaces/default/pods";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const SMP: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

#[tokio::test]
async fn strategic_merge_follows_the_kubernetes_types() {
    let s = server().await;
    let mut p = pod("default", "web", "n1");
    p["metadata"]["finalizers"] = json!(["example.com/a"]);
    p["spec"]["containers"] =
        json!([{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]);
    p["spec"]["tolerations"] = json!([{"key": "t1", "operator": "Exists"}]);
    assert_eq!(call(&s, "POST", PODS, Some(p)).await.0, StatusCode::CREATED);
    let (code, _) = patch(&s, &format!("{PODS}/web/status"), MERGE,
        r#"{"status":{"conditions":[{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"False"}]}}"#).await;
    assert_eq!(code, StatusCode::OK);

    // Conditions merge by type.
    let (code, out) = patch(
        &s,
        &format!("{PODS}/web/status"),
        SMP,
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let conds = out["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 2, "{conds:?}");
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
    );

    // Containers merge by name, finalizers as a set, tolerations are replaced.
    let (code, out) = patch(
        &s,
        &format!("{PODS}/web"),
        SMP,
        r#"{
        "metadata": {"finalizers": ["example.com/b"]},
        "spec": {"containers": [{"name": "app", "image": "app:2"}],
                 "tolerations": [{"key": "t2", "operator": "Exists"}]}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "app", "image": "app:2"}, {"name": "side", "image": "side:1"}])
    );
    let mut fins: Vec<&str> = out["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    fins.sort_unstable();
    assert_eq!(fins, ["example.com/a", "example.com/b"]);
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "t2", "operator": "Exists"}])
    );
    assert_eq!(
        out["metadata"]["generation"], 2,
        "a spec change through a patch bumps the generation"
    );
}

#[tokio::test]
async fn merge_and_json_patches_and_their_errors() {
    let s = server().await;
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "c", json!({"a": "1", "b": "2"}))),
    )
    .await;
    let (code, out) = patch(
        &s,
        &format!("{CMS}/c"),
        MERGE,
        r#"{"data":{"a":null,"c":"3"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(out["data"], json!({"b": "2", "c": "3"}));

    let (code, out) = patch(&s, &format!("{CMS}/c"), JSON,
        r#"[{"op":"test","path":"/data/b","value":"2"},{"op":"replace","path":"/data/b","value":"9"}]"#).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["data"]["b"], "9");
    let rv = out["metadata"]["resourceVersion"].clone();

    // A failed test is 422 and changes nothing; a malformed body is 400.
    let (code, st) = patch(
        &s,
        &format!("{CMS}/c"),
        JSON,
        r#"[{"op":"test","path":"/data/b","value":"2"}]"#,
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid"))
    );
    let (code, st) = patch(&s, &format!("{CMS}/c"), JSON, "not json").await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
    let (code, st) = patch(&s, &format!("{CMS}/c"), MERGE, "[1]").await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
    let (_, now) = call(&s, "GET", &format!("{CMS}/c"), None).await;
    assert_eq!(now["metadata"]["resourceVersion"], rv);

    // A resourceVersion in the patch is a precondition.
    let (code, _) = patch(
        &s,
        &format!("{CMS}/c"),
        MERGE,
        r#"{"metadata":{"resourceVersion":"1"},"data":{"x":"1"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    // Unknown patch types and missing objects.
    let (code, _) = patch(&s, &format!("{CMS}/c"), "application/json", "{}").await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (code, _) = patch(&s, &format!("{CMS}/missing"), MERGE, "{}").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn apply_creates_and_merges() {
    let s = server().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n";
    let (code, st) = patch(&s, &format!("{CMS}/applied"), APPLY, yaml).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fieldManager is required: {st}"
    );
    let (code, out) = patch(&s, &format!("{CMS}/applied?fieldManager=test"), APPLY, yaml).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    assert_eq!(out["data"]["a"], "1");
    let (code, out) = patch(
        &s,
        &format!("{CMS}/applied?fieldManager=test"),
        APPLY,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"applied"},"data":{"b":"2"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
    let (code, _) = patch(
        &s,
        &format!("{CMS}/applied?fieldManager=test"),
        APPLY,
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"applied"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}
