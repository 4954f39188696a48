//! The OpenYurt CRD types: upstream manifests load and write back unchanged, the definitions carry
//! upstream's names, scopes, versions, subresources and printer columns, their schemas are
//! structural and accept every fixture without pruning, and `deploy/crds/` is current.
#![cfg(feature = "crd")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use pretty_assertions::assert_eq;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use yurt_core::crd::{
    EndpointType, ExposeType, Gateway, LeaderElectionStrategy, NodeBucket, NodePool,
    NodePoolCondition, NodePoolSpec, NodePoolType, PatchOperation, UpgradeStrategyType, YurtAppSet,
    YurtStaticSet, crd_file_name, crds, nodepool,
};

// The renderer crdgen writes `deploy/crds/` with; the drift test renders with the same code.
#[path = "../../examples/crdgen.rs"]
#[allow(dead_code)]
mod crdgen;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/manifests")
}

/// A fixture from `tests/it/manifests/`, as JSON.
fn manifest(name: &str) -> Value {
    let path = manifests_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a fixture into `T`, writes it back, and requires the JSON to be unchanged (no field
/// lost, no null or default added).
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let input = manifest(name);
    let typed: T = serde_json::from_value(input.clone())
        .unwrap_or_else(|e| panic!("{name} does not deserialize: {e}"));
    let output = serde_json::to_value(&typed).unwrap();
    assert_eq!(output, input, "{name} changed in a round trip");
    typed
}

#[test]
fn nodepool_full_manifest_round_trips() {
    let pool: NodePool = round_trip("nodepool.yaml");
    assert_eq!(pool.metadata.name.as_deref(), Some("hangzhou"));
    assert!(pool.is_edge());
    assert!(!pool.is_host_network());
    assert!(pool.leader_election_enabled());
    let spec = &pool.spec;
    assert_eq!(
        spec.leader_election_strategy(),
        LeaderElectionStrategy::Mark
    );
    assert_eq!(spec.leader_replicas(), 2);
    assert_eq!(spec.inter_connectivity, Some(true));
    assert_eq!(spec.taints.len(), 2);
    assert_eq!(spec.taints[1].effect, "NoExecute");
    assert_eq!(
        spec.pool_scope_metadata,
        nodepool::default_pool_scope_metadata()
    );
    let status = pool.status.as_ref().unwrap();
    assert_eq!(
        (status.ready_node_num, status.unready_node_num),
        (Some(3), Some(1))
    );
    assert_eq!(status.leader_endpoints[1].address, "192.168.10.13:10261");
    assert_eq!(
        status.conditions[0].type_.as_deref(),
        Some(NodePoolCondition::LEADER_READY)
    );
}

#[test]
fn nodepool_minimal_manifest_and_defaults() {
    let pool: NodePool = round_trip("nodepool-minimal.yaml");
    assert_eq!(pool.spec.type_, Some(NodePoolType::Edge));
    assert!(pool.status.is_none());
    assert_eq!(
        pool.spec.leader_election_strategy(),
        LeaderElectionStrategy::Random
    );
    assert_eq!(pool.spec.leader_replicas(), 1);

    // An unset type counts as Edge, as upstream's defaulting webhook decides.
    let cloud = NodePool::new(
        "cloud",
        NodePoolSpec {
            type_: Some(NodePoolType::Cloud),
            ..Default::default()
        },
    );
    assert!(!cloud.is_edge());
    assert!(NodePool::new("untyped", NodePoolSpec::default()).is_edge());

    // A fresh object serializes without nulls or empty collections.
    assert_eq!(
        serde_json::to_value(NodePool::new("p", NodePoolSpec::default())).unwrap(),
        json!({
            "apiVersion": "apps.openyurt.io/v1beta2",
            "kind": "NodePool",
            "metadata": {"name": "p"},
            "spec": {}
        })
    );
}

#[test]
fn closed_value_sets_use_upstream_strings() {
    let pool = |ty: &str| {
        serde_json::from_value::<NodePool>(json!({
            "apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "p"}, "spec": {"type": ty}
        }))
    };
    assert_eq!(pool("Cloud").unwrap().spec.type_, Some(NodePoolType::Cloud));
    assert!(pool("edge").is_err(), "type is case sensitive, as upstream");
    assert!(pool("Fog").is_err());

    let strings = [
        (json!(NodePoolType::Edge), NodePoolType::Edge.as_str()),
        (json!(NodePoolType::Cloud), NodePoolType::Cloud.as_str()),
        (json!(LeaderElectionStrategy::Random), "random"),
        (json!(LeaderElectionStrategy::Mark), "mark"),
        (json!(PatchOperation::Add), PatchOperation::Add.as_str()),
        (json!(PatchOperation::Remove), "remove"),
        (json!(PatchOperation::Replace), "replace"),
        (
            json!(UpgradeStrategyType::AdvancedRollingUpdate),
            "AdvancedRollingUpdate",
        ),
        (
            json!(UpgradeStrategyType::Ota),
            UpgradeStrategyType::Ota.as_str(),
        ),
        (json!(EndpointType::Proxy), EndpointType::Proxy.as_str()),
        (json!(EndpointType::Tunnel), "tunnel"),
        (json!(ExposeType::Unexposed), ExposeType::Unexposed.as_str()),
        (json!(ExposeType::PublicIp), "PublicIP"),
        (json!(ExposeType::LoadBalancer), "LoadBalancer"),
    ];
    for (value, expected) in strings {
        assert_eq!(value, json!(expected));
    }
}

#[test]
fn nodebucket_manifest_round_trips_without_spec() {
    let bucket: NodeBucket = round_trip("nodebucket.yaml");
    assert_eq!(bucket.spec.num_nodes, 3);
    assert_eq!(
        bucket.node_names().collect::<Vec<_>>(),
        ["edge-hz-01", "edge-hz-02", "edge-hz-03"]
    );
    assert_eq!(
        bucket
            .labels()
            .get("openyurt.io/pool-name")
            .map(String::as_str),
        Some("hangzhou")
    );

    let empty: NodeBucket = round_trip("nodebucket-minimal.yaml");
    assert_eq!(empty.spec.num_nodes, 0);
    assert!(empty.spec.nodes.is_empty());

    // numNodes and nodes are required, as upstream's schema says.
    let missing = json!({
        "apiVersion": "apps.openyurt.io/v1alpha1", "kind": "NodeBucket",
        "metadata": {"name": "b"}, "numNodes": 1
    });
    assert!(serde_json::from_value::<NodeBucket>(missing).is_err());
}

#[test]
fn yurtappset_full_manifest_round_trips() {
    let set: YurtAppSet = round_trip("yurtappset.yaml");
    assert_eq!(set.metadata.namespace.as_deref(), Some("default"));
    let workload = &set.spec.workload;
    let deployment = workload
        .workload_template
        .deployment_template
        .as_ref()
        .unwrap();
    assert_eq!(deployment.spec.replicas, Some(2));
    assert!(workload.workload_template.stateful_set_template.is_none());
    let tweaks = &workload.workload_tweaks;
    assert_eq!(tweaks[0].tweaks.replicas, Some(3));
    assert_eq!(tweaks[0].tweaks.container_images[0].name, "nginx");
    let patches = &tweaks[1].tweaks.patches;
    assert_eq!(patches[0].operation, PatchOperation::Add);
    assert_eq!(patches[0].value, Some(json!(true)));
    assert_eq!(patches[1].value, Some(json!("edge-gateway")));
    assert_eq!(
        patches[2].value,
        Some(json!([{"containerPort": 8080, "protocol": "TCP"}]))
    );
    assert_eq!(patches[3].operation, PatchOperation::Remove);
    assert_eq!(patches[3].value, None);
    assert_eq!(set.spec.revision_history_limit(), 5);
    let status = set.status.as_ref().unwrap();
    assert_eq!(status.current_revision, "nginx-6d9c8f7b54");
    assert_eq!(
        (
            status.ready_workloads,
            status.updated_workloads,
            status.total_workloads
        ),
        (2, Some(3), 3)
    );
}

#[test]
fn yurtappset_minimal_manifest_round_trips() {
    let set: YurtAppSet = round_trip("yurtappset-minimal.yaml");
    let template = &set.spec.workload.workload_template;
    assert!(template.deployment_template.is_none());
    let sts = template.stateful_set_template.as_ref().unwrap();
    assert!(sts.metadata.is_none());
    assert_eq!(sts.spec.service_name.as_deref(), Some("redis"));
    assert_eq!(set.spec.revision_history_limit(), 10);
}

#[test]
fn yurtstaticset_manifests_round_trip() {
    let set: YurtStaticSet = round_trip("yurtstaticset.yaml");
    assert_eq!(set.spec.static_pod_manifest.as_deref(), Some("yurthub"));
    let strategy = set.spec.upgrade_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_, Some(UpgradeStrategyType::Ota));
    assert_eq!(
        strategy.max_unavailable,
        Some(IntOrString::String("20%".into()))
    );
    let pod = set.spec.template.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.containers[0].name, "yurt-hub");
    let status = set.status.as_ref().unwrap();
    assert_eq!(
        (
            status.total_number,
            status.ready_number,
            status.upgraded_number
        ),
        (4, 4, 2)
    );

    let minimal: YurtStaticSet = round_trip("yurtstaticset-minimal.yaml");
    let strategy = minimal.spec.upgrade_strategy.as_ref().unwrap();
    assert_eq!(
        strategy.type_,
        Some(UpgradeStrategyType::AdvancedRollingUpdate)
    );
    assert_eq!(strategy.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(minimal.spec.revision_history_limit(), 10);
}

