//! OpenAPI documents for the resources the server serves: `/openapi/v3` (the root listing one
//! document per group-version), `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`,
//! and `/openapi/v2` (JSON).
//!
//! kubectl needs them for its default behaviour: `kubectl apply`/`create -f` ask the v3
//! document of the object's group-version whether its PATCH operation takes the
//! `fieldValidation` query parameter (then validation is left to the server; without OpenAPI,
//! kubectl fails with "failed to download openapi"), and `kubectl explain` renders the kind's
//! schema from the same document, found by its `x-kubernetes-group-version-kind` extension.
//!
//! Schemas of built-in kinds come from k8s-openapi's `schemars` implementations (the upstream
//! definitions, named as upstream names them: `io.k8s.api.core.v1.Pod`), custom resources use
//! their CRD's `openAPIV3Schema`, and a served kind k8s-openapi lacks gets an open object
//! schema. Documents are generated on first request and cached by a fingerprint of the
//! group-version's definitions, so creating a CRD yields a new document (and a new `hash` in
//! the root, as clients expect).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use http::StatusCode;
use k8s_openapi::Resource;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::registry::{ResourceDef, Special};
use crate::server::Shared;

/// A built-in kind with a schema in k8s-openapi.
struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

macro_rules! builtins {
    ($($t:ty),* $(,)?) => {
        &[$(Builtin {
            group: <$t as Resource>::GROUP,
            version: <$t as Resource>::VERSION,
            kind: <$t as Resource>::KIND,
            schema: schema_of::<$t>,
        }),*]
    };
}

/// Every top-level kind k8s-openapi defines in all the Kubernetes versions it supports.
static BUILTINS: &[Builtin] = builtins![
    k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    k8s_openapi::api::apiserverinternal::v1alpha1::StorageVersion,
    k8s_openapi::api::apps::v1::ControllerRevision,
    k8s_openapi::api::apps::v1::DaemonSet,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::apps::v1::ReplicaSet,
    k8s_openapi::api::apps::v1::StatefulSet,
    k8s_openapi::api::authentication::v1::SelfSubjectReview,
    k8s_openapi::api::authentication::v1::TokenReview,
    k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
    k8s_openapi::api::authorization::v1::SubjectAccessReview,
    k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
    k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
    k8s_openapi::api::batch::v1::CronJob,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle,
    k8s_openapi::api::coordination::v1::Lease,
    k8s_openapi::api::coordination::v1alpha2::LeaseCandidate,
    k8s_openapi::api::coordination::v1beta1::LeaseCandidate,
    k8s_openapi::api::core::v1::Binding,
    k8s_openapi::api::core::v1::ComponentStatus,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Endpoints,
    k8s_openapi::api::core::v1::Event,
    k8s_openapi::api::core::v1::LimitRange,
    k8s_openapi::api::core::v1::Namespace,
    k8s_openapi::api::core::v1::Node,
    k8s_openapi::api::core::v1::PersistentVolume,
    k8s_openapi::api::core::v1::PersistentVolumeClaim,
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::core::v1::PodTemplate,
    k8s_openapi::api::core::v1::ReplicationController,
    k8s_openapi::api::core::v1::ResourceQuota,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ServiceAccount,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    k8s_openapi::api::events::v1::Event,
    k8s_openapi::api::flowcontrol::v1::FlowSchema,
    k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
    k8s_openapi::api::networking::v1::IPAddress,
    k8s_openapi::api::networking::v1::Ingress,
    k8s_openapi::api::networking::v1::IngressClass,
    k8s_openapi::api::networking::v1::NetworkPolicy,
    k8s_openapi::api::networking::v1::ServiceCIDR,
    k8s_openapi::api::node::v1::RuntimeClass,
    k8s_openapi::api::policy::v1::PodDisruptionBudget,
    k8s_openapi::api::rbac::v1::ClusterRole,
    k8s_openapi::api::rbac::v1::ClusterRoleBinding,
    k8s_openapi::api::rbac::v1::Role,
    k8s_openapi::api::rbac::v1::RoleBinding,
    k8s_openapi::api::resource::v1alpha3::DeviceTaintRule,
    k8s_openapi::api::resource::v1beta1::DeviceClass,
    k8s_openapi::api::resource::v1beta1::ResourceClaim,
    k8s_openapi::api::resource::v1beta1::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta1::ResourceSlice,
    k8s_openapi::api::resource::v1beta2::DeviceClass,
    k8s_openapi::api::resource::v1beta2::ResourceClaim,
    k8s_openapi::api::resource::v1beta2::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta2::ResourceSlice,
    k8s_openapi::api::scheduling::v1::PriorityClass,
    k8s_openapi::api::storage::v1::CSIDriver,
    k8s_openapi::api::storage::v1::CSINode,
    k8s_openapi::api::storage::v1::CSIStorageCapacity,
    k8s_openapi::api::storage::v1::StorageClass,
    k8s_openapi::api::storage::v1::VolumeAttachment,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::APIVersions,
    k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
];

