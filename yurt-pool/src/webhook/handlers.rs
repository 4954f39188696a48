//! The admission webhooks' decisions, as pure functions: the request (and whatever the server
//! looked up for it) in, a [`Verdict`] out. They work on the objects as JSON, so a mutation
//! touches exactly the fields it means to and the JSONPatch sent back holds nothing else.
//!
//! | path | kind | what |
//! | --- | --- | --- |
//! | `/mutate-core-openyurt-io-v1-node` | Node default | copy `apps.openyurt.io/desired-nodepool` to `apps.openyurt.io/nodepool`; label the node with its pool's type (`nodepool.openyurt.io/type`) and, for host-network pools, `nodepool.openyurt.io/hostnetwork=true` |
//! | `/validate-core-openyurt-io-v1-node` | Node validate | on update: the pool label may be added or removed but not changed; the host-network label cannot change once set; `openyurt.io/is-edge-worker` changes only by a node identity or the node-conversion controller |
//! | `/mutate-apps-openyurt-io-v1beta2-nodepool` | NodePool default | type `Edge`, label `nodepool.openyurt.io/type`, status reset, strategy `random`, one leader replica, the default pool-scope resources |
//! | `/validate-apps-openyurt-io-v1beta2-nodepool` | NodePool validate | annotations valid, type Edge or Cloud, no host-network Cloud pools, strategy random or mark; type, hostNetwork and interConnectivity immutable; no deleting a pool nodes still belong to |
//! | `/mutate-core-openyurt-io-v1-pod` | Pod default | pods annotated `apps.openyurt.io/exclude-host-network-pool: "true"` get a required node affinity keeping them off host-network pools |

use serde_json::{Map, Value, json};
use yurt_core::Status;
use yurt_core::admission::{AdmissionRequest, Operation};
use yurt_core::crd::NodePool;
use yurt_core::crd::nodepool::default_pool_scope_metadata;
use yurt_core::wellknown::{node, pool as apps};

use super::review::Verdict;

/// Path of the Node defaulting webhook.
pub const NODE_MUTATE_PATH: &str = "/mutate-core-openyurt-io-v1-node";
/// Path of the Node validating webhook.
pub const NODE_VALIDATE_PATH: &str = "/validate-core-openyurt-io-v1-node";
/// Path of the NodePool defaulting webhook.
pub const NODEPOOL_MUTATE_PATH: &str = "/mutate-apps-openyurt-io-v1beta2-nodepool";
/// Path of the NodePool validating webhook.
pub const NODEPOOL_VALIDATE_PATH: &str = "/validate-apps-openyurt-io-v1beta2-nodepool";
/// Path of the Pod defaulting webhook.
pub const POD_MUTATE_PATH: &str = "/mutate-core-openyurt-io-v1-pod";

const NODEPOOL_GROUP: &str = "apps.openyurt.io";

fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

fn label<'a>(obj: &'a Value, key: &str) -> &'a str {
    labels(obj)
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `object.<path...>` as a JSON object, created (replacing anything that is not an object) when
/// missing.
fn object_at<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for key in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(*key)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("made an object above")
}

fn set_label(obj: &mut Value, key: &str, value: &str) {
    object_at(obj, &["metadata", "labels"]).insert(key.to_owned(), json!(value));
}

