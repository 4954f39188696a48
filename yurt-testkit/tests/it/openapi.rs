//! OpenAPI v2/v3 documents: what kubectl reads for `apply` (does PATCH take `fieldValidation`?)
//! and `explain` (the kind's schema, found by `x-kubernetes-group-version-kind`).

use http::StatusCode;
use serde_json::{Value, json};

use crate::kubectl::Kubectl;
use crate::support::{call, server};

async fn with_crds() -> yurt_testkit::TestApiServer {
    let s = server().await;
    for crd in yurt_core::crd::crds() {
        s.create_object(serde_json::to_value(&crd).unwrap())
            .await
            .unwrap();
    }
    s
}

/// The PATCH operation of `path` in a v3 document.
fn patch_op<'a>(doc: &'a Value, path: &str) -> &'a Value {
    &doc["paths"][path]["patch"]
}

#[tokio::test]
async fn v3_root_and_group_documents() {
    let s = with_crds().await;
    let (code, root) = call(&s, "GET", "/openapi/v3", None).await;
    assert_eq!(code, StatusCode::OK);
    let core_url = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(
        core_url.starts_with("/openapi/v3/api/v1?hash="),
        "{core_url}"
    );
    let np_url = root["paths"]["apis/apps.openyurt.io/v1beta2"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, core) = call(&s, "GET", core_url, None).await;
    assert_eq!(code, StatusCode::OK);
    let op = patch_op(&core, "/api/v1/namespaces/{namespace}/configmaps/{name}");
    assert_eq!(
        op["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    let pod = &core["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    // References resolve inside the document.
    let spec_ref = pod["properties"]["spec"]["allOf"][0]["$ref"]
        .as_str()
        .unwrap();
    assert_eq!(spec_ref, "#/components/schemas/io.k8s.api.core.v1.PodSpec");
    assert!(
        core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
            .is_object()
    );
    // Cluster-scoped paths have no namespace.
    assert!(core["paths"]["/api/v1/nodes/{name}"]["get"].is_object());

    // A custom resource: its CRD's schema, with the GVK.
    let (_, np) = call(&s, "GET", &np_url, None).await;
    let schema = &np["components"]["schemas"]["io.openyurt.apps.v1beta2.NodePool"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"][0]["kind"],
        "NodePool"
    );
    assert!(
        schema["properties"]["spec"]["properties"]["type"].is_object(),
        "{schema}"
    );

    // Unknown group-versions are 404.
    assert_eq!(
        call(&s, "GET", "/openapi/v3/apis/nope.example.com/v1", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // v2 in JSON, with every kind.
    let (code, v2) = call(&s, "GET", "/openapi/v2", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"].is_object());
    let op = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
}

#[tokio::test]
async fn a_new_crd_changes_the_root_hash() {
    let s = server().await;
    let (_, before) = call(&s, "GET", "/openapi/v3", None).await;
    assert!(before["paths"]["apis/apps.openyurt.io/v1beta2"].is_null());
    for crd in yurt_core::crd::crds() {
        s.create_object(serde_json::to_value(&crd).unwrap())
            .await
            .unwrap();
    }
    let (_, after) = call(&s, "GET", "/openapi/v3", None).await;
    assert!(after["paths"]["apis/apps.openyurt.io/v1beta2"]["serverRelativeURL"].is_string());
    assert_eq!(before["paths"]["api/v1"], after["paths"]["api/v1"]);
}

#[tokio::test]
async fn kubectl_explain_prints_fields() {
    let s = with_crds().await;
    let Some(k) = Kubectl::new(&s) else { return };
    let out = k.ok(&["explain", "pods.spec"], None).await;
    assert!(
        out.contains("KIND:       Pod") && out.contains("FIELD: spec <PodSpec>"),
        "{out}"
    );
    assert!(
        out.contains("containers\t<[]Container> -required-"),
        "{out}"
    );
    let out = k.ok(&["explain", "deployments.spec.replicas"], None).await;
    assert!(
        out.contains("GROUP:      apps") && out.contains("FIELD: replicas <integer>"),
        "{out}"
    );
    let out = k.ok(&["explain", "nodepools.spec"], None).await;
    assert!(
        out.contains("KIND:       NodePool") && out.contains("type\t<string>"),
        "{out}"
    );
}