/// Generated documents by fingerprint (see [`fingerprint`]); shared by every server in the
/// process, as a document depends only on the definitions it describes.
static CACHE: LazyLock<Mutex<HashMap<u64, Bytes>>> = LazyLock::new(Mutex::default);

/// Answers `GET /openapi/v2`, `/openapi/v3` and `/openapi/v3/<api|apis/...>`; `None` for any
/// other path.
pub(crate) fn serve(shared: &Shared, path: &str) -> Option<http::Response<Body>> {
    if path == "/openapi/v2" {
        let defs: Vec<Arc<ResourceDef>> = shared.registry().all().cloned().collect();
        let version = crate::server::version_doc(shared)["gitVersion"]
            .as_str()
            .unwrap_or("v1.36.0")
            .to_owned();
        let mut h = DefaultHasher::new();
        (fingerprint(&defs), "v2", &version).hash(&mut h);
        let key = h.finish();
        let doc = cached(key, || v2_document(&defs, &version));
        return Some(body::json(StatusCode::OK, doc));
    }
    let rest = path.strip_prefix("/openapi/v3")?;
    if rest.is_empty() {
        return Some(body::json_value(StatusCode::OK, &v3_root(shared)));
    }
    let gv = rest.strip_prefix('/')?;
    let (group, version) = match gv.strip_prefix("api/") {
        Some(v) => ("", v),
        None => gv.strip_prefix("apis/")?.split_once('/')?,
    };
    let defs = shared.registry().in_group_version(group, version);
    if defs.is_empty() || version.contains('/') {
        return Some(body::status(&yurt_core::Status::path_not_found()));
    }
    let doc = cached(fingerprint(&defs), || v3_document(&defs));
    Some(body::json(StatusCode::OK, doc))
}

fn cached(key: u64, make: impl FnOnce() -> Value) -> Bytes {
    if let Some(doc) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return doc.clone();
    }
    let doc = Bytes::from(serde_json::to_vec(&make()).unwrap_or_default());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    // Registries change rarely (CRDs); keep the cache from growing without bound regardless.
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, doc.clone());
    doc
}

/// A hash of everything a document says about `defs`.
fn fingerprint(defs: &[Arc<ResourceDef>]) -> u64 {
    let mut h = DefaultHasher::new();
    let mut keys: Vec<String> = defs
        .iter()
        .map(|d| {
            format!(
                "{}/{}/{}/{}/{}/{:?}/{}",
                d.group,
                d.version,
                d.plural,
                d.kind,
                d.namespaced,
                d.verbs,
                d.behaviour
                    .schema
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default()
            )
        })
        .collect();
    keys.sort();
    keys.hash(&mut h);
    h.finish()
}

