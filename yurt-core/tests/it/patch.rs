//! The patch engine against kube-apiserver's behaviour: strategic merge patch cases ported from
//! apimachinery's `strategicpatch/patch_test.go` tables (rewritten onto real Kubernetes fields),
//! RFC 7386 merge patch, RFC 6902 JSON patch with evanphx/json-patch v4 semantics, and the
//! `Status` each failure maps to.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use yurt_core::patch::{
    PatchError, PatchType, SchemaRef, apply_patch, json_patch, merge_patch, schema_for,
    strategic_merge_patch,
};
use yurt_core::status::StatusReason;

const POD: (&str, &str, &str) = ("", "v1", "Pod");
const NODE: (&str, &str, &str) = ("", "v1", "Node");
const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");
const NODEPOOL: (&str, &str, &str) = ("apps.openyurt.io", "v1beta2", "NodePool");

fn smp(gvk: (&str, &str, &str), original: &Value, patch: &Value) -> Result<Value, PatchError> {
    apply_patch(
        PatchType::Strategic,
        original,
        patch.to_string().as_bytes(),
        gvk,
    )
}

fn pod_smp(original: Value, patch: Value) -> Value {
    smp(POD, &original, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

fn containers(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({"name": n})).collect())
}

fn pod_with_containers(list: Value) -> Value {
    json!({"spec": {"containers": list}})
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: lists merged by key.

#[test]
fn smp_pod_conditions_merge_by_type_update_add_delete() {
    let pod = json!({"status": {"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"}]}});
    let patch = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
        {"type": "Initialized", "$patch": "delete"}]}});
    // Patch items keep the patch's order; a server-only item goes after the patch items it
    // followed in the live list, and new items are placed before server-only items.
    assert_eq!(
        pod_smp(pod, patch),
        json!({"status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
            {"type": "PodScheduled", "status": "True"}]}})
    );
}

#[test]
fn smp_containers_merge_by_name_with_env_ports_and_volume_mounts() {
    let pod = pod_with_containers(json!([
        {"name": "app", "image": "app:1",
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "sidecar", "image": "s:1"}]));
    let patch = pod_with_containers(json!([
        {"name": "app", "image": "app:2",
         "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
         "ports": [{"containerPort": 8080, "name": "metrics"}],
         "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]));
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(json!([
            {"name": "app", "image": "app:2",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
             "ports": [{"containerPort": 8080, "name": "metrics"}, {"containerPort": 80, "protocol": "TCP"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]},
            {"name": "sidecar", "image": "s:1"}]))
    );
}

#[test]
fn smp_volumes_merge_by_name_and_retain_keys_switches_the_source() {
    let pod = json!({"spec": {"volumes": [
        {"name": "cache", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "c1"}}]}});
    let patch = json!({"spec": {"volumes": [
        {"name": "cache", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/tmp/cache"}}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"spec": {"volumes": [
            {"name": "cache", "hostPath": {"path": "/tmp/cache"}},
            {"name": "cfg", "configMap": {"name": "c1"}}]}})
    );
}

#[test]
fn smp_image_pull_secrets_by_name_new_items_go_first() {
    let pod = json!({"spec": {"imagePullSecrets": [{"name": "a"}]}});
    let patch = json!({"spec": {"imagePullSecrets": [{"name": "b"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"spec": {"imagePullSecrets": [{"name": "b"}, {"name": "a"}]}})
    );
}

#[test]
fn smp_pod_ips_and_host_ips_merge_by_ip() {
    // hostIPs is listType=atomic for server-side apply but patchStrategy=merge: SMP merges it.
    let pod =
        json!({"status": {"podIPs": [{"ip": "10.0.0.1"}], "hostIPs": [{"ip": "192.168.1.1"}]}});
    let patch =
        json!({"status": {"podIPs": [{"ip": "fd00::1"}], "hostIPs": [{"ip": "192.168.1.2"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"status": {
            "podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}],
            "hostIPs": [{"ip": "192.168.1.2"}, {"ip": "192.168.1.1"}]}})
    );
}

#[test]
fn smp_node_addresses_merge_by_type() {
    let node = json!({"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "edge-1"}]}});
    let patch = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.6"}]}});
    assert_eq!(
        smp(NODE, &node, &patch).unwrap(),
        json!({"status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.6"},
            {"type": "Hostname", "address": "edge-1"}]}})
    );
}

#[test]
fn smp_owner_references_merge_by_uid() {
    let pod = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "kind": "ReplicaSet", "name": "rs-1"}]}});
    let patch = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "controller": true},
        {"uid": "u2", "kind": "Node", "name": "edge-1"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "kind": "ReplicaSet", "name": "rs-1", "controller": true},
            {"uid": "u2", "kind": "Node", "name": "edge-1"}]}})
    );
}

