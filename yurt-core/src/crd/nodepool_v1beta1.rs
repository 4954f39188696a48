//! NodePool `apps.openyurt.io/v1beta1`: the previous served version of [`super::NodePool`]
//! (v1beta2, the storage version), and the conversion between the two.
//!
//! v1beta1 has no leader-hub fields. Converting up ([`to_v1beta2`]) copies the shared fields and
//! fills the v1beta2-only ones with their defaults (`interConnectivity: false`,
//! `leaderElectionStrategy: random`, `leaderReplicas: 1`), as upstream does. Converting down
//! ([`from_v1beta2`]) copies the shared fields; so that a v1beta2 object read and written back
//! through v1beta1 keeps its leader-hub settings, the v1beta2-only fields that are set are
//! stashed in the annotation [`V1BETA2_FIELDS_ANNOTATION`] and restored (and the annotation
//! removed) when converting up again. Both functions are pure and total.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::nodepool::{self as v1beta2, LeaderElectionStrategy, NodePoolType};

/// Annotation holding the v1beta2-only fields of a NodePool while it is seen as v1beta1
/// (JSON `{"spec": {...}, "status": {...}}` with v1beta2 field names).
pub const V1BETA2_FIELDS_ANNOTATION: &str = "nodepool.openyurt.io/v1beta2-fields";