/// The pool a Node's defaulting needs to read: its `apps.openyurt.io/nodepool` label, else its
/// legacy `apps.openyurt.io/desired-nodepool` label; `None` when it names no pool.
pub fn node_pool_to_look_up(node_obj: &Value) -> Option<String> {
    [node::NODEPOOL_LABEL, node::DESIRED_NODEPOOL_LABEL]
        .iter()
        .map(|k| label(node_obj, k))
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Node defaulting. `pool` is the NodePool [`node_pool_to_look_up`] named (`None`: it does not
/// exist, which refuses the node as upstream does, since its pool attributes cannot be applied).
pub fn default_node(node_obj: &Value, pool: Option<&NodePool>) -> Verdict {
    let Some(pool_name) = node_pool_to_look_up(node_obj) else {
        return Verdict::Allow;
    };
    let Some(pool) = pool else {
        return Verdict::deny(Status::not_found(NODEPOOL_GROUP, "nodepools", &pool_name));
    };
    let mut out = node_obj.clone();
    if label(node_obj, node::NODEPOOL_LABEL).is_empty() {
        set_label(&mut out, node::NODEPOOL_LABEL, &pool_name);
    }
    set_label(
        &mut out,
        apps::TYPE_LABEL,
        &pool.spec.pool_type().as_str().to_lowercase(),
    );
    if pool.is_host_network() {
        set_label(&mut out, node::HOST_NETWORK_LABEL, "true");
    }
    Verdict::Mutate(out)
}

/// The node-conversion controller's identity (`system:serviceaccount:<ns>:yurt-manager-yurt-node-conversion-controller`).
pub fn node_conversion_user(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:yurt-manager-yurt-node-conversion-controller")
}

/// Node validation (updates only; everything else is allowed). `namespace` is the manager's
/// working namespace, which names the node-conversion controller's ServiceAccount.
pub fn validate_node(req: &AdmissionRequest, namespace: &str) -> Verdict {
    let (Operation::Update, Some(new), Some(old)) =
        (req.operation, req.object.as_ref(), req.old_object.as_ref())
    else {
        return Verdict::Allow;
    };
    let mut errors = Vec::new();
    let (old_pool, new_pool) = (
        label(old, node::NODEPOOL_LABEL),
        label(new, node::NODEPOOL_LABEL),
    );
    if !old_pool.is_empty() && !new_pool.is_empty() && old_pool != new_pool {
        errors.push(format!(
            "metadata.labels.{}: Forbidden: {} can only be added or removed, not modified in-place",
            node::NODEPOOL_LABEL,
            node::NODEPOOL_LABEL
        ));
    }
    let old_hn = label(old, node::HOST_NETWORK_LABEL);
    if !old_hn.is_empty() && old_hn != label(new, node::HOST_NETWORK_LABEL) {
        errors.push(format!(
            "metadata.labels.{}: Forbidden: {} can not be changed",
            node::HOST_NETWORK_LABEL,
            node::HOST_NETWORK_LABEL
        ));
    }
    let user = req.user_info.username.as_str();
    let may_change_edge_worker =
        user.starts_with("system:node:") || user == node_conversion_user(namespace);
    if label(old, node::IS_EDGE_WORKER_LABEL) != label(new, node::IS_EDGE_WORKER_LABEL)
        && !may_change_edge_worker
    {
        errors.push(format!(
            "metadata.labels.{}: Forbidden: {} can only be modified by YurtNodeConversionController or the node certificate process",
            node::IS_EDGE_WORKER_LABEL,
            node::IS_EDGE_WORKER_LABEL
        ));
    }
    if errors.is_empty() {
        return Verdict::Allow;
    }
    Verdict::deny(invalid("", "Node", name(new), &errors))
}

/// A 422 Invalid Status as apimachinery's `NewInvalid` builds it from field errors, each given
/// as `<field>: <Type>: <detail>`: the message lists them (bracketed when several) and
/// `details.causes` carries one cause per error, which is what kubectl prints.
fn invalid(group: &str, kind: &str, name: &str, errors: &[String]) -> Status {
    let why = match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut status = Status::invalid(group, kind, name, &why);
    for e in errors {
        let (field, body) = e.split_once(": ").unwrap_or(("", e.as_str()));
        let reason = if body.starts_with("Forbidden") {
            "FieldValueForbidden"
        } else if body.starts_with("Too long") {
            "FieldValueTooLong"
        } else {
            "FieldValueInvalid"
        };
        status = status.with_cause(reason, field, body);
    }
    status
}

/// NodePool defaulting (create).
pub fn default_nodepool(pool: &Value) -> Verdict {
    let mut out = pool.clone();
    let ty = match out.pointer("/spec/type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => {
            object_at(&mut out, &["spec"]).insert("type".into(), json!("Edge"));
            "Edge".to_owned()
        }
    };
    set_label(&mut out, apps::TYPE_LABEL, &ty.to_lowercase());
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "status".into(),
            json!({"readyNodeNum": 0, "unreadyNodeNum": 0}),
        );
    }
    let spec = object_at(&mut out, &["spec"]);
    if spec
        .get("leaderElectionStrategy")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        spec.insert("leaderElectionStrategy".into(), json!("random"));
    }
    if spec
        .get("leaderReplicas")
        .and_then(Value::as_i64)
        .is_none_or(|n| n <= 0)
    {
        spec.insert("leaderReplicas".into(), json!(1));
    }
    let scope = spec.entry("poolScopeMetadata").or_insert_with(|| json!([]));
    if !scope.is_array() {
        *scope = json!([]);
    }
    let list = scope.as_array_mut().expect("made an array above");
    for gvr in default_pool_scope_metadata() {
        let gvr = serde_json::to_value(gvr).unwrap_or_default();
        if !list.contains(&gvr) {
            list.push(gvr);
        }
    }
    Verdict::Mutate(out)
}