#[test]
fn smp_service_ports_merge_by_port_alone() {
    let svc = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}});
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}, {"port": 80, "targetPort": 9090}]}});
    assert_eq!(
        smp(("", "v1", "Service"), &svc, &patch).unwrap(),
        json!({"spec": {"ports": [
            {"port": 443, "targetPort": 8443},
            {"port": 80, "protocol": "TCP", "targetPort": 9090}]}})
    );
}

#[test]
fn smp_deployment_template_containers_merge_through_nested_refs() {
    let deploy = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "web", "image": "web:1", "resources": {"limits": {"cpu": "1"}}}]}}}});
    let patch = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "web", "resources": {"limits": {"memory": "1Gi"}}}]}}}});
    assert_eq!(
        smp(DEPLOYMENT, &deploy, &patch).unwrap(),
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}})
    );
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: ordering (patch_test.go "preserve the order" and "$setElementOrder").

#[test]
fn smp_preserves_patch_order_and_places_server_only_items() {
    // patch_test.go: "preserve the order from the patch in a merging list 2".
    let pod = pod_with_containers(json!([
        {"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]));
    let patch = pod_with_containers(json!([
        {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]));
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(json!([
            {"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]))
    );
}

#[test]
fn smp_primitive_merge_list_keeps_patch_order() {
    // patch_test.go: "preserve the order from the patch in a merging int list".
    let pod = json!({"metadata": {"finalizers": ["f1", "f2", "f3"]}});
    let out = pod_smp(pod, json!({"metadata": {"finalizers": ["f3", "f1"]}}));
    assert_eq!(out, json!({"metadata": {"finalizers": ["f2", "f3", "f1"]}}));
}

#[test]
fn smp_set_element_order_reorders() {
    let pod = pod_with_containers(containers(&["a", "b", "c"]));
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(containers(&["c", "a", "b"]))
    );
}

#[test]
fn smp_set_element_order_with_server_only_items() {
    // patch_test.go: "set elements order in a list with server-only items 2" and "... 3".
    let pod = pod_with_containers(json!([
        {"name": "1", "image": "a"}, {"name": "2", "image": "2"}, {"name": "9"},
        {"name": "3", "image": "3"}, {"name": "4", "image": "4"}]));
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}});
    assert_eq!(
        pod_smp(pod, patch.clone()),
        pod_with_containers(json!([
            {"name": "2", "image": "2"}, {"name": "1", "image": "a"}, {"name": "9"},
            {"name": "4", "image": "4"}, {"name": "3", "image": "3"}]))
    );
    let pod = pod_with_containers(containers(&["1", "2", "7", "9", "8", "3", "4"]));
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(containers(&["2", "1", "7", "9", "8", "4", "3"]))
    );
}

#[test]
fn smp_set_element_order_may_name_items_absent_from_the_list() {
    // patch_test.go: "$setElementOrder contains item that is not present in the list to be merged".
    let pod = pod_with_containers(containers(&["1", "3"]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(json!([{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]))
    );
}

#[test]
fn smp_set_element_order_with_duplicates_in_the_live_list() {
    // patch_test.go: "behavior of set element order for a merging list with duplicate".
    let pod = pod_with_containers(json!([
        {"name": "1"}, {"name": "2", "image": "dup1"}, {"name": "3"},
        {"name": "2", "image": "dup2"}, {"name": "4"}]));
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}, {"name": "2"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(json!([
            {"name": "2", "image": "dup1"}, {"name": "2", "image": "dup2"},
            {"name": "1"}, {"name": "4"}, {"name": "3"}]))
    );
}

#[test]
fn smp_set_element_order_must_agree_with_the_patch_list() {
    // patch_test.go: "should check if order in $setElementOrder and patch list match".
    let pod = pod_with_containers(containers(&["1", "3", "2"]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]}});
    let err = smp(POD, &pod, &patch).unwrap_err();
    assert!(
        matches!(&err, PatchError::Rejected { message } if message.contains("doesn't match")),
        "{err:?}"
    );
}

#[test]
fn smp_kubectl_apply_style_replacement_keeps_server_only_item_in_place() {
    // What `kubectl apply` sends when container "b" is replaced by "c" while the live object has
    // an extra "sidecar": Go deletes "b" in place and appends "c" into the freed slot of the live
    // list, so "c" counts as coming after "sidecar" when the final order is computed.
    let pod = pod_with_containers(containers(&["a", "b", "sidecar"]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
        "containers": [{"name": "c", "image": "c:1"}, {"name": "b", "$patch": "delete"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(
            json!([{"name": "a"}, {"name": "sidecar"}, {"name": "c", "image": "c:1"}])
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: primitive lists, atomic lists, directives.

#[test]
fn smp_finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let pod = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch =
        json!({"metadata": {"finalizers": ["d"], "$deleteFromPrimitiveList/finalizers": ["b"]}});
    assert_eq!(
        pod_smp(pod.clone(), patch),
        json!({"metadata": {"finalizers": ["d", "a", "c"]}})
    );
    // Adding a finalizer that is already there changes nothing.
    assert_eq!(
        pod_smp(pod.clone(), json!({"metadata": {"finalizers": ["a"]}})),
        pod
    );
}

#[test]
fn smp_delete_from_primitive_list_edge_cases() {
    // patch_test.go: deleting a nonexistent item, from an absent list, and from a list without
    // merge strategy (container args are atomic).
    let pod = json!({"metadata": {"finalizers": ["a", "b"]},
                     "spec": {"containers": [{"name": "c", "args": ["x", "y", "z"]}]}});
    let patch = json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["nope"],
                     "$deleteFromPrimitiveList/labels": ["x"]},
        "spec": {"containers": [{"name": "c", "$deleteFromPrimitiveList/args": ["y"]}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"metadata": {"finalizers": ["a", "b"]},
               "spec": {"containers": [{"name": "c", "args": ["x", "z"]}]}})
    );
}

#[test]
fn smp_atomic_lists_are_replaced_whole() {
    let pod = json!({
        "spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
            {"key": "edge", "operator": "Exists"}]},
        "status": {"containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 1},
            {"name": "sidecar", "ready": true, "restartCount": 0}]}});
    let patch = json!({
        "spec": {"tolerations": [{"key": "edge", "operator": "Equal", "value": "x"}]},
        "status": {"containerStatuses": [{"name": "app", "ready": true}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({
            "spec": {"tolerations": [{"key": "edge", "operator": "Equal", "value": "x"}]},
            "status": {"containerStatuses": [{"name": "app", "ready": true}]}})
    );
}

#[test]
fn smp_null_deletes_keys() {
    let pod =
        json!({"metadata": {"labels": {"app": "web", "tier": "1"}}, "spec": {"nodeName": "n1"}});
    let patch =
        json!({"metadata": {"labels": {"tier": null, "absent": null}}, "spec": {"nodeName": null}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {}})
    );
}

#[test]
fn smp_patch_replace_on_a_map() {
    // patch_test.go: "add key and delete all keys from map".
    let pod = json!({"metadata": {"labels": {"app": "web", "tier": "1"}}});
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "other": "a"}}});
    assert_eq!(
        pod_smp(pod.clone(), patch),
        json!({"metadata": {"labels": {"other": "a"}}})
    );
    // On the whole object.
    assert_eq!(
        pod_smp(pod, json!({"$patch": "replace", "kind": "Pod"})),
        json!({"kind": "Pod"})
    );
}