#[test]
fn gateway_manifests_round_trip_with_upstream_casing() {
    let gw: Gateway = round_trip("gateway.yaml");
    let spec = &gw.spec;
    // Upstream spells the replica count `Replicas`; it must land in the field.
    assert_eq!(spec.proxy_config.as_ref().unwrap().replicas, 2);
    assert_eq!(spec.tunnel_config.as_ref().unwrap().replicas, 1);
    assert_eq!(
        spec.proxy_config
            .as_ref()
            .unwrap()
            .proxy_http_port
            .as_deref(),
        Some("10255,9445")
    );
    assert_eq!(spec.expose_type, Some(ExposeType::PublicIp));
    let tunnel = &spec.endpoints[2];
    assert_eq!(tunnel.type_, EndpointType::Tunnel);
    assert_eq!(
        (tunnel.under_nat, tunnel.public_ip.as_deref()),
        (Some(false), Some("47.96.10.21"))
    );
    assert_eq!(tunnel.nat_type.as_deref(), Some("Symmetric"));
    let status = gw.status.as_ref().unwrap();
    assert_eq!(status.nodes[1].private_ip, "192.168.10.12");
    assert_eq!(status.active_endpoints.len(), 2);

    let minimal: Gateway = round_trip("gateway-minimal.yaml");
    let endpoint = &minimal.spec.endpoints[0];
    assert_eq!(endpoint.under_nat, Some(true));
    assert_eq!(endpoint.port_or_default(), 4500);
    assert!(minimal.spec.proxy_config.is_none());

    // An explicitly empty exposeType is upstream's "not exposed" and survives a round trip.
    let unexposed = json!({
        "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw"}, "spec": {"exposeType": ""}
    });
    let gw: Gateway = serde_json::from_value(unexposed.clone()).unwrap();
    assert_eq!(gw.spec.expose_type, Some(ExposeType::Unexposed));
    assert_eq!(serde_json::to_value(&gw).unwrap(), unexposed);
}

