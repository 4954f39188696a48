//! `nodepool-controller`: pool membership and status, and the sync of pool attributes onto
//! member nodes (add, change, remove, a node leaving).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use yurt_core::crd::NodePool;
use yurt_core::wellknown::node::{NODEPOOL_LABEL, PREVIOUS_ATTRIBUTES_ANNOTATION};

use crate::support::*;

fn status_of(pool: &NodePool) -> (Vec<String>, Option<i32>, Option<i32>) {
    let st = pool.status.clone().unwrap_or_default();
    (st.nodes, st.ready_node_num, st.unready_node_num)
}

async fn wait_status(
    s: &yurt_testkit::TestApiServer,
    name: &str,
    nodes: &[&str],
    ready: i32,
    unready: i32,
) {
    let want = (
        nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        Some(ready),
        Some(unready),
    );
    eventually(&format!("status of {name} = {want:?}"), || async {
        (status_of(&pool(s, name).await) == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn pool_status_follows_membership_and_readiness() {
    let s = server_with_crds().await;
    create_pool(&s, "hangzhou", json!({"type": "Edge"})).await;
    create_node(&s, "n2", json!({NODEPOOL_LABEL: "hangzhou"}), false).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "hangzhou"}), true).await;
    create_node(&s, "other", json!({NODEPOOL_LABEL: "beijing"}), true).await;
    create_node(&s, "loose", json!({}), true).await;
    let m = Running::all(&s);

    wait_status(&s, "hangzhou", &["n1", "n2"], 1, 1).await;

    // Joining, readiness changes, leaving and deletion are all counted.
    label_node(&s, "loose", json!({NODEPOOL_LABEL: "hangzhou"})).await;
    set_ready(&s, "n2", true).await;
    wait_status(&s, "hangzhou", &["loose", "n1", "n2"], 3, 0).await;
    label_node(&s, "n1", json!({NODEPOOL_LABEL: null})).await;
    wait_status(&s, "hangzhou", &["loose", "n2"], 2, 0).await;
    let nodes: Api<Node> = Api::all(s.client());
    bounded(nodes.delete("n2", &DeleteParams::default()))
        .await
        .unwrap();
    wait_status(&s, "hangzhou", &["loose"], 1, 0).await;
    // A node moving to another pool is counted out of the old one.
    label_node(&s, "loose", json!({NODEPOOL_LABEL: "beijing"})).await;
    wait_status(&s, "hangzhou", &[], 0, 0).await;
    m.stop().await.unwrap();
}

fn labels(n: &Node) -> BTreeMap<String, String> {
    n.metadata.labels.clone().unwrap_or_default()
}

fn annotations(n: &Node) -> BTreeMap<String, String> {
    n.metadata.annotations.clone().unwrap_or_default()
}

fn taint_keys(n: &Node) -> Vec<String> {
    let mut keys: Vec<String> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}={}:{}", t.key, t.value.unwrap_or_default(), t.effect))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn pool_attributes_are_added_changed_removed_and_dropped_on_leaving() {
    let s = server_with_crds().await;
    create_pool(
        &s,
        "hangzhou",
        json!({"type": "Edge", "labels": {"zone": "a", "tier": "edge"},
            "annotations": {"owner": "team-a"},
            "taints": [{"key": "edge", "value": "true", "effect": "NoSchedule"}]}),
    )
    .await;
    create_node(
        &s,
        "n1",
        json!({NODEPOOL_LABEL: "hangzhou", "own": "kept"}),
        true,
    )
    .await;
    let nodes: Api<Node> = Api::all(s.client());
    // A taint of the node's own, which the pool never touches.
    bounded(nodes.patch(
        "n1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"taints": [{"key": "mine", "effect": "NoExecute"}]}})),
    ))
    .await
    .unwrap();
    let m = Running::all(&s);

    // Added.
    let n = eventually("attributes added", || async {
        let n = node(&s, "n1").await;
        (labels(&n).get("zone") == Some(&"a".to_string())
            && annotations(&n).get("owner") == Some(&"team-a".to_string())
            && taint_keys(&n).len() == 2)
            .then_some(n)
    })
    .await;
    assert_eq!(labels(&n).get("tier").map(String::as_str), Some("edge"));
    assert_eq!(labels(&n).get("own").map(String::as_str), Some("kept"));
    assert_eq!(
        taint_keys(&n),
        vec![
            "edge=true:NoSchedule".to_string(),
            "mine=:NoExecute".to_string()
        ]
    );
    let record: serde_json::Value =
        serde_json::from_str(&annotations(&n)[PREVIOUS_ATTRIBUTES_ANNOTATION]).unwrap();
    assert_eq!(record["labels"], json!({"tier": "edge", "zone": "a"}));

    // Changed and removed: `tier` and the annotation leave the pool, `zone` changes, the taint
    // changes value.
    let pools: Api<NodePool> = Api::all(s.client());
    bounded(pools.patch(
        "hangzhou",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"labels": {"tier": null, "zone": "b"},
            "annotations": null,
            "taints": [{"key": "edge", "value": "false", "effect": "NoSchedule"}]}})),
    ))
    .await
    .unwrap();
    let n = eventually("attributes changed", || async {
        let n = node(&s, "n1").await;
        (labels(&n).get("zone") == Some(&"b".to_string())
            && !labels(&n).contains_key("tier")
            && !annotations(&n).contains_key("owner")
            && taint_keys(&n).contains(&"edge=false:NoSchedule".to_string()))
        .then_some(n)
    })
    .await;
    assert_eq!(labels(&n).get("own").map(String::as_str), Some("kept"));
    assert_eq!(
        taint_keys(&n),
        vec![
            "edge=false:NoSchedule".to_string(),
            "mine=:NoExecute".to_string()
        ]
    );

    // Leaving: the pool's attributes go, the node's own stay.
    label_node(&s, "n1", json!({NODEPOOL_LABEL: null})).await;
    let n = eventually("attributes dropped", || async {
        let n = node(&s, "n1").await;
        (!labels(&n).contains_key("zone")
            && !annotations(&n).contains_key(PREVIOUS_ATTRIBUTES_ANNOTATION))
        .then_some(n)
    })
    .await;
    assert_eq!(labels(&n).get("own").map(String::as_str), Some("kept"));
    assert_eq!(taint_keys(&n), vec!["mine=:NoExecute".to_string()]);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn attribute_sync_can_be_turned_off() {
    let s = server_with_crds().await;
    create_pool(&s, "hangzhou", json!({"labels": {"zone": "a"}})).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "hangzhou"}), true).await;
    let config = yurt_pool::ManagerConfig {
        enable_sync_nodepool_configurations: false,
        ..Default::default()
    };
    let m = Running::start(yurt_pool::Manager::builder(s.client()).config(config));
    // Status still converges...
    wait_status(&s, "hangzhou", &["n1"], 1, 0).await;
    // ...but by then nothing was written to the node.
    assert!(!labels(&node(&s, "n1").await).contains_key("zone"));
    let node_writes = s
        .traffic()
        .records
        .iter()
        .filter(|r| r.resource == "nodes" && r.method == "PATCH" && !r.path.ends_with("/status"))
        .count();
    assert_eq!(node_writes, 0);
    m.stop().await.unwrap();
}
