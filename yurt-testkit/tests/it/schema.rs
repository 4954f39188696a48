//! Structural schema validation and defaulting of custom resources: 422 Invalid with the
//! apiserver's field paths and words (raw HTTP, kube-rs and kubectl), defaults applied, and
//! updates (including of the status subresource) checked as creates are.

use http::StatusCode;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use yurt_testkit::TestApiServer;

use crate::support::{bounded, call, server};

const GIZMOS: &str = "/apis/example.com/v1/namespaces/default/gizmos";

async fn with_gizmos() -> TestApiServer {
    let s = server().await;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["type"], "properties": {
                        "type": {"type": "string", "enum": ["Edge", "Cloud"]},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {
                        "ready": {"type": "integer", "minimum": 0}}}}}}}]}});
    s.create_object(crd).await.expect("CRD created");
    s
}

fn gizmo(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Gizmo",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[tokio::test]
async fn invalid_custom_resources_are_refused_with_field_errors() {
    let s = with_gizmos().await;
    let (code, body) = call(
        &s,
        "POST",
        GIZMOS,
        Some(gizmo("g", json!({"type": "Edge", "replicas": "three"}))),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["message"],
        r#"Gizmo.example.com "g" is invalid: spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
    );
    assert_eq!(body["details"]["name"], "g");
    assert_eq!(body["details"]["kind"], "Gizmo");
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "FieldValueTypeInvalid", "field": "spec.replicas",
            "message": r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#}])
    );

    let (code, body) = call(
        &s,
        "POST",
        GIZMOS,
        Some(gizmo("g", json!({"replicas": 0, "name": "TOOLONG"}))),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        r#"Gizmo.example.com "g" is invalid: [spec.type: Required value, spec.name: Too long: may not be more than 5 bytes, spec.name: Invalid value: "TOOLONG": spec.name in body should match '^[a-z]+$', spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1]"#
    );
    assert_eq!(
        call(&s, "GET", &format!("{GIZMOS}/g"), None).await.0,
        StatusCode::NOT_FOUND
    );

    // Defaults are applied; unknown fields pruned except where preserved.
    let (code, created) = call(
        &s,
        "POST",
        GIZMOS,
        Some(gizmo(
            "g",
            json!({"type": "Edge", "bogus": 1, "extra": {"free": {"x": 1}}}),
        )),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["spec"],
        json!({"type": "Edge", "replicas": 1, "extra": {"free": {"x": 1}}})
    );

    // Updates are validated too, and an invalid one changes nothing.
    let (code, body) = crate::support::patch(
        &s,
        &format!("{GIZMOS}/g"),
        "application/merge-patch+json",
        r#"{"spec":{"type":"Moon"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        r#"Gizmo.example.com "g" is invalid: spec.type: Unsupported value: "Moon": supported values: "Edge", "Cloud""#
    );
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "FieldValueNotSupported"
    );
    let (_, current) = call(&s, "GET", &format!("{GIZMOS}/g"), None).await;
    assert_eq!(current["spec"]["type"], "Edge");
    let (code, body) = crate::support::patch(
        &s,
        &format!("{GIZMOS}/g/status"),
        "application/merge-patch+json",
        r#"{"status":{"ready":-1}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        r#"Gizmo.example.com "g" is invalid: status.ready: Invalid value: -1: status.ready in body should be greater than or equal to 0"#
    );
    // Removing a defaulted field brings the default back.
    let (code, patched) = crate::support::patch(
        &s,
        &format!("{GIZMOS}/g"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":null}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(patched["spec"]["replicas"], 1);
}

#[tokio::test]
async fn kube_rs_and_kubectl_see_the_validation_errors() {
    let s = with_gizmos().await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gizmo"),
        "gizmos",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(s.client(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(gizmo("k", json!({"type": "Moon"}))).unwrap();
    let err = bounded(api.create(&PostParams::default(), &obj))
        .await
        .unwrap_err();
    let kube::Error::Api(ae) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(ae.code, 422);
    assert_eq!(ae.reason, "Invalid");
    assert!(
        ae.message.ends_with(
            r#"spec.type: Unsupported value: "Moon": supported values: "Edge", "Cloud""#
        ),
        "{}",
        ae.message
    );

    let Some(kubectl) = crate::kubectl::Kubectl::new(&s) else {
        return;
    };
    let manifest = "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: k\n  namespace: default\nspec:\n  type: Edge\n  replicas: 20\n";
    let (ok, _out, err) = kubectl.run(&["apply", "-f", "-"], Some(manifest)).await;
    assert!(!ok);
    assert!(
        err.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"),
        "{err}"
    );
}