/// Desired state of a v1beta1 NodePool.
// kube's `printcolumn(...)` entries repeat keys such as `type_ = "integer"`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.openyurt.io",
    version = "v1beta1",
    kind = "NodePool",
    plural = "nodepools",
    shortname = "np",
    category = "yurt",
    status = "NodePoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A NodePool groups nodes that share a network domain (v1beta1; v1beta2 is stored).",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.type",
        description = "Whether the pool is an Edge or a Cloud pool"
    ),
    printcolumn(
        name = "ReadyNodes",
        type_ = "integer",
        json_path = ".status.readyNodeNum",
        description = "Number of ready nodes in the pool"
    ),
    printcolumn(
        name = "NotReadyNodes",
        type_ = "integer",
        json_path = ".status.unreadyNodeNum"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Whether the pool runs at the edge (`Edge`) or in the cloud (`Cloud`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<NodePoolType>,

    /// The pool's nodes use host networking only (no CNI plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,

    /// Labels set on every node of the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations set on every node of the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Taints set on every node of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

/// Observed state of a v1beta1 NodePool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Number of ready nodes in the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_node_num: Option<i32>,

    /// Number of nodes in the pool that are not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unready_node_num: Option<i32>,

    /// Names of the nodes in the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// The v1beta2-only fields that are set, as `{"spec": {...}, "status": {...}}` (empty parts
/// left out); `None` when there are none.
fn stash(pool: &v1beta2::NodePool) -> Option<String> {
    let only = |value: Value, shared: &[&str]| -> Map<String, Value> {
        let mut map = match value {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.retain(|k, _| !shared.contains(&k.as_str()));
        map
    };
    let spec = only(
        serde_json::to_value(&pool.spec).unwrap_or_default(),
        &["type", "hostNetwork", "labels", "annotations", "taints"],
    );
    let status = only(
        pool.status
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_default(),
        &["readyNodeNum", "unreadyNodeNum", "nodes"],
    );
    let mut out = Map::new();
    if !spec.is_empty() {
        out.insert("spec".into(), Value::Object(spec));
    }
    if !status.is_empty() {
        out.insert("status".into(), Value::Object(status));
    }
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

/// Converts a v1beta1 NodePool to the storage version v1beta2.
///
/// Fields v1beta1 lacks take their defaults (`interConnectivity: false`, strategy `random`,
/// one leader replica) unless the object carries them in [`V1BETA2_FIELDS_ANNOTATION`].
pub fn to_v1beta2(pool: &NodePool) -> v1beta2::NodePool {
    let mut metadata = pool.metadata.clone();
    let stashed: Option<Value> = metadata
        .annotations
        .as_mut()
        .and_then(|a| a.remove(V1BETA2_FIELDS_ANNOTATION))
        .and_then(|s| serde_json::from_str(&s).ok());
    if metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        metadata.annotations = None;
    }
    let mut spec = v1beta2::NodePoolSpec {
        type_: pool.spec.type_,
        host_network: pool.spec.host_network,
        labels: pool.spec.labels.clone(),
        annotations: pool.spec.annotations.clone(),
        taints: pool.spec.taints.clone(),
        inter_connectivity: Some(false),
        leader_election_strategy: Some(LeaderElectionStrategy::Random),
        leader_replicas: Some(1),
        ..Default::default()
    };
    let mut status = pool.status.as_ref().map(|s| v1beta2::NodePoolStatus {
        ready_node_num: s.ready_node_num,
        unready_node_num: s.unready_node_num,
        nodes: s.nodes.clone(),
        ..Default::default()
    });
    if let Some(stashed) = stashed {
        if let Some(Value::Object(extra)) = stashed.get("spec") {
            let mut merged = match serde_json::to_value(&spec) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            // The stash holds defaults-free v1beta2 fields: drop the defaults filled above so an
            // unset field stays unset.
            for k in [
                "interConnectivity",
                "leaderElectionStrategy",
                "leaderReplicas",
            ] {
                merged.remove(k);
            }
            merged.extend(extra.clone());
            if let Ok(s) = serde_json::from_value(Value::Object(merged)) {
                spec = s;
            }
        }
        if let Some(Value::Object(extra)) = stashed.get("status") {
            let mut merged = match status.as_ref().map(serde_json::to_value) {
                Some(Ok(Value::Object(m))) => m,
                _ => Map::new(),
            };
            merged.extend(extra.clone());
            if let Ok(s) = serde_json::from_value(Value::Object(merged)) {
                status = Some(s);
            }
        }
    }
    v1beta2::NodePool {
        metadata,
        spec,
        status,
    }
}

/// Converts a v1beta2 NodePool to v1beta1, keeping the v1beta2-only fields that are set in
/// [`V1BETA2_FIELDS_ANNOTATION`] so [`to_v1beta2`] restores them.
pub fn from_v1beta2(pool: &v1beta2::NodePool) -> NodePool {
    let mut metadata = pool.metadata.clone();
    if let Some(stashed) = stash(pool) {
        metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(V1BETA2_FIELDS_ANNOTATION.to_owned(), stashed);
    }
    NodePool {
        metadata,
        spec: NodePoolSpec {
            type_: pool.spec.type_,
            host_network: pool.spec.host_network,
            labels: pool.spec.labels.clone(),
            annotations: pool.spec.annotations.clone(),
            taints: pool.spec.taints.clone(),
        },
        status: pool.status.as_ref().map(|s| NodePoolStatus {
            ready_node_num: s.ready_node_num,
            unready_node_num: s.unready_node_num,
            nodes: s.nodes.clone(),
        }),
    }
}

/// Why a NodePool object could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConversionError(pub String);

/// Converts one NodePool object given as JSON (as a conversion webhook receives it) to
/// `desired_api_version` (`apps.openyurt.io/v1beta1` or `/v1beta2`). An object already at the
/// desired version is returned unchanged.
pub fn convert_nodepool(
    object: &Value,
    desired_api_version: &str,
) -> Result<Value, ConversionError> {
    const V1BETA1: &str = "apps.openyurt.io/v1beta1";
    const V1BETA2: &str = "apps.openyurt.io/v1beta2";
    let from = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "NodePool" {
        return Err(ConversionError(format!(
            "cannot convert kind {kind:?}: only NodePool is served by this webhook"
        )));
    }
    for v in [from, desired_api_version] {
        if v != V1BETA1 && v != V1BETA2 {
            return Err(ConversionError(format!(
                "unsupported NodePool apiVersion {v:?} (served: {V1BETA1}, {V1BETA2})"
            )));
        }
    }
    if from == desired_api_version {
        return Ok(object.clone());
    }
    let bad = |e: serde_json::Error| ConversionError(format!("invalid {from} NodePool: {e}"));
    let out = if from == V1BETA1 {
        let pool: NodePool = serde_json::from_value(object.clone()).map_err(bad)?;
        serde_json::to_value(to_v1beta2(&pool))
    } else {
        let pool: v1beta2::NodePool = serde_json::from_value(object.clone()).map_err(bad)?;
        serde_json::to_value(from_v1beta2(&pool))
    };
    out.map_err(|e| ConversionError(format!("cannot encode the converted NodePool: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1(value: Value) -> NodePool {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn up_fills_upstream_defaults() {
        let old = v1(
            json!({"apiVersion": "apps.openyurt.io/v1beta1", "kind": "NodePool",
            "metadata": {"name": "hz", "labels": {"a": "b"}},
            "spec": {"type": "Edge", "hostNetwork": true, "labels": {"x": "y"},
                     "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"readyNodeNum": 2, "unreadyNodeNum": 1, "nodes": ["a", "b", "c"]}}),
        );
        let new = to_v1beta2(&old);
        assert_eq!(new.spec.inter_connectivity, Some(false));
        assert_eq!(
            new.spec.leader_election_strategy,
            Some(LeaderElectionStrategy::Random)
        );
        assert_eq!(new.spec.leader_replicas, Some(1));
        assert_eq!(new.spec.host_network, Some(true));
        assert_eq!(new.spec.taints.len(), 1);
        assert_eq!(new.status.as_ref().unwrap().nodes.len(), 3);
        assert_eq!(new.metadata, old.metadata);
        // And back: exactly the v1beta1 object again, except that the defaults filled in on the
        // way up now travel along (they are v1beta2 state).
        let back = from_v1beta2(&new);
        assert_eq!(back.spec, old.spec);
        assert_eq!(back.status, old.status);
        assert_eq!(to_v1beta2(&back), new);
    }

    #[test]
    fn v1beta2_round_trips_through_v1beta1() {
        let full: v1beta2::NodePool = serde_json::from_value(json!({
            "apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "hz", "annotations": {"keep": "me"}},
            "spec": {"type": "Cloud", "interConnectivity": true, "leaderElectionStrategy": "mark",
                     "leaderNodeLabelSelector": {"role": "leader"}, "enableLeaderElection": true,
                     "leaderReplicas": 3,
                     "poolScopeMetadata": [{"group": "", "version": "v1", "resource": "services"}]},
            "status": {"readyNodeNum": 1, "leaderNum": 1,
                       "leaderEndpoints": [{"nodeName": "a", "address": "10.0.0.1:10269"}]}}))
        .unwrap();
        let down = from_v1beta2(&full);
        assert!(
            down.metadata.annotations.as_ref().unwrap()[V1BETA2_FIELDS_ANNOTATION]
                .contains("leaderNodeLabelSelector")
        );
        assert_eq!(down.spec.type_, Some(NodePoolType::Cloud));
        assert_eq!(to_v1beta2(&down), full);

        // A bare v1beta2 object gains no annotation and comes back with the upstream defaults
        // written out, which mean what the unset fields meant.
        let bare: v1beta2::NodePool =
            serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
                "kind": "NodePool", "metadata": {"name": "p"}, "spec": {}}))
            .unwrap();
        let down = from_v1beta2(&bare);
        assert_eq!(down.metadata.annotations, None);
        let up = to_v1beta2(&down);
        assert_eq!(up.metadata, bare.metadata);
        assert_eq!(up.spec.pool_type(), bare.spec.pool_type());
        assert_eq!(up.spec.leader_replicas(), bare.spec.leader_replicas());
        assert_eq!(
            up.spec.leader_election_strategy(),
            bare.spec.leader_election_strategy()
        );
        assert_eq!(up.spec.inter_connectivity, Some(false));
        assert_eq!(from_v1beta2(&up).spec, down.spec);
    }

    #[test]
    fn json_conversion() {
        let obj = json!({"apiVersion": "apps.openyurt.io/v1beta1", "kind": "NodePool",
            "metadata": {"name": "p", "resourceVersion": "7", "uid": "u-1"}, "spec": {"type": "Edge"}});
        let up = convert_nodepool(&obj, "apps.openyurt.io/v1beta2").unwrap();
        assert_eq!(up["apiVersion"], "apps.openyurt.io/v1beta2");
        assert_eq!(up["metadata"], obj["metadata"]);
        assert_eq!(up["spec"]["leaderReplicas"], 1);
        let down = convert_nodepool(&up, "apps.openyurt.io/v1beta1").unwrap();
        assert_eq!(down["apiVersion"], "apps.openyurt.io/v1beta1");
        assert_eq!(down["spec"], obj["spec"]);
        assert_eq!(
            convert_nodepool(&obj, "apps.openyurt.io/v1beta1").unwrap(),
            obj
        );
        for (o, v, want) in [
            (
                json!({"apiVersion": "v1", "kind": "Pod"}),
                "apps.openyurt.io/v1beta2",
                "kind",
            ),
            (obj.clone(), "apps.openyurt.io/v1alpha1", "unsupported"),
            (
                json!({"apiVersion": "apps.openyurt.io/v1beta1", "kind": "NodePool",
                    "spec": {"type": "Fog"}}),
                "apps.openyurt.io/v1beta2",
                "invalid",
            ),
        ] {
            let err = convert_nodepool(&o, v).unwrap_err();
            assert!(err.0.contains(want), "{err}");
        }
    }
}