#[test]
fn smp_patch_delete_on_a_map_leaves_it_empty() {
    // patch_test.go: "delete map from nested map".
    let pod = json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}, "nodeName": "n"}});
    let patch = json!({"spec": {"nodeSelector": {"$patch": "delete"}}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"spec": {"nodeSelector": {}, "nodeName": "n"}})
    );
}

#[test]
fn smp_patch_replace_inside_a_list_replaces_the_list() {
    // patch_test.go: "delete all items from merging list", then a replacement with content.
    let pod = pod_with_containers(containers(&["1", "2"]));
    let out = pod_smp(
        pod.clone(),
        pod_with_containers(json!([{"$patch": "replace"}])),
    );
    assert_eq!(out, pod_with_containers(json!([])));
    let out = pod_smp(
        pod,
        pod_with_containers(json!([{"name": "3", "image": "x"}, {"$patch": "replace"}])),
    );
    assert_eq!(
        out,
        pod_with_containers(json!([{"name": "3", "image": "x"}]))
    );
}

#[test]
fn smp_patch_delete_removes_every_duplicate() {
    // patch_test.go: "delete all duplicate entries in a merging list".
    let pod = pod_with_containers(json!([
        {"name": "1"}, {"name": "1"}, {"name": "2", "image": "a"}, {"name": "3"}, {"name": "3"}]));
    let patch = pod_with_containers(json!([
        {"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]));
    assert_eq!(
        pod_smp(pod, patch),
        pod_with_containers(json!([{"name": "2", "image": "a"}]))
    );
}

#[test]
fn smp_new_list_drops_directive_items() {
    // patch_test.go: "nested patch merge with empty list".
    let pod = json!({"metadata": {"name": "hi"}});
    let patch = json!({"spec": {"imagePullSecrets": [
        {"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"metadata": {"name": "hi"}, "spec": {"imagePullSecrets": [{"name": "hello"}]}})
    );
}

#[test]
fn smp_new_values_lose_nulls() {
    let pod = json!({"spec": {}});
    let patch = json!({"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": null}}});
    assert_eq!(
        pod_smp(pod, patch),
        json!({"spec": {"securityContext": {"runAsUser": 1000}}})
    );
}

#[test]
fn smp_retain_keys_clears_fields_of_a_union() {
    // patch_test.go: "retainKeys map should clear defaulted field with conflict (discriminated
    // union)", on Deployment.spec.strategy (patchStrategy=retainKeys).
    let deploy =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    assert_eq!(
        smp(DEPLOYMENT, &deploy, &patch).unwrap(),
        json!({"spec": {"strategy": {"type": "Recreate"}}})
    );
    // Without the directive the map merges as usual.
    let patch = json!({"spec": {"strategy": {"type": "Recreate"}}});
    assert_eq!(
        smp(DEPLOYMENT, &deploy, &patch).unwrap(),
        json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}})
    );
}

#[test]
fn smp_retain_keys_must_list_every_patched_key() {
    let deploy = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate",
                                             "rollingUpdate": {"maxSurge": 2}}}});
    let err = smp(DEPLOYMENT, &deploy, &patch).unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "invalid patch format of retainKeys".into()
        }
    );
    let st = err.status();
    assert_eq!((st.code, st.reason), (400, Some(StatusReason::BadRequest)));
    let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
    assert!(matches!(
        smp(DEPLOYMENT, &deploy, &patch),
        Err(PatchError::Malformed { .. })
    ));
}

