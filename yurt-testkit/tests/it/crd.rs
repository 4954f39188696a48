//! CustomResourceDefinitions: creating one serves its resource (with status and scale
//! subresources, generation, pruning and selectable fields); deleting one removes its objects
//! and stops serving it (issue item 2).

use http::StatusCode;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use yurt_core::crd::NodePool;
use yurt_testkit::{ResourceDef, TestApiServer};

use crate::support::{bounded, call, server};

async fn established(s: &TestApiServer, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(s.client());
    bounded(async {
        loop {
            let crd = crds.get(name).await.unwrap();
            let ok = crd.status.and_then(|st| st.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if ok {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"color": {"type": "string"}, "replicas": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}}}]}
    })
}

const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

#[tokio::test]
async fn openyurt_crds_serve_typed_custom_resources() {
    let s = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client());
    for crd in yurt_core::crd::crds() {
        bounded(crds.create(&PostParams::default(), &crd))
            .await
            .unwrap();
    }
    established(&s, "nodepools.apps.openyurt.io").await;
    let pools: Api<NodePool> = Api::all(s.client());
    let pool: NodePool = serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
        "kind": "NodePool", "metadata": {"name": "hangzhou"}, "spec": {"type": "Edge"}}))
    .unwrap();
    let created = bounded(pools.create(&PostParams::default(), &pool))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let mut st = created.clone();
    st.status = Some(serde_json::from_value(json!({"readyNodeNum": 3})).unwrap());
    let updated = bounded(pools.replace_status("hangzhou", &PostParams::default(), &st))
        .await
        .unwrap();
    assert_eq!(
        updated.metadata.generation,
        Some(1),
        "status changes do not bump the generation"
    );
    assert!(updated.status.is_some());
    let list = bounded(pools.list(&ListParams::default())).await.unwrap();
    assert_eq!(list.items.len(), 1);
    // Custom resource lists keep apiVersion/kind on their items.
    let (_, raw) = call(&s, "GET", "/apis/apps.openyurt.io/v1beta2/nodepools", None).await;
    assert_eq!(raw["items"][0]["kind"], "NodePool");
}

#[tokio::test]
async fn custom_resources_follow_their_definition() {
    let s = server().await;
    let (code, crd) = call(
        &s,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(widget_crd()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{crd}");
    established(&s, "widgets.example.com").await;

    // Unknown fields are pruned; status is ignored on create; generation starts at 1.
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"color": "red", "replicas": 1, "bogus": true}, "status": {"replicas": 9}, "extra": 1});
    let (code, created) = call(&s, "POST", WIDGETS, Some(w)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"], json!({"color": "red", "replicas": 1}));
    assert!(created.get("status").is_none() && created.get("extra").is_none());
    assert_eq!(created["metadata"]["generation"], 1);
    call(
        &s,
        "POST",
        WIDGETS,
        Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"color": "blue"}})),
    )
    .await;

    // Selectable fields.
    let (code, list) = call(
        &s,
        "GET",
        &format!("{WIDGETS}?fieldSelector=spec.color%3Dred"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        call(
            &s,
            "GET",
            &format!("{WIDGETS}?fieldSelector=spec.size%3D1"),
            None
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    // An update must name the resourceVersion; a spec change bumps the generation.
    let mut upd = created.clone();
    upd["spec"]["color"] = json!("green");
    upd["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, st) = call(&s, "PUT", &format!("{WIDGETS}/w1"), Some(upd.clone())).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    upd["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let (code, updated) = call(&s, "PUT", &format!("{WIDGETS}/w1"), Some(upd)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(updated["metadata"]["generation"], 2);

    // Scale subresource.
    let (code, scale) = call(&s, "GET", &format!("{WIDGETS}/w1/scale"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(1))
    );
    let (code, _) = crate::support::patch(
        &s,
        &format!("{WIDGETS}/w1/scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":4}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, w1) = call(&s, "GET", &format!("{WIDGETS}/w1"), None).await;
    assert_eq!(w1["spec"]["replicas"], 4);

    // Strategic merge patch is not supported for custom resources.
    let (code, _) = crate::support::patch(
        &s,
        &format!("{WIDGETS}/w1"),
        "application/strategic-merge-patch+json",
        "{}",
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Deleting the definition deletes the objects and the resource.
    let (code, _) = call(
        &s,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    bounded(async {
        while call(&s, "GET", WIDGETS, None).await.0 != StatusCode::NOT_FOUND {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        call(
            &s,
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&s, "GET", "/apis/example.com/v1", None).await.0,
        StatusCode::NOT_FOUND
    );
    // Recreating it starts empty.
    call(
        &s,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(widget_crd()),
    )
    .await;
    let (code, list) = call(&s, "GET", WIDGETS, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_crd_with_a_bad_name_is_invalid() {
    let s = server().await;
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("widgets");
    let (code, st) = call(
        &s,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(crd),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
}

#[tokio::test]
async fn resources_can_be_registered_directly() {
    let s = server().await;
    s.register(
        ResourceDef::new("example.com", "v1alpha1", "gadgets", "Gadget")
            .cluster_scoped()
            .field_selector("spec.kind"),
    );
    let g = json!({"apiVersion": "example.com/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"kind": "x"}});
    assert_eq!(
        call(&s, "POST", "/apis/example.com/v1alpha1/gadgets", Some(g))
            .await
            .0,
        StatusCode::CREATED
    );
    let (_, list) = call(
        &s,
        "GET",
        "/apis/example.com/v1alpha1/gadgets?fieldSelector=spec.kind%3Dx",
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, doc) = call(&s, "GET", "/apis/example.com/v1alpha1", None).await;
    assert_eq!(doc["resources"][0]["name"], "gadgets");
}
