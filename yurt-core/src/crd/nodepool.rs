//! NodePool (`apps.openyurt.io/v1beta2`, cluster-scoped): a group of nodes that share a network
//! domain and are managed as one unit (labels, annotations and taints pushed to every member,
//! pool-level traffic reuse through elected leader hubs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a NodePool.
// kube's `printcolumn(...)` entries repeat keys such as `type_ = "integer"`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.openyurt.io",
    version = "v1beta2",
    kind = "NodePool",
    plural = "nodepools",
    shortname = "np",
    category = "yurt",
    status = "NodePoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A NodePool groups nodes that share a network domain (typically one edge site) so they can be managed, and can reuse list/watch traffic, as one unit.",
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
        name = "LeaderNodes",
        type_ = "integer",
        json_path = ".status.leaderNum",
        description = "Number of elected leader hubs in the pool"
    ),
    printcolumn(
        name = "LeaderElectionAge",
        type_ = "date",
        json_path = ".status.leaderLastElectedTime",
        description = "When the leader hubs were last elected"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Whether the pool runs at the edge (`Edge`) or in the cloud (`Cloud`). Unset is treated as
    /// `Edge`, which is what the admission webhook fills in.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<NodePoolType>,

    /// The pool's nodes use host networking only: no CNI plugin (such as flannel) is installed on
    /// them, so every pod shares the host's network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,

    /// Labels set on every node of the pool. Existing node labels with the same keys are
    /// overwritten.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations set on every node of the pool. Existing node annotations with the same keys
    /// are overwritten.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Taints set on every node of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,

    /// All nodes of the pool can reach each other over layer 2 or layer 3. Only then can the
    /// pool's list/watch traffic be shared through leader hubs; otherwise reuse stays per node.
    /// Cannot be changed after creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_connectivity: Option<bool>,

    /// How leader hubs are chosen: `random` picks among ready nodes, `mark` picks among ready
    /// nodes matching `leaderNodeLabelSelector`. Unset means `random`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_election_strategy: Option<LeaderElectionStrategy>,

    /// With the `mark` strategy, leader hubs are elected only among nodes carrying all of these
    /// labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leader_node_label_selector: BTreeMap<String, String>,

    /// Elect leader hubs for the pool (using `leaderElectionStrategy` and `leaderReplicas`).
    /// Defaults to false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_leader_election: Option<bool>,

    /// Resources shared across the pool: each node (or the leaders, when leader election is
    /// enabled) lists and watches them once for the whole pool. Defaults to `v1 services` and
    /// `discovery.k8s.io/v1 endpointslices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_scope_metadata: Vec<GroupVersionResource>,

    /// Number of leader hubs to elect in the pool. Defaults to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_replicas: Option<i32>,
}

/// Where the nodes of a pool run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = super::drop_description)]
pub enum NodePoolType {
    /// Nodes at the edge, possibly cut off from the cloud for long periods.
    Edge,
    /// Nodes in the cloud, next to the control plane.
    Cloud,
}

impl NodePoolType {
    /// The value as written in the API (`Edge` or `Cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodePoolType::Edge => "Edge",
            NodePoolType::Cloud => "Cloud",
        }
    }
}

/// How the leader hubs of a pool are elected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::drop_description)]
pub enum LeaderElectionStrategy {
    /// Any ready node may be elected.
    #[default]
    Random,
    /// Only ready nodes matching `leaderNodeLabelSelector` may be elected.
    Mark,
}

impl LeaderElectionStrategy {
    /// The value as written in the API (`random` or `mark`).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderElectionStrategy::Random => "random",
            LeaderElectionStrategy::Mark => "mark",
        }
    }
}

/// A resource identified by API group, version and plural resource name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct GroupVersionResource {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Plural resource name, such as `services`.
    pub resource: String,
}

impl GroupVersionResource {
    /// Builds a group/version/resource triple.
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// The pool-scoped resources every pool shares (`v1 services` and
/// `discovery.k8s.io/v1 endpointslices`); the defaulting webhook adds any that are missing from
/// `spec.poolScopeMetadata`.
pub fn default_pool_scope_metadata() -> Vec<GroupVersionResource> {
    vec![
        GroupVersionResource::new("", "v1", "services"),
        GroupVersionResource::new("discovery.k8s.io", "v1", "endpointslices"),
    ]
}

/// Observed state of a NodePool.
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

    /// The elected leader hubs and the addresses they serve on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leader_endpoints: Vec<Leader>,

    /// Number of elected leader hubs in the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_num: Option<i32>,

    /// When the leader hubs were last elected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_last_elected_time: Option<Time>,

    /// Latest observations of the pool's state, such as whether leaders are ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodePoolCondition>,
}

/// An elected leader hub of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leader {
    /// Name of the node running the leader hub.
    pub node_name: String,
    /// Address (`host:port`) where the leader hub serves the pool.
    pub address: String,
}

/// One observation of a NodePool's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolCondition {
    /// Condition type, such as `LeaderReady`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `True`, `False` or `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the condition last changed status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason for the last transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details about the last transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl NodePoolCondition {
    /// Condition type saying whether the pool's leader hubs are elected and ready.
    pub const LEADER_READY: &'static str = "LeaderReady";
}

impl NodePoolSpec {
    /// The pool type, `Edge` when unset (the admission webhook's default).
    pub fn pool_type(&self) -> NodePoolType {
        self.type_.unwrap_or(NodePoolType::Edge)
    }

    /// The leader election strategy, `random` when unset.
    pub fn leader_election_strategy(&self) -> LeaderElectionStrategy {
        self.leader_election_strategy.unwrap_or_default()
    }

    /// The number of leaders to elect: `leaderReplicas`, or 1 when unset or not positive.
    pub fn leader_replicas(&self) -> i32 {
        match self.leader_replicas {
            Some(n) if n > 0 => n,
            _ => 1,
        }
    }
}

impl NodePool {
    /// Whether this is an edge pool (an unset type counts as `Edge`).
    pub fn is_edge(&self) -> bool {
        self.spec.pool_type() == NodePoolType::Edge
    }

    /// Whether the pool's nodes use host networking only.
    pub fn is_host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }

    /// Whether leader hubs are elected for this pool.
    pub fn leader_election_enabled(&self) -> bool {
        self.spec.enable_leader_election.unwrap_or(false)
    }
}
