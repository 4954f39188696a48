//! The OpenYurt custom resources, with upstream's group/version, field names and JSON casing, so
//! existing OpenYurt manifests and stored objects load unchanged.
//!
//! | kind | apiVersion | scope | short name |
//! | --- | --- | --- | --- |
//! | [`NodePool`] | `apps.openyurt.io/v1beta2` (also served as `v1beta1`) | Cluster | `np` |
//! | [`NodeBucket`] | `apps.openyurt.io/v1alpha1` | Cluster | `nb` |
//! | [`YurtAppSet`] | `apps.openyurt.io/v1beta1` | Namespaced | `yas` |
//! | [`YurtStaticSet`] | `apps.openyurt.io/v1alpha1` | Namespaced | `yss` |
//! | [`Gateway`] | `raven.openyurt.io/v1beta1` | Cluster | `gw` |
//!
//! Upstream's storage version of each resource is modelled; NodePool is also served as
//! `v1beta1` ([`nodepool_v1beta1`], with the conversion functions), so its definition lists both
//! versions and names the yurt-manager conversion webhook (Service
//! `kube-system/yurt-manager-webhook-service`, path `/convert`; the manager fills in the
//! `caBundle`). [`crds()`] returns one `CustomResourceDefinition` per kind. `deploy/crds/` holds the same
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
    CustomResourceConversion, CustomResourceDefinition, CustomResourceSubresourceStatus,
    CustomResourceSubresources, ServiceReference, WebhookClientConfig, WebhookConversion,
};
use kube::CustomResourceExt;

pub mod gateway;
pub mod nodebucket;
pub mod nodepool;
pub mod nodepool_v1beta1;
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
        node_pool_crd(),
        node_bucket_crd(),
        YurtAppSet::crd(),
        YurtStaticSet::crd(),
        Gateway::crd(),
    ]
}

/// Namespace of the yurt-manager webhook Service the conversion stanza names.
pub const WEBHOOK_SERVICE_NAMESPACE: &str = "kube-system";
/// Name of the yurt-manager webhook Service (upstream's `yurt-manager-webhook-service`).
pub const WEBHOOK_SERVICE_NAME: &str = "yurt-manager-webhook-service";
/// Path of the conversion webhook on the yurt-manager webhook server.
pub const CONVERSION_PATH: &str = "/convert";

/// NodePool's definition: v1beta1 (served) and v1beta2 (served, storage), converted by the
/// yurt-manager webhook.
fn node_pool_crd() -> CustomResourceDefinition {
    let mut crd = kube::core::crd::merge_crds(
        vec![nodepool_v1beta1::NodePool::crd(), NodePool::crd()],
        "v1beta2",
    )
    .expect("the two NodePool versions share group, kind, names and scope");
    // Oldest first, as upstream's chart lists them.
    crd.spec.versions.sort_by(|a, b| a.name.cmp(&b.name));
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            conversion_review_versions: vec!["v1".into()],
            client_config: Some(WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: WEBHOOK_SERVICE_NAMESPACE.into(),
                    name: WEBHOOK_SERVICE_NAME.into(),
                    path: Some(CONVERSION_PATH.into()),
                    port: Some(443),
                }),
                ..Default::default()
            }),
        }),
    });
    crd
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
