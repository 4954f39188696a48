//! The OpenYurt custom resources, with upstream's group/version, field names and JSON casing, so
//! existing OpenYurt manifests and stored objects load unchanged.
//!
//! | kind | apiVersion | scope | short name |
//! | --- | --- | --- | --- |
//! | [`NodePool`] | `apps.openyurt.io/v1beta2` | Cluster | `np` |
//! | [`NodeBucket`] | `apps.openyurt.io/v1alpha1` | Cluster | `nb` |
//! | [`YurtAppSet`] | `apps.openyurt.io/v1beta1` | Namespaced | `yas` |
//! | [`YurtStaticSet`] | `apps.openyurt.io/v1alpha1` | Namespaced | `yss` |
//! | [`Gateway`] | `raven.openyurt.io/v1beta1` | Cluster | `gw` |
//!
//! Only upstream's storage version of each resource is modelled; [`crds()`] returns one
//! `CustomResourceDefinition` per kind with that single version. `deploy/crds/` holds the same
//! definitions as YAML (regenerate with `cargo run -p yurt-core --example crdgen`; a test fails
//! when they drift).
//!
//! Optional fields are `Option`s (or empty-by-default collections) that are skipped when unset,
//! so reading and writing back an object adds nothing to it.
//!
//! ```
//! use yurt_core::crd::{NodePool, NodePoolType};
//!
//! let pool: NodePool = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "apps.openyurt.io/v1beta2",
//!     "kind": "NodePool",
//!     "metadata": {"name": "hangzhou"},
//!     "spec": {"type": "Edge", "hostNetwork": true}
//! }))
//! .unwrap();
//! assert!(pool.is_edge() && pool.is_host_network());
//! assert_eq!(pool.spec.type_, Some(NodePoolType::Edge));
//! ```

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresourceStatus, CustomResourceSubresources,
};
use kube::CustomResourceExt;

pub mod gateway;
pub mod nodebucket;
pub mod nodepool;
pub mod yurtappset;
pub mod yurtstaticset;

pub use gateway::{
    Endpoint, EndpointType, ExposeType, Gateway, GatewaySpec, GatewayStatus, NodeInfo,
    ProxyConfiguration, TunnelConfiguration,
};
pub use nodebucket::{BucketNode, NodeBucket, NodeBucketFields};
pub use nodepool::{
    GroupVersionResource, Leader, LeaderElectionStrategy, NodePool, NodePoolCondition,
    NodePoolSpec, NodePoolStatus, NodePoolType,
};
pub use yurtappset::{
    ContainerImage, DeploymentTemplateSpec, Patch, PatchOperation, StatefulSetTemplateSpec, Tweaks,
    Workload, WorkloadTemplate, WorkloadTweak, YurtAppSet, YurtAppSetCondition, YurtAppSetSpec,
    YurtAppSetStatus,
};
pub use yurtstaticset::{
    UpgradeStrategy, UpgradeStrategyType, YurtStaticSet, YurtStaticSetSpec, YurtStaticSetStatus,
};

/// Every OpenYurt CustomResourceDefinition this crate models, in a stable order (NodePool,
/// NodeBucket, YurtAppSet, YurtStaticSet, Gateway). Install these before running controllers or
/// hubs that read the resources.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        NodePool::crd(),
        node_bucket_crd(),
        YurtAppSet::crd(),
        YurtStaticSet::crd(),
        Gateway::crd(),
    ]
}

/// NodeBucket's definition. Upstream declares a status subresource on NodeBucket even though
/// the object has no `status`; kube-derive only emits one alongside a status type, so it is
/// added here to keep the definition identical in behaviour.
fn node_bucket_crd() -> CustomResourceDefinition {
    let mut crd = NodeBucket::crd();
    for version in &mut crd.spec.versions {
        version.subresources = Some(CustomResourceSubresources {
            scale: None,
            status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
        });
    }
    crd
}

/// The file name a definition is written to under `deploy/crds/`: `<group>_<plural>.yaml`, as
/// in upstream's chart (for example `apps.openyurt.io_nodepools.yaml`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Schema for a field stored as free-form JSON object: the apiserver keeps whatever it holds
/// (upstream marks these fields schemaless to keep the definition small).
fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Drops an enum's own description from its schema, so that an optional field of that type
/// keeps the field's description (kube's `Option<enum>` rewrite would otherwise replace it).
fn drop_description(schema: &mut schemars::Schema) {
    schema.remove("description");
}