/// What upstream's chart declares for each resource (storage version only).
struct Expected {
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    /// (name, jsonPath, type)
    columns: &'static [(&'static str, &'static str, &'static str)],
}

const CREATED: (&str, &str, &str) = ("AGE", ".metadata.creationTimestamp", "date");

const EXPECTED: [Expected; 5] = [
    Expected {
        kind: "NodePool",
        group: "apps.openyurt.io",
        version: "v1beta2",
        plural: "nodepools",
        namespaced: false,
        short_names: &["np"],
        categories: &["yurt"],
        columns: &[
            ("Type", ".spec.type", "string"),
            ("ReadyNodes", ".status.readyNodeNum", "integer"),
            ("NotReadyNodes", ".status.unreadyNodeNum", "integer"),
            ("LeaderNodes", ".status.leaderNum", "integer"),
            ("LeaderElectionAge", ".status.leaderLastElectedTime", "date"),
            ("Age", ".metadata.creationTimestamp", "date"),
        ],
    },
    Expected {
        kind: "NodeBucket",
        group: "apps.openyurt.io",
        version: "v1alpha1",
        plural: "nodebuckets",
        namespaced: false,
        short_names: &["nb"],
        categories: &["yurt"],
        columns: &[("NUM-NODES", ".numNodes", "integer"), CREATED],
    },
    Expected {
        kind: "YurtAppSet",
        group: "apps.openyurt.io",
        version: "v1beta1",
        plural: "yurtappsets",
        namespaced: true,
        short_names: &["yas"],
        categories: &["yurt"],
        columns: &[
            ("TOTAL", ".status.totalWorkloads", "integer"),
            ("READY", ".status.readyWorkloads", "integer"),
            ("UPDATED", ".status.updatedWorkloads", "integer"),
            CREATED,
        ],
    },
    Expected {
        kind: "YurtStaticSet",
        group: "apps.openyurt.io",
        version: "v1alpha1",
        plural: "yurtstaticsets",
        namespaced: true,
        short_names: &["yss"],
        categories: &[],
        columns: &[
            CREATED,
            ("Total", ".status.totalNumber", "integer"),
            ("Ready", ".status.readyNumber", "integer"),
            ("Upgraded", ".status.upgradedNumber", "integer"),
        ],
    },
    Expected {
        kind: "Gateway",
        group: "raven.openyurt.io",
        version: "v1beta1",
        plural: "gateways",
        namespaced: false,
        short_names: &["gw"],
        categories: &["yurt"],
        columns: &[],
    },
];