/// `/openapi/v3`: one entry per served group-version, with a `hash` that changes with it.
fn v3_root(shared: &Shared) -> Value {
    let registry = shared.registry();
    let mut by_gv: HashMap<(String, String), Vec<Arc<ResourceDef>>> = HashMap::new();
    for d in registry.all() {
        by_gv
            .entry((d.group.clone(), d.version.clone()))
            .or_default()
            .push(d.clone());
    }
    let mut paths = Map::new();
    for ((group, version), defs) in by_gv {
        let key = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        let url = format!("/openapi/v3/{key}?hash={:016X}", fingerprint(&defs));
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({ "paths": paths })
}

/// The component name and schema of a kind k8s-openapi does not know (custom resources).
fn custom_schema(generator: &mut SchemaGenerator, def: &ResourceDef) -> (String, Value) {
    let reversed: Vec<&str> = def.group.split('.').rev().collect();
    let name = format!("{}.{}.{}", reversed.join("."), def.version, def.kind);
    let mut schema =
        def.behaviour.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    let meta = generator
        .subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>()
        .to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("type").or_insert(json!("object"));
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert(
                "metadata".into(),
                json!({"allOf": [meta], "description": "Standard object's metadata."}),
            );
        }
    }
    (name, schema)
}

/// Schemas for `defs` (plus everything they reference) and the component name of each def's
/// kind, in `defs` order.
fn schemas(
    generator: &mut SchemaGenerator,
    defs: &[Arc<ResourceDef>],
) -> (Map<String, Value>, Vec<String>) {
    let mut names = Vec::with_capacity(defs.len());
    let mut custom = Vec::new();
    for def in defs {
        let builtin = BUILTINS
            .iter()
            .find(|b| b.group == def.group && b.version == def.version && b.kind == def.kind);
        let name = match builtin {
            Some(b) => {
                let reference = (b.schema)(generator);
                let r = reference
                    .get("$ref")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                r.rsplit('/').next().unwrap_or_default().to_owned()
            }
            None => {
                let (name, schema) = custom_schema(generator, def);
                custom.push((name.clone(), schema));
                name
            }
        };
        names.push(name);
    }
    let mut components = generator.take_definitions(true);
    components.extend(custom);
    for (def, name) in defs.iter().zip(&names) {
        if let Some(Value::Object(schema)) = components.get_mut(name) {
            let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
            let list = schema
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut()
                && !list.contains(&gvk)
            {
                list.push(gvk);
            }
        }
    }
    (components, names)
}

/// One operation of a resource path.
struct Op {
    method: &'static str,
    action: &'static str,
    /// Takes a body (create, update, patch): the write query parameters apply.
    writes: bool,
    collection: bool,
}

const OPS: &[(&str, Op)] = &[
    (
        "get",
        Op {
            method: "get",
            action: "get",
            writes: false,
            collection: false,
        },
    ),
    (
        "list",
        Op {
            method: "get",
            action: "list",
            writes: false,
            collection: true,
        },
    ),
    (
        "create",
        Op {
            method: "post",
            action: "post",
            writes: true,
            collection: true,
        },
    ),
    (
        "update",
        Op {
            method: "put",
            action: "put",
            writes: true,
            collection: false,
        },
    ),
    (
        "patch",
        Op {
            method: "patch",
            action: "patch",
            writes: true,
            collection: false,
        },
    ),
    (
        "delete",
        Op {
            method: "delete",
            action: "delete",
            writes: false,
            collection: false,
        },
    ),
    (
        "deletecollection",
        Op {
            method: "delete",
            action: "deletecollection",
            writes: false,
            collection: true,
        },
    ),
];

/// The collection and item paths of `def`, without the `/api/v1` prefix's namespace part.
fn resource_paths(def: &ResourceDef) -> (String, String) {
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let collection = if def.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{prefix}/{}", def.plural)
    };
    let item = format!("{collection}/{{name}}");
    (collection, item)
}