#[test]
fn smp_fields_without_metadata_merge_maps_and_replace_lists() {
    // ControllerRevision.data is a RawExtension: nothing is known inside it.
    let rev = json!({"data": {"spec": {"a": 1, "b": {"c": 2, "d": 3}}, "list": [1, 2]}});
    let patch = json!({"data": {"spec": {"b": {"c": 9}}, "list": [3]}});
    assert_eq!(
        smp(("apps", "v1", "ControllerRevision"), &rev, &patch).unwrap(),
        json!({"data": {"spec": {"a": 1, "b": {"c": 9, "d": 3}}, "list": [3]}})
    );
    // The same with an explicitly schema-less merge.
    let out = strategic_merge_patch(&rev, &patch, SchemaRef::free_form()).unwrap();
    assert_eq!(out["data"]["list"], json!([3]));
}

#[test]
fn smp_errors_are_classified_like_the_apiserver() {
    let pod = pod_with_containers(containers(&["a"]));
    // Unknown $patch value: 500 with an empty reason, the merge error as message.
    let err = smp(POD, &pod, &json!({"spec": {"$patch": "foo"}})).unwrap_err();
    let st = err.status();
    assert_eq!((st.code, st.reason.clone()), (500, None));
    assert!(
        st.message
            .starts_with("unknown patch type: foo in map: map[$patch:foo]"),
        "{}",
        st.message
    );
    // $patch: merge inside a list.
    let err = smp(
        POD,
        &pod,
        &pod_with_containers(json!([{"$patch": "merge"}])),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Rejected {
            message: "merging lists cannot yet be specified in the patch".into()
        }
    );
    // A list item without its merge key (apimachinery's exact wording).
    let err = smp(POD, &pod, &pod_with_containers(json!([{"image": "x"}]))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "map: map[image:x] does not contain declared merge key: name"
    );
    // A list of lists: 422.
    let err = smp(
        POD,
        &json!({"metadata": {"finalizers": []}}),
        &json!({"metadata": {"finalizers": [["x"]]}}),
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::Invalid { .. }), "{err:?}");
    assert_eq!(err.status().code, 422);
    // Mixed element types.
    let err = smp(
        POD,
        &json!({"metadata": {"finalizers": ["a"]}}),
        &json!({"metadata": {"finalizers": [1]}}),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("list element types are not identical"),
        "{err}"
    );
}