#[test]
fn definitions_match_upstream() {
    let all = crds();
    assert_eq!(all.len(), EXPECTED.len());
    for (crd, want) in all.iter().zip(EXPECTED.iter()) {
        let spec = &crd.spec;
        let names = &spec.names;
        assert_eq!(names.kind, want.kind);
        let kind = want.kind;
        assert_eq!(spec.group, want.group, "{kind}");
        assert_eq!(names.plural, want.plural, "{kind}");
        assert_eq!(
            names.singular.as_deref(),
            Some(want.kind.to_lowercase().as_str())
        );
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{}.{}", want.plural, want.group).as_str())
        );
        let scope = if want.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        };
        assert_eq!(spec.scope, scope, "{kind}");
        assert_eq!(
            names.short_names.clone().unwrap_or_default(),
            want.short_names,
            "{kind}"
        );
        assert_eq!(
            names.categories.clone().unwrap_or_default(),
            want.categories,
            "{kind}"
        );
        if kind == "NodePool" {
            // v1beta1 is served too, converted by the yurt-manager webhook.
            let versions: Vec<(&str, bool, bool)> = spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage))
                .collect();
            assert_eq!(
                versions,
                [("v1beta1", true, false), ("v1beta2", true, true)]
            );
            let conversion = spec.conversion.as_ref().expect("NodePool conversion");
            assert_eq!(conversion.strategy, "Webhook");
            let webhook = conversion.webhook.as_ref().unwrap();
            assert_eq!(webhook.conversion_review_versions, ["v1"]);
            let service = webhook
                .client_config
                .as_ref()
                .and_then(|c| c.service.as_ref())
                .unwrap();
            assert_eq!(
                (
                    service.namespace.as_str(),
                    service.name.as_str(),
                    service.path.as_deref()
                ),
                (
                    "kube-system",
                    "yurt-manager-webhook-service",
                    Some("/convert")
                )
            );
        } else {
            assert!(
                spec.conversion.is_none(),
                "{kind}: one version, no conversion"
            );
            assert_eq!(spec.versions.len(), 1, "{kind}: only the storage version");
        }
        let version = spec
            .versions
            .iter()
            .find(|v| v.storage)
            .expect("a storage version");
        assert_eq!(version.name, want.version, "{kind}");
        assert!(version.served && version.storage, "{kind}");
        assert_eq!(version.deprecated, None, "{kind}");
        // Every resource, NodeBucket included, has upstream's (empty) status subresource.
        let subresources = version.subresources.as_ref().expect("subresources");
        assert_eq!(
            subresources.status.as_ref().map(|s| &s.0),
            Some(&json!({})),
            "{kind}"
        );
        assert!(subresources.scale.is_none(), "{kind}");
        let columns: Vec<(&str, &str, &str)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str(), c.type_.as_str()))
            .collect();
        assert_eq!(columns, want.columns, "{kind}");
    }

    // The Rust types agree with their definitions.
    assert_eq!(NodePool::api_version(&()), "apps.openyurt.io/v1beta2");
    assert_eq!(NodeBucket::plural(&()), "nodebuckets");
    assert_eq!(YurtAppSet::api_version(&()), "apps.openyurt.io/v1beta1");
    assert_eq!(YurtStaticSet::kind(&()), "YurtStaticSet");
    assert_eq!(Gateway::group(&()), "raven.openyurt.io");
}

#[test]
fn file_names_follow_upstream_chart() {
    let names: Vec<String> = crds().iter().map(crd_file_name).collect();
    assert_eq!(
        names,
        [
            "apps.openyurt.io_nodepools.yaml",
            "apps.openyurt.io_nodebuckets.yaml",
            "apps.openyurt.io_yurtappsets.yaml",
            "apps.openyurt.io_yurtstaticsets.yaml",
            "raven.openyurt.io_gateways.yaml",
        ]
    );
}

