//! YurtAppSet (`apps.openyurt.io/v1beta1`, namespaced): one Deployment or StatefulSet template
//! stamped out once per selected NodePool, with per-pool tweaks (replicas, images, JSON patches).

use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::preserve_unknown_object;

/// Desired state of a YurtAppSet.
// kube's `printcolumn(...)` entries repeat keys such as `type_ = "integer"`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.openyurt.io",
    version = "v1beta1",
    kind = "YurtAppSet",
    plural = "yurtappsets",
    namespaced,
    shortname = "yas",
    category = "yurt",
    status = "YurtAppSetStatus",
    derive = "PartialEq",
    doc = "A YurtAppSet deploys one workload (a Deployment or a StatefulSet) into each selected NodePool, from one template plus per-pool tweaks.",
    printcolumn(
        name = "TOTAL",
        type_ = "integer",
        json_path = ".status.totalWorkloads",
        description = "Number of workloads"
    ),
    printcolumn(
        name = "READY",
        type_ = "integer",
        json_path = ".status.readyWorkloads",
        description = "Number of ready workloads"
    ),
    printcolumn(
        name = "UPDATED",
        type_ = "integer",
        json_path = ".status.updatedWorkloads",
        description = "Number of workloads at the current revision"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the YurtAppSet was created"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct YurtAppSetSpec {
    /// The workload to deploy into each selected pool.
    pub workload: Workload,

    /// Selects the NodePools (by their labels) that get a workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodepool_selector: Option<LabelSelector>,

    /// Names of NodePools that get a workload, in addition to those `nodepoolSelector` selects.
    /// Kept for compatibility with v1alpha1; prefer `nodepoolSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,

    /// Number of old revisions kept for rollback. Defaults to 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
}

impl YurtAppSetSpec {
    /// `revisionHistoryLimit`, or its default of 10 when unset.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit.unwrap_or(10)
    }
}

/// The workload deployed into each pool and how it differs per pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// The template every pool's workload is made from.
    pub workload_template: WorkloadTemplate,

    /// Adjustments applied to the workloads of particular pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_tweaks: Vec<WorkloadTweak>,
}

/// The template of a pool's workload: set exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTemplate {
    /// Deploy a StatefulSet per pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stateful_set_template: Option<StatefulSetTemplateSpec>,

    /// Deploy a Deployment per pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_template: Option<DeploymentTemplateSpec>,
}

/// Metadata and spec of the StatefulSet created in each pool. Both are stored without schema
/// validation; the apiserver checks them when the StatefulSet is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatefulSetTemplateSpec {
    /// Labels and annotations of the StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<ObjectMeta>,

    /// The StatefulSet's spec (`apps/v1`).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: StatefulSetSpec,
}

/// Metadata and spec of the Deployment created in each pool. Both are stored without schema
/// validation; the apiserver checks them when the Deployment is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentTemplateSpec {
    /// Labels and annotations of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<ObjectMeta>,

    /// The Deployment's spec (`apps/v1`).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: DeploymentSpec,
}

/// Adjustments to the workloads of the pools it selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTweak {
    /// Selects the NodePools (by their labels) whose workloads are adjusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodepool_selector: Option<LabelSelector>,

    /// Names of NodePools whose workloads are adjusted; prefer `nodepoolSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,

    /// The adjustments.
    pub tweaks: Tweaks,
}

/// Adjustments applied to a pool's workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tweaks {
    /// Replica count of the workload in these pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Container images to use instead of the template's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_images: Vec<ContainerImage>,

    /// JSON patch operations (add, remove, replace) applied to the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
}

/// Replaces the image of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// Name of the container whose image is replaced.
    pub name: String,
    /// The image to use instead.
    pub target_image: String,
}

/// One JSON patch (RFC 6902) operation on the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Patch {
    /// JSON pointer to the field to change, such as `/spec/template/spec/hostNetwork`.
    pub path: String,

    /// What to do at `path`.
    pub operation: PatchOperation,

    /// The value to add or to replace with (any JSON); unused by `remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_any")]
    pub value: Option<serde_json::Value>,
}

/// A JSON patch operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::drop_description)]
pub enum PatchOperation {
    /// Add `value` at `path`.
    Add,
    /// Remove the field at `path`.
    Remove,
    /// Replace the field at `path` with `value`.
    Replace,
}

impl PatchOperation {
    /// The value as written in the API (`add`, `remove` or `replace`).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOperation::Add => "add",
            PatchOperation::Remove => "remove",
            PatchOperation::Replace => "replace",
        }
    }
}

/// Schema for a field holding any JSON value (object, array, string, number or bool).
fn preserve_unknown_any(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Observed state of a YurtAppSet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct YurtAppSetStatus {
    /// The most recent `metadata.generation` the controller has acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Hash collisions met when naming the newest ControllerRevision; used to make the next
    /// name unique.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,

    /// Name of the current revision (a ControllerRevision).
    pub current_revision: String,

    /// Latest observations of the YurtAppSet's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<YurtAppSetCondition>,

    /// Number of ready workloads.
    pub ready_workloads: i32,

    /// Number of workloads at the current revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_workloads: Option<i32>,

    /// Number of workloads.
    pub total_workloads: i32,
}

/// One observation of a YurtAppSet's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct YurtAppSetCondition {
    /// Condition type: `AppDispatched`, `AppDeleted`, `AppUpdated`, `AppReady` or `PoolFound`.
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

impl YurtAppSetCondition {
    /// Every expected workload was created.
    pub const APP_DISPATCHED: &'static str = "AppDispatched";
    /// Every workload no longer wanted was deleted.
    pub const APP_DELETED: &'static str = "AppDeleted";
    /// Every expected workload was updated to the current revision.
    pub const APP_UPDATED: &'static str = "AppUpdated";
    /// Every workload is ready.
    pub const APP_READY: &'static str = "AppReady";
    /// The selected NodePools exist (false when no pool matches `nodepoolSelector` or `pools`).
    pub const POOL_FOUND: &'static str = "PoolFound";
}