/// The write query parameters (`dryRun`, `fieldManager`, `fieldValidation`), in v3 or v2 form.
fn write_params(v3: bool) -> Vec<Value> {
    let describe = [
        (
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        (
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        (
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        ),
    ];
    describe
        .iter()
        .map(|(name, description)| {
            if v3 {
                json!({"name": name, "in": "query", "description": description,
                    "schema": {"type": "string", "uniqueItems": true}})
            } else {
                json!({"name": name, "in": "query", "description": description,
                    "type": "string", "uniqueItems": true})
            }
        })
        .collect()
}

fn path_params(def: &ResourceDef, item: bool, v3: bool) -> Vec<Value> {
    let mut names = Vec::new();
    if item {
        names.push(("name", format!("name of the {}", def.kind)));
    }
    if def.namespaced {
        names.push((
            "namespace",
            "object name and auth scope, such as for teams and projects".to_owned(),
        ));
    }
    names
        .into_iter()
        .map(|(name, description)| {
            if v3 {
                json!({"name": name, "in": "path", "required": true, "description": description,
                    "schema": {"type": "string", "uniqueItems": true}})
            } else {
                json!({"name": name, "in": "path", "required": true, "description": description,
                    "type": "string", "uniqueItems": true})
            }
        })
        .collect()
}

/// Whether `def` is a custom resource (served from a CustomResourceDefinition).
fn is_custom(def: &ResourceDef) -> bool {
    matches!(def.behaviour.special, Special::CustomResource(_))
}

/// The paths object for `defs` (v3 or v2 form); `refs` are the kinds' schema references.
fn paths(defs: &[Arc<ResourceDef>], refs: &[String], v3: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (def, reference) in defs.iter().zip(refs) {
        let (collection, item) = resource_paths(def);
        for (verb, op) in OPS {
            if !def.verbs.iter().any(|v| v == verb) {
                continue;
            }
            let path = if op.collection { &collection } else { &item };
            let mut operation = json!({
                "operationId": format!("{}{}{}", op.action, if def.namespaced { "Namespaced" } else { "" }, def.kind),
                "x-kubernetes-action": op.action,
                "x-kubernetes-group-version-kind": {"group": def.group, "version": def.version, "kind": def.kind},
            });
            let params = if op.writes {
                write_params(v3)
            } else {
                Vec::new()
            };
            operation["parameters"] = Value::Array(params);
            if v3 {
                operation["responses"] = json!({"200": {"description": "OK",
                    "content": {"application/json": {"schema": {"$ref": reference}}}}});
                if op.writes {
                    // Custom resources take no strategic merge patch (the apiserver answers
                    // 415), so their patch operations do not list it: kubectl reads this list to
                    // choose between a strategic and a JSON merge patch for `kubectl apply`.
                    let media = if op.method == "patch" && is_custom(def) {
                        vec![
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                        ]
                    } else if op.method == "patch" {
                        vec![
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/strategic-merge-patch+json",
                            "application/apply-patch+yaml",
                        ]
                    } else {
                        vec!["application/json"]
                    };
                    let schema = if op.method == "patch" {
                        json!({"type": "object"})
                    } else {
                        json!({"$ref": reference})
                    };
                    let content: Map<String, Value> = media
                        .into_iter()
                        .map(|m| (m.to_owned(), json!({"schema": schema})))
                        .collect();
                    operation["requestBody"] = json!({"content": content, "required": true});
                }
            } else {
                operation["responses"] =
                    json!({"200": {"description": "OK", "schema": {"$ref": reference}}});
                if op.writes {
                    let schema = if op.method == "patch" {
                        json!({"type": "object"})
                    } else {
                        json!({"$ref": reference})
                    };
                    if let Some(params) = operation["parameters"].as_array_mut() {
                        params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
                    }
                }
            }
            let entry = out
                .entry(path.clone())
                .or_insert_with(|| json!({"parameters": path_params(def, !op.collection, v3)}));
            entry[op.method] = operation;
        }
    }
    out
}

/// The v3 document of one group-version.
fn v3_document(defs: &[Arc<ResourceDef>]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let (components, names) = schemas(&mut generator, defs);
    let refs: Vec<String> = names
        .iter()
        .map(|n| format!("#/components/schemas/{n}"))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths(defs, &refs, true),
        "components": {"schemas": components},
    })
}

/// `/openapi/v2` (JSON): every served resource in one Swagger 2.0 document.
fn v2_document(defs: &[Arc<ResourceDef>], version: &str) -> Value {
    let mut defs = defs.to_vec();
    defs.sort_by(|a, b| (&a.group, &a.version, &a.plural).cmp(&(&b.group, &b.version, &b.plural)));
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.definitions_path = "/definitions".into())
        .into_generator();
    let (definitions, names) = schemas(&mut generator, &defs);
    let refs: Vec<String> = names.iter().map(|n| format!("#/definitions/{n}")).collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": paths(&defs, &refs, false),
        "definitions": definitions,
    })
}