fn root_schema(crd: &CustomResourceDefinition) -> Value {
    let schema = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .expect("a storage version")
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every version has a schema");
    serde_json::to_value(schema).unwrap()
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// Checks the structural-schema rules kube-apiserver enforces: every node has a `type` unless
/// it preserves unknown fields or is int-or-string, no `$ref` or combinators, `properties` and
/// `additionalProperties` never together. Also requires a description on every property, since
/// those descriptions are what `kubectl explain` shows.
fn check_structural(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let typeless_ok = is_true(schema, "x-kubernetes-preserve-unknown-fields")
        || is_true(schema, "x-kubernetes-int-or-string");
    if schema.get("type").is_none() && !typeless_ok {
        errors.push(format!("{path}: no type"));
    }
    for key in ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions"] {
        if schema.get(key).is_some() {
            errors.push(format!("{path}: has {key}"));
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        if schema.get("type") != Some(&json!("object")) {
            errors.push(format!("{path}: properties on a non-object"));
        }
        if schema.get("additionalProperties").is_some() {
            errors.push(format!("{path}: both properties and additionalProperties"));
        }
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            if property
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(format!("{child}: no description"));
            }
            check_structural(property, &child, errors);
        }
    }
    if let Some(items) = schema.get("items") {
        if schema.get("type") != Some(&json!("array")) {
            errors.push(format!("{path}: items on a non-array"));
        }
        check_structural(items, &format!("{path}[]"), errors);
    }
    if let Some(additional) = schema.get("additionalProperties")
        && additional.is_object()
    {
        check_structural(additional, &format!("{path}{{}}"), errors);
    }
}

#[test]
fn schemas_are_structural() {
    for crd in crds() {
        let schema = root_schema(&crd);
        assert_eq!(schema.get("type"), Some(&json!("object")));
        let mut errors = Vec::new();
        check_structural(&schema, &crd.spec.names.kind, &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

/// Walks a manifest alongside its schema as the apiserver's pruning and validation would: every
/// field must be known to the schema (or sit below preserve-unknown-fields), of the declared
/// type and enum, and required fields must be present.
fn check_accepts(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if !is_true(schema, "nullable") {
            errors.push(format!("{path}: null where not nullable"));
        }
        return;
    }
    if is_true(schema, "x-kubernetes-int-or-string") {
        if !(value.is_i64() || value.is_string()) {
            errors.push(format!("{path}: not an int or a string"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in {allowed:?}"));
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("{path}: unexpected schema type {other}"),
    };
    if !type_ok {
        errors.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if is_true(schema, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if let Some(object) = value.as_object() {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{path}: missing required {required}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, child) in object {
            let child_path = format!("{path}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => check_accepts(child, sub, &child_path, errors),
                (None, Some(sub)) if sub.is_object() => {
                    check_accepts(child, sub, &child_path, errors)
                }
                _ => errors.push(format!(
                    "{child_path}: unknown to the schema (would be pruned)"
                )),
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_accepts(item, schema, &format!("{path}[{i}]"), errors);
        }
    }
}

#[test]
fn schemas_accept_every_fixture() {
    let definitions = crds();
    let mut checked = 0;
    for entry in std::fs::read_dir(manifests_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut value = manifest(&name);
        let kind = value["kind"].as_str().unwrap().to_owned();
        let crd = definitions
            .iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("{name}: no definition for {kind}"));
        assert_eq!(
            value["apiVersion"],
            json!(format!(
                "{}/{}",
                crd.spec.group,
                crd.spec.versions.iter().find(|v| v.storage).unwrap().name
            )),
            "{name}"
        );
        // The apiserver validates apiVersion, kind and metadata itself.
        let object = value.as_object_mut().unwrap();
        for key in ["apiVersion", "kind", "metadata"] {
            object.remove(key);
        }
        let mut errors = Vec::new();
        check_accepts(&value, &root_schema(crd), &name, &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
        checked += 1;
    }
    assert_eq!(checked, 10, "two fixtures per kind");
}

#[test]
fn deploy_crds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let regenerate = crdgen::REGENERATE;
    let mut expected = BTreeSet::new();
    for crd in crds() {
        let name = crd_file_name(&crd);
        let rendered = crdgen::render_crd_yaml(&crd);
        // The rendering is a faithful YAML form of the definition.
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&rendered).unwrap();
        assert_eq!(parsed, crd, "{name}: rendered YAML does not parse back");
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
            panic!("deploy/crds/{name}: {e}; run `{regenerate}` from the workspace root")
        });
        assert_eq!(
            on_disk, rendered,
            "deploy/crds/{name} is stale; run `{regenerate}` from the workspace root"
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    assert_eq!(
        present, expected,
        "deploy/crds/ holds files no CRD type generates; remove them and run `{regenerate}`"
    );
}