#[test]
fn smp_body_validation() {
    let pod = json!({"metadata": {"name": "p"}});
    let err = apply_patch(PatchType::Strategic, &pod, b"{not json", POD).unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "invalid JSON patch".into()
        }
    );
    let err = apply_patch(PatchType::Strategic, &pod, b"[1]", POD).unwrap_err();
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    );
    // `null` decodes to an empty patch.
    assert_eq!(
        apply_patch(PatchType::Strategic, &pod, b"null", POD).unwrap(),
        pod
    );
}

#[test]
fn smp_is_refused_for_custom_resources() {
    let obj = json!({"spec": {"nodes": ["a"]}});
    let err = apply_patch(PatchType::Strategic, &obj, b"{}", NODEPOOL).unwrap_err();
    assert!(matches!(err, PatchError::UnsupportedForKind { .. }));
    let st = err.status();
    assert_eq!(
        (st.code, st.reason.clone()),
        (415, Some(StatusReason::UnsupportedMediaType))
    );
    assert_eq!(
        st.message,
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    assert!(schema_for("apps.openyurt.io", "v1beta2", "NodePool").is_none());
    assert_eq!(
        schema_for("", "v1", "Node").and_then(|s| s.name()),
        Some("io.k8s.api.core.v1.Node")
    );
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch (RFC 7386).

#[test]
fn merge_patch_rfc7386_cases() {
    // Cases from RFC 7386 appendix A.
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (original, patch, expected) in cases {
        assert_eq!(
            merge_patch(&original, &patch),
            expected,
            "{original} + {patch}"
        );
    }
}

#[test]
fn merge_patch_replaces_lists_and_prunes_nulls_like_evanphx() {
    let pod = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"a": "1"}},
                     "spec": {"containers": [{"name": "c"}]}});
    let patch = json!({"metadata": {"finalizers": ["z"], "labels": [{"x": null}]},
                       "spec": {"containers": [{"name": "d", "image": null}], "extra": {"x": null, "y": 1}}});
    // A value landing on nothing or on a non-object loses its nested nulls, also in objects inside
    // lists; a list landing on an object is taken verbatim (evanphx/json-patch v4).
    assert_eq!(
        apply_patch(PatchType::Merge, &pod, patch.to_string().as_bytes(), POD).unwrap(),
        json!({"metadata": {"finalizers": ["z"], "labels": [{"x": null}]},
               "spec": {"containers": [{"name": "d"}], "extra": {"y": 1}}})
    );
}

#[test]
fn merge_patch_empty_object_is_identity_and_bodies_are_validated() {
    let pod = json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"x": [1, null]}});
    assert_eq!(merge_patch(&pod, &json!({})), pod);
    assert_eq!(
        apply_patch(PatchType::Merge, &pod, b"{}", POD).unwrap(),
        pod
    );
    let err = apply_patch(PatchType::Merge, &pod, b"[]", POD).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"
    );
    assert_eq!(err.status().code, 400);
    let err = apply_patch(PatchType::Merge, &pod, b"null", POD).unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "Invalid JSON Patch".into()
        }
    );
    let err = apply_patch(PatchType::Merge, &pod, b"{\"a\":", POD).unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "invalid JSON patch".into()
        }
    );
    // Merge patch works on any kind, custom resources included.
    let out = apply_patch(
        PatchType::Merge,
        &json!({"spec": {}}),
        br#"{"spec": {"a": 1}}"#,
        NODEPOOL,
    );
    assert_eq!(out.unwrap(), json!({"spec": {"a": 1}}));
}

// ---------------------------------------------------------------------------------------------
// JSON patch (RFC 6902, evanphx/json-patch v4 semantics).

fn jp(doc: &Value, ops: Value) -> Result<Value, PatchError> {
    json_patch(doc, ops.to_string().as_bytes())
}