/// Whether `key` is a qualified name as Kubernetes requires of annotation keys: an optional DNS
/// subdomain prefix (at most 253 characters) and `/`, then a name of at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    name_ok && prefix_ok
}

/// Total size limit of annotations, as kube-apiserver enforces it.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn invalid_pool(pool: &Value, why: String) -> Verdict {
    Verdict::deny(invalid(NODEPOOL_GROUP, "NodePool", name(pool), &[why]))
}

fn forbidden_pool(pool: &Value, why: &str) -> Verdict {
    Verdict::deny(Status::forbidden(
        NODEPOOL_GROUP,
        "nodepools",
        name(pool),
        why,
    ))
}

fn spec_str<'a>(pool: &'a Value, field: &str) -> &'a str {
    pool.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn spec_bool(pool: &Value, field: &str) -> bool {
    pool.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn validate_pool_spec(pool: &Value) -> Option<Verdict> {
    let annotations = pool.pointer("/spec/annotations").and_then(Value::as_object);
    if let Some(annotations) = annotations {
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        let bad_key = annotations.keys().find(|k| !is_qualified_name(k));
        if bad_key.is_some() || size > ANNOTATIONS_MAX_BYTES {
            let why = match bad_key {
                Some(k) => format!(
                    "spec.annotations: Invalid value: {k:?}: invalid annotations (a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/')"
                ),
                None => "spec.annotations: Too long: invalid annotations (must have at most 262144 bytes)".to_owned(),
            };
            return Some(invalid_pool(pool, why));
        }
    }
    let ty = spec_str(pool, "type");
    if ty != "Edge" && ty != "Cloud" {
        return Some(invalid_pool(
            pool,
            format!("spec.type: Invalid value: {ty:?}: pool type should be Edge or Cloud"),
        ));
    }
    if ty == "Cloud" && spec_bool(pool, "hostNetwork") {
        return Some(invalid_pool(
            pool,
            "spec.hostNetwork: Invalid value: true: Cloud NodePool can not support hostNetwork"
                .to_owned(),
        ));
    }
    let strategy = spec_str(pool, "leaderElectionStrategy");
    if strategy != "random" && strategy != "mark" {
        return Some(invalid_pool(
            pool,
            format!(
                "spec.leaderElectionStrategy: Invalid value: {strategy:?}: leaderElectionStrategy should be random or mark"
            ),
        ));
    }
    None
}

/// NodePool validation. `has_members` says whether any node still carries the pool's label
/// (looked up by the server for deletions only).
pub fn validate_nodepool(req: &AdmissionRequest, has_members: bool) -> Verdict {
    match req.operation {
        Operation::Create => match req.object.as_ref().and_then(validate_pool_spec) {
            Some(denied) => denied,
            None => Verdict::Allow,
        },
        Operation::Update => {
            let (Some(new), Some(old)) = (req.object.as_ref(), req.old_object.as_ref()) else {
                return Verdict::Allow;
            };
            if let Some(denied) = validate_pool_spec(new) {
                return denied;
            }
            if spec_str(new, "type") != spec_str(old, "type") {
                return forbidden_pool(new, "spec.type: Forbidden: pool type can't be changed");
            }
            for (field, what) in [
                ("hostNetwork", "hostNetwork"),
                ("interConnectivity", "interConnectivity"),
            ] {
                if spec_bool(new, field) != spec_bool(old, field) {
                    return forbidden_pool(
                        new,
                        &format!("spec.{field}: Forbidden: pool {what} can't be changed"),
                    );
                }
            }
            Verdict::Allow
        }
        Operation::Delete => {
            let pool = req
                .old_object
                .clone()
                .unwrap_or_else(|| json!({"metadata": {"name": req.name}}));
            if has_members {
                forbidden_pool(
                    &pool,
                    "metadata.name: Forbidden: cannot remove nonempty pool, please drain the pool before deleting",
                )
            } else {
                Verdict::Allow
            }
        }
        Operation::Connect => Verdict::Allow,
    }
}

/// Pod defaulting (create): keep pods annotated `apps.openyurt.io/exclude-host-network-pool:
/// "true"` off host-network pools with a required node affinity
/// `nodepool.openyurt.io/hostnetwork NotIn [true]` in every node selector term.
pub fn default_pod(pod: &Value) -> Verdict {
    let excluded = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(apps::EXCLUDE_HOST_NETWORK_POOL_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true");
    if !excluded {
        return Verdict::Allow;
    }
    let requirement = json!({
        "key": node::HOST_NETWORK_LABEL,
        "operator": "NotIn",
        "values": ["true"],
    });
    let mut out = pod.clone();
    let required = object_at(
        &mut out,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    );
    let terms = required
        .entry("nodeSelectorTerms")
        .or_insert_with(|| json!([]));
    if !terms.is_array() {
        *terms = json!([]);
    }
    let terms = terms.as_array_mut().expect("made an array above");
    if terms.is_empty() {
        terms.push(json!({"matchExpressions": []}));
    }
    for term in terms.iter_mut() {
        if !term.is_object() {
            *term = json!({});
        }
        let exprs = term
            .as_object_mut()
            .expect("made an object above")
            .entry("matchExpressions")
            .or_insert_with(|| json!([]));
        if !exprs.is_array() {
            *exprs = json!([]);
        }
        let exprs = exprs.as_array_mut().expect("made an array above");
        let present = exprs.iter().any(|e| {
            e.get("key").and_then(Value::as_str) == Some(node::HOST_NETWORK_LABEL)
                && e.get("operator").and_then(Value::as_str) == Some("NotIn")
                && e.get("values") == Some(&json!(["true"]))
        });
        if !present {
            exprs.push(requirement.clone());
        }
    }
    Verdict::Mutate(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_core::admission::decode_admission_review;

    fn request(op: &str, object: Value, old: Value, user: &str) -> AdmissionRequest {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "X"},
                "resource": {"group": "", "version": "v1", "resource": "x"},
                "name": object.pointer("/metadata/name").or(old.pointer("/metadata/name"))
                    .cloned().unwrap_or(json!("")),
                "operation": op, "userInfo": {"username": user},
                "object": object, "oldObject": old}});
        decode_admission_review(&serde_json::to_vec(&body).unwrap())
            .unwrap()
            .request
    }

    fn mutated(v: Verdict) -> Value {
        match v {
            Verdict::Mutate(o) => o,
            other => panic!("expected a mutation, got {other:?}"),
        }
    }

    fn denied(v: Verdict) -> Status {
        match v {
            Verdict::Deny(s) => *s,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn pool(spec: Value) -> NodePool {
        serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
            "kind": "NodePool", "metadata": {"name": "hz"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn node_default() {
        // No pool: allowed untouched.
        let plain = json!({"metadata": {"name": "n", "labels": {"a": "b"}}});
        assert_eq!(node_pool_to_look_up(&plain), None);
        assert_eq!(default_node(&plain, None), Verdict::Allow);
        // Legacy desired-nodepool label copied, type and host-network labels added.
        let legacy = json!({"metadata": {"name": "n",
            "labels": {"apps.openyurt.io/desired-nodepool": "hz"}}});
        assert_eq!(node_pool_to_look_up(&legacy).as_deref(), Some("hz"));
        let out = mutated(default_node(
            &legacy,
            Some(&pool(json!({"type": "Edge", "hostNetwork": true}))),
        ));
        assert_eq!(out["metadata"]["labels"]["apps.openyurt.io/nodepool"], "hz");
        assert_eq!(
            out["metadata"]["labels"]["nodepool.openyurt.io/type"],
            "edge"
        );
        assert_eq!(
            out["metadata"]["labels"]["nodepool.openyurt.io/hostnetwork"],
            "true"
        );
        // A cloud pool without host networking: only the type label.
        let member = json!({"metadata": {"name": "n",
            "labels": {"apps.openyurt.io/nodepool": "hz"}}});
        let out = mutated(default_node(&member, Some(&pool(json!({"type": "Cloud"})))));
        assert_eq!(
            out["metadata"]["labels"]["nodepool.openyurt.io/type"],
            "cloud"
        );
        assert!(
            out["metadata"]["labels"]
                .get("nodepool.openyurt.io/hostnetwork")
                .is_none()
        );
        // A pool that does not exist: refused with the apiserver's NotFound words.
        let s = denied(default_node(&member, None));
        assert_eq!(s.code, 404);
        assert_eq!(s.message, "nodepools.apps.openyurt.io \"hz\" not found");
    }

    #[test]
    fn node_validate() {
        let node = |labels: Value| json!({"metadata": {"name": "n", "labels": labels}});
        let ok = |old: Value, new: Value, user: &str| {
            validate_node(
                &request("UPDATE", node(new), node(old), user),
                "kube-system",
            )
        };
        // Adding and removing the pool label is fine; creating is not checked.
        assert_eq!(
            ok(
                json!({}),
                json!({"apps.openyurt.io/nodepool": "a"}),
                "admin"
            ),
            Verdict::Allow
        );
        assert_eq!(
            ok(
                json!({"apps.openyurt.io/nodepool": "a"}),
                json!({}),
                "admin"
            ),
            Verdict::Allow
        );
        let create = request(
            "CREATE",
            node(json!({"openyurt.io/is-edge-worker": "true"})),
            Value::Null,
            "admin",
        );
        assert_eq!(validate_node(&create, "kube-system"), Verdict::Allow);
        // Changing it in place is not.
        let s = denied(ok(
            json!({"apps.openyurt.io/nodepool": "a"}),
            json!({"apps.openyurt.io/nodepool": "b"}),
            "admin",
        ));
        assert_eq!(s.code, 422);
        assert_eq!(
            s.message,
            "Node \"n\" is invalid: metadata.labels.apps.openyurt.io/nodepool: Forbidden: apps.openyurt.io/nodepool can only be added or removed, not modified in-place"
        );
        // Host-network label is frozen once set.
        let s = denied(ok(
            json!({"nodepool.openyurt.io/hostnetwork": "true"}),
            json!({}),
            "admin",
        ));
        assert!(s.message.contains("can not be changed"), "{}", s.message);
        // Edge-worker label: nodes and the conversion controller only; two errors together.
        let edge = json!({"openyurt.io/is-edge-worker": "true"});
        assert_eq!(ok(json!({}), edge.clone(), "system:node:n"), Verdict::Allow);
        assert_eq!(
            ok(
                json!({}),
                edge.clone(),
                &node_conversion_user("kube-system")
            ),
            Verdict::Allow
        );
        let s = denied(ok(
            json!({"apps.openyurt.io/nodepool": "a"}),
            json!({"apps.openyurt.io/nodepool": "b", "openyurt.io/is-edge-worker": "true"}),
            "admin",
        ));
        assert!(
            s.message.starts_with("Node \"n\" is invalid: ["),
            "{}",
            s.message
        );
        assert!(
            s.message.contains("YurtNodeConversionController"),
            "{}",
            s.message
        );
    }

    #[test]
    fn nodepool_default() {
        let out = mutated(default_nodepool(
            &json!({"metadata": {"name": "hz"}, "spec": {}}),
        ));
        assert_eq!(out["spec"]["type"], "Edge");
        assert_eq!(
            out["metadata"]["labels"]["nodepool.openyurt.io/type"],
            "edge"
        );
        assert_eq!(out["spec"]["leaderElectionStrategy"], "random");
        assert_eq!(out["spec"]["leaderReplicas"], 1);
        assert_eq!(
            out["status"],
            json!({"readyNodeNum": 0, "unreadyNodeNum": 0})
        );
        assert_eq!(
            out["spec"]["poolScopeMetadata"],
            json!([{"group": "", "version": "v1", "resource": "services"},
                   {"group": "discovery.k8s.io", "version": "v1", "resource": "endpointslices"}])
        );
        // Set values are kept; missing defaults appended once.
        let out = mutated(default_nodepool(
            &json!({"metadata": {"name": "hz", "labels": {"x": "y"}},
            "spec": {"type": "Cloud", "leaderElectionStrategy": "mark", "leaderReplicas": 3,
                     "poolScopeMetadata": [{"group": "", "version": "v1", "resource": "services"},
                                           {"group": "", "version": "v1", "resource": "configmaps"}]}}),
        ));
        assert_eq!(
            out["metadata"]["labels"],
            json!({"x": "y", "nodepool.openyurt.io/type": "cloud"})
        );
        assert_eq!(out["spec"]["leaderElectionStrategy"], "mark");
        assert_eq!(out["spec"]["leaderReplicas"], 3);
        assert_eq!(
            out["spec"]["poolScopeMetadata"].as_array().unwrap().len(),
            3
        );
    }

    #[test]
    fn nodepool_validate() {
        let p = |spec: Value| json!({"metadata": {"name": "hz"}, "spec": spec});
        let good = json!({"type": "Edge", "leaderElectionStrategy": "random"});
        assert_eq!(
            validate_nodepool(&request("CREATE", p(good.clone()), Value::Null, "a"), false),
            Verdict::Allow
        );
        let cases = [
            (
                json!({"type": "Fog", "leaderElectionStrategy": "random"}),
                "spec.type: Invalid value: \"Fog\"",
            ),
            (
                json!({"type": "Cloud", "hostNetwork": true, "leaderElectionStrategy": "random"}),
                "spec.hostNetwork",
            ),
            (
                json!({"type": "Edge", "leaderElectionStrategy": "vote"}),
                "leaderElectionStrategy",
            ),
            (
                json!({"type": "Edge", "leaderElectionStrategy": "random", "annotations": {"bad key!": "x"}}),
                "spec.annotations",
            ),
        ];
        for (spec, want) in cases {
            let s = denied(validate_nodepool(
                &request("CREATE", p(spec), Value::Null, "a"),
                false,
            ));
            assert_eq!(s.code, 422);
            assert!(
                s.message
                    .starts_with("NodePool.apps.openyurt.io \"hz\" is invalid: "),
                "{}",
                s.message
            );
            assert!(s.message.contains(want), "{}", s.message);
        }
        // Updates: immutable fields.
        for (field, value) in [
            ("type", json!("Cloud")),
            ("hostNetwork", json!(true)),
            ("interConnectivity", json!(true)),
        ] {
            let mut new = good.clone();
            new[field] = value;
            let s = denied(validate_nodepool(
                &request("UPDATE", p(new), p(good.clone()), "a"),
                false,
            ));
            assert_eq!(s.code, 403);
            assert!(
                s.message
                    .starts_with("nodepools.apps.openyurt.io \"hz\" is forbidden: "),
                "{}",
                s.message
            );
            assert!(
                s.message.contains(&format!("spec.{field}: Forbidden")),
                "{}",
                s.message
            );
        }
        let mut labels_only = good.clone();
        labels_only["labels"] = json!({"a": "b"});
        assert_eq!(
            validate_nodepool(
                &request("UPDATE", p(labels_only), p(good.clone()), "a"),
                false
            ),
            Verdict::Allow
        );
        // Deletes: only empty pools.
        let del = request("DELETE", Value::Null, p(good), "a");
        assert_eq!(validate_nodepool(&del, false), Verdict::Allow);
        let s = denied(validate_nodepool(&del, true));
        assert!(
            s.message.contains("cannot remove nonempty pool"),
            "{}",
            s.message
        );
    }

    #[test]
    fn qualified_names() {
        for ok in ["a", "a.b/c", "example.com/x-y_z.1", "A1"] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "-a", "a-", "Ex.com/a", "a/b/c", "bad key"] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }

    #[test]
    fn pod_default() {
        let plain = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(default_pod(&plain), Verdict::Allow);
        let pod = json!({"metadata": {"name": "p",
            "annotations": {"apps.openyurt.io/exclude-host-network-pool": "true"}}, "spec": {}});
        let out = mutated(default_pod(&pod));
        let want = json!({"key": "nodepool.openyurt.io/hostnetwork", "operator": "NotIn", "values": ["true"]});
        assert_eq!(
            out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"],
            json!([{"matchExpressions": [want.clone()]}])
        );
        // Idempotent, and every existing term gets it.
        assert_eq!(mutated(default_pod(&out)), out);
        let two_terms = json!({"metadata": pod["metadata"], "spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}}}});
        let out = mutated(default_pod(&two_terms));
        let terms = &out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchExpressions"][1], want);
        assert_eq!(terms[1]["matchExpressions"][0], want);
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
    }
}
