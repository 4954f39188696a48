//! Discovery, legacy and aggregated, as a v1.36 kube-apiserver serves it, plus registered CRDs
//! (issue item 3, discovery).

use http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use crate::support::{call, request, send, server};

const RECORDED: &str = include_str!("../../data/k8s-discovery-v1.36.json");

#[tokio::test]
async fn legacy_documents_match_a_real_apiserver() {
    let s = server().await;
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    let paths = &recorded["paths"];
    for path in [
        "/api/v1",
        "/apis/apps/v1",
        "/apis/coordination.k8s.io/v1",
        "/apis/certificates.k8s.io/v1",
        "/version",
    ] {
        let (code, doc) = call(&s, "GET", path, None).await;
        assert_eq!(code, StatusCode::OK, "{path}");
        assert_eq!(&doc, &paths[path], "{path}");
    }
    let (_, api) = call(&s, "GET", "/api", None).await;
    assert_eq!(api["versions"], json!(["v1"]));
    let (_, apis) = call(&s, "GET", "/apis", None).await;
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(groups.starts_with(&["apps", "events.k8s.io"]), "{groups:?}");
    for g in &groups {
        assert_eq!(
            call(&s, "GET", &format!("/apis/{g}"), None).await.0,
            StatusCode::OK,
            "{g}"
        );
    }
    let (_, apps) = call(&s, "GET", "/apis/apps", None).await;
    assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
}

#[tokio::test]
async fn aggregated_discovery_includes_custom_resources() {
    let s = server().await;
    for crd in yurt_core::crd::crds() {
        s.create_object(serde_json::to_value(&crd).unwrap())
            .await
            .unwrap();
    }
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let mut req = request("GET", "/apis", "", "");
    req.headers_mut().insert("accept", accept.parse().unwrap());
    let resp = send(s.addr(), req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let doc: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let items = doc["items"].as_array().unwrap();
    let yurt = items
        .iter()
        .find(|i| i["metadata"]["name"] == "apps.openyurt.io")
        .expect("CRD group listed");
    let v1beta2 = yurt["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "v1beta2")
        .unwrap();
    let np = v1beta2["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "nodepools")
        .unwrap();
    assert_eq!(np["scope"], "Cluster");
    assert_eq!(
        np["responseKind"],
        json!({"group": "apps.openyurt.io", "version": "v1beta2", "kind": "NodePool"})
    );
    assert_eq!(np["subresources"][0]["subresource"], "status");
    let apps = items
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deploy["shortNames"], json!(["deploy"]));

    let mut req = request("GET", "/api", "", "");
    req.headers_mut().insert("accept", accept.parse().unwrap());
    let core: Value = serde_json::from_slice(
        &send(s.addr(), req)
            .await
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let pods = core["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "pods")
        .unwrap();
    assert_eq!(pods["scope"], "Namespaced");
    let (_, legacy) = call(&s, "GET", "/apis/apps.openyurt.io/v1beta2", None).await;
    assert_eq!(legacy["resources"][0]["name"], "nodepools");
    assert_eq!(legacy["resources"][0]["namespaced"], false);
}