#[test]
fn json_patch_all_operations() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}});
    let out = jp(
        &doc,
        json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/spec/list/0"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "one"},
            {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/annotations"},
            {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
            {"op": "test", "path": "/spec/copy/1", "value": 3},
            {"op": "add", "path": "/spec/list/-", "value": 4},
            {"op": "add", "path": "/spec/list/0", "value": 0},
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "escaped"}
        ]),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"a": "one", "x/y": "escaped"}, "annotations": "2"},
               "spec": {"list": [0, 2, 3, 4], "copy": [2, 3]}})
    );
}

#[test]
fn json_patch_failed_test_is_test_failed_422() {
    let doc = json!({"spec": {"replicas": 1}});
    let err = jp(
        &doc,
        json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::TestFailed {
            message: "testing value /spec/replicas failed: test failed".into()
        }
    );
    let st = err.status();
    assert_eq!(
        (st.code, st.reason.clone()),
        (422, Some(StatusReason::Invalid))
    );
    assert_eq!(
        st.message,
        "the server rejected our request due to an error in our request"
    );
    // Integers and floats differ, as int64 and float64 do in the apiserver.
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec/replicas", "value": 1.0}])
        )
        .is_err()
    );
    // A missing member tests equal to null (evanphx/json-patch v4).
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec/paused", "value": null}])
        )
        .is_ok()
    );
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec/paused", "value": false}])
        )
        .is_err()
    );
}

#[test]
fn json_patch_missing_paths_are_invalid() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1]}});
    for ops in [
        json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
        json!([{"op": "replace", "path": "/metadata/annotations/x", "value": "1"}]),
        json!([{"op": "add", "path": "/status/phase", "value": "Running"}]),
        json!([{"op": "remove", "path": "/spec/list/5"}]),
        json!([{"op": "move", "from": "/nope", "path": "/x"}]),
        json!([{"op": "test", "path": "/a/b/c", "value": 1}]),
        json!([{"op": "frobnicate", "path": "/a"}]),
        json!([{"op": "add", "value": 1}]),
    ] {
        let err = jp(&doc, ops.clone()).unwrap_err();
        assert!(matches!(err, PatchError::Invalid { .. }), "{ops}: {err:?}");
        assert_eq!(err.status().code, 422, "{ops}");
    }
}

#[test]
fn json_patch_evanphx_v4_quirks() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}});
    // replace of a missing member of an existing object adds it.
    let out = jp(
        &doc,
        json!([{"op": "replace", "path": "/metadata/labels/b", "value": "2"}]),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    // Negative indexes count from the end; for add, -1 appends.
    let out = jp(
        &doc,
        json!([
        {"op": "remove", "path": "/spec/list/-1"},
        {"op": "add", "path": "/spec/list/-1", "value": 9},
        {"op": "replace", "path": "/spec/list/-2", "value": 7}]),
    )
    .unwrap();
    assert_eq!(out["spec"]["list"], json!([1, 7, 9]));
    // A missing value is null; copying a missing member copies null.
    let out = jp(
        &doc,
        json!([
        {"op": "add", "path": "/spec/x"},
        {"op": "copy", "from": "/spec/nope", "path": "/spec/y"}]),
    )
    .unwrap();
    assert_eq!(
        (&out["spec"]["x"], &out["spec"]["y"]),
        (&Value::Null, &Value::Null)
    );
    // replace of the whole document.
    let out = jp(
        &doc,
        json!([{"op": "replace", "path": "", "value": {"kind": "Pod"}}]),
    )
    .unwrap();
    assert_eq!(out, json!({"kind": "Pod"}));
    // Through apply_patch the result must stay an object (the apiserver decodes it into a Pod).
    let err = apply_patch(
        PatchType::Json,
        &doc,
        br#"[{"op": "replace", "path": "", "value": [1]}]"#,
        POD,
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::Invalid { .. }), "{err:?}");
}

#[test]
fn json_patch_body_validation() {
    let doc = json!({"a": 1});
    let err = json_patch(&doc, b"[{\"op\": ").unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "invalid JSON patch".into()
        }
    );
    let st = err.status();
    assert_eq!(
        (st.code, st.reason.clone()),
        (400, Some(StatusReason::BadRequest))
    );
    let err = json_patch(&doc, br#"{"op": "add"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
    );
    let err = json_patch(&doc, br#"[{"op": 1, "path": "/a"}]"#).unwrap_err();
    assert!(matches!(err, PatchError::Malformed { .. }));
    // `null` is an empty patch; `[]` too.
    assert_eq!(json_patch(&doc, b"null").unwrap(), doc);
    assert_eq!(json_patch(&doc, b"[]").unwrap(), doc);
}

