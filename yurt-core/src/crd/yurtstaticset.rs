//! YurtStaticSet (`apps.openyurt.io/v1alpha1`, namespaced): manages a static pod (a manifest in
//! the kubelet's static pod directory, such as yurt-hub's) on many nodes, and upgrades it either
//! rolling or on demand from the node (OTA).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::preserve_unknown_object;

/// Desired state of a YurtStaticSet.
// kube's `printcolumn(...)` entries repeat keys such as `type_ = "integer"`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.openyurt.io",
    version = "v1alpha1",
    kind = "YurtStaticSet",
    plural = "yurtstaticsets",
    namespaced,
    shortname = "yss",
    status = "YurtStaticSetStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A YurtStaticSet manages one static pod on many nodes and upgrades it, rolling or over the air (OTA).",
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the YurtStaticSet was created"
    ),
    printcolumn(
        name = "Total",
        type_ = "integer",
        json_path = ".status.totalNumber",
        description = "Number of nodes running the static pod"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyNumber",
        description = "Number of ready static pods"
    ),
    printcolumn(
        name = "Upgraded",
        type_ = "integer",
        json_path = ".status.upgradedNumber",
        description = "Number of static pods at the current template"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct YurtStaticSetSpec {
    /// File name of the static pod manifest without the `.yaml` suffix (the kubelet reads
    /// `<staticPodManifest>.yaml` from its manifest directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_pod_manifest: Option<String>,

    /// How existing static pods are replaced when the template changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<UpgradeStrategy>,

    /// Number of old revisions kept for rollback. Defaults to 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,

    /// The static pod to run (a pod template, stored without schema validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<PodTemplateSpec>,
}

impl YurtStaticSetSpec {
    /// `revisionHistoryLimit`, or its default of 10 when unset.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit.unwrap_or(10)
    }
}

/// How static pods are upgraded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// `AdvancedRollingUpdate` (the controller replaces pods, at most `maxUnavailable` at a
    /// time) or `OTA` (each node's user triggers its own upgrade).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<UpgradeStrategyType>,

    /// With `AdvancedRollingUpdate`: how many nodes (a number or a percentage such as `10%`) may
    /// have their static pod unavailable during the upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// The kinds of static pod upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = super::drop_description)]
pub enum UpgradeStrategyType {
    /// The controller upgrades the nodes itself, at most `maxUnavailable` at a time.
    AdvancedRollingUpdate,
    /// Over the air: the new version is staged, and each node is upgraded when asked to through
    /// YurtHub's OTA API.
    #[serde(rename = "OTA")]
    Ota,
}

impl UpgradeStrategyType {
    /// The value as written in the API (`AdvancedRollingUpdate` or `OTA`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeStrategyType::AdvancedRollingUpdate => "AdvancedRollingUpdate",
            UpgradeStrategyType::Ota => "OTA",
        }
    }
}

/// Observed state of a YurtStaticSet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct YurtStaticSetStatus {
    /// Number of nodes running the static pod.
    pub total_number: i32,
    /// Number of ready static pods.
    pub ready_number: i32,
    /// Number of nodes running the static pod made from the current template.
    pub upgraded_number: i32,
    /// The most recent `metadata.generation` the controller has acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
