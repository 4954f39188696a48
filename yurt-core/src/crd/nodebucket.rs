//! NodeBucket (`apps.openyurt.io/v1alpha1`, cluster-scoped): one slice of a NodePool's member
//! list, so that a very large pool's membership can be watched without one huge object. Buckets
//! are labelled with their pool's name (`openyurt.io/pool-name`).
//!
//! Upstream's NodeBucket has no `spec` or `status`: `numNodes` and `nodes` sit at the top level
//! of the object. It is derived with kube's `no_spec`, so on the Rust side those fields live in
//! [`NodeBucket::spec`] (a [`NodeBucketFields`]) while the wire format stays flat.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The top-level fields of a NodeBucket (flattened into the object; there is no `spec` key).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.openyurt.io",
    version = "v1alpha1",
    kind = "NodeBucket",
    plural = "nodebuckets",
    shortname = "nb",
    category = "yurt",
    no_spec,
    derive = "PartialEq",
    derive = "Default",
    doc = "A NodeBucket holds one slice of a NodePool's member nodes; the buckets of a pool carry the label openyurt.io/pool-name.",
    printcolumn(
        name = "NUM-NODES",
        type_ = "integer",
        json_path = ".numNodes",
        description = "Number of nodes in the bucket"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the bucket was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeBucketFields {
    /// Number of nodes in this bucket.
    pub num_nodes: i32,
    /// The nodes in this bucket.
    pub nodes: Vec<BucketNode>,
}

/// A node listed in a NodeBucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BucketNode {
    /// Name of the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl NodeBucket {
    /// Names of the nodes in this bucket (entries without a name are skipped).
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.spec.nodes.iter().filter_map(|n| n.name.as_deref())
    }
}