#[test]
fn json_patch_operation_and_copy_limits() {
    let doc = json!({"a": 1});
    let ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
        .collect();
    let err = json_patch(&doc, Value::Array(ops).to_string().as_bytes()).unwrap_err();
    let st = err.status();
    assert_eq!(
        (st.code, st.reason.clone()),
        (413, Some(StatusReason::RequestEntityTooLarge))
    );
    assert_eq!(
        st.message,
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    // Doubling a value with copy hits the 3 MiB copy budget instead of exhausting memory.
    let chunk = vec!["0123456789abcdef"; 64];
    let mut ops = vec![json!({"op": "add", "path": "/x", "value": chunk})];
    ops.extend((0..40).map(|_| json!({"op": "copy", "from": "/x", "path": "/x/-"})));
    let err = json_patch(&doc, Value::Array(ops).to_string().as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("exceeding the limit 3145728"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Content types, apply.

#[test]
fn patch_type_from_content_type() {
    for t in PatchType::ALL {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
        Some(PatchType::Strategic)
    );
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json;charset=UTF-8"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    for other in [
        "application/json",
        "application/apply-patch+cbor",
        "APPLICATION/MERGE-PATCH+JSON",
        "application/merge-patch+json ; charset=utf-8",
        "",
        ";application/merge-patch+json",
    ] {
        assert_eq!(PatchType::from_content_type(other), None, "{other:?}");
    }
    assert_eq!(PatchType::Merge.to_string(), "application/merge-patch+json");
}

#[test]
fn apply_creates_and_merges_by_list_type() {
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
                        "spec": {"containers": [{"name": "app", "image": "app:2", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                                 "tolerations": [{"key": "k"}]}});
    let body = config.to_string();
    // Create: the configuration is the object.
    let created = apply_patch(PatchType::Apply, &Value::Null, body.as_bytes(), POD).unwrap();
    assert_eq!(created, config);
    // Update: maps merge, listType=map lists merge by their keys, atomic lists are replaced.
    let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"b": "2"}},
                      "spec": {"containers": [
                          {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "protocol": "UDP"}]},
                          {"name": "sidecar", "image": "s"}],
                               "tolerations": [{"key": "old"}]}});
    let out = apply_patch(PatchType::Apply, &live, body.as_bytes(), POD).unwrap();
    assert_eq!(
        out,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
               "spec": {"containers": [
                   {"name": "app", "image": "app:2", "ports": [
                       {"containerPort": 80, "protocol": "UDP"}, {"containerPort": 80, "protocol": "TCP"}]},
                   {"name": "sidecar", "image": "s"}],
                        "tolerations": [{"key": "k"}]}})
    );
}

#[test]
fn apply_validates_the_configuration() {
    let live = json!({"apiVersion": "v1", "kind": "Pod"});
    let err = apply_patch(
        PatchType::Apply,
        &live,
        br#"{"apiVersion": "apps/v1", "kind": "Pod"}"#,
        POD,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "invalid object type: apps/v1, Kind=Pod".into()
        }
    );
    let err = apply_patch(
        PatchType::Apply,
        &live,
        br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"managedFields": []}}"#,
        POD,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Malformed {
            message: "metadata.managedFields must be nil".into()
        }
    );
    let err =
        apply_patch(PatchType::Apply, &live, b"apiVersion: v1\nkind: Pod\n", POD).unwrap_err();
    assert!(
        matches!(&err, PatchError::Malformed { message } if message.contains("JSON syntax only"))
    );
    // Custom resources apply too (schema-less: maps merge, lists are replaced).
    let cr = json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool", "spec": {"type": "Edge", "taints": [{"key": "a"}]}});
    let out = apply_patch(
        PatchType::Apply,
        &cr,
        br#"{"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool", "spec": {"taints": [{"key": "b"}]}}"#,
        NODEPOOL,
    )
    .unwrap();
    assert_eq!(
        out["spec"],
        json!({"type": "Edge", "taints": [{"key": "b"}]})
    );
}
