//! `nodepool-controller`: a NodePool's status, and its attributes on its member nodes.
//!
//! Membership is the node label `apps.openyurt.io/nodepool=<pool>`. Two kube-runtime controllers
//! share the manager's Node and NodePool informers:
//!
//! - **status** (keyed by pool): `status.nodes` (sorted names), `readyNodeNum` and
//!   `unreadyNodeNum` (by the node's `Ready` condition). A node event triggers the pool it is in
//!   and the pool it was last seen in, so a node that leaves (or is deleted) is counted out.
//! - **attribute sync** (keyed by node; on unless `--enable-sync-nodepool-configurations=false`):
//!   the pool's `spec.labels`, `spec.annotations` and `spec.taints` are set on each member.
//!   What was last applied is remembered in the node annotation
//!   `nodepool.openyurt.io/previous-attributes` (JSON `{labels, annotations, taints}`, as
//!   upstream writes it), so a key dropped from the pool is removed from its nodes, and a node
//!   that leaves the pool (or whose pool is deleted) loses exactly what the pool gave it; values
//!   the node had of its own for other keys are never touched. Taints are keyed by
//!   `(key, effect)`.
//!
//! Both write one JSON merge patch carrying the resourceVersion they decided on, and only when
//! something differs, so a converged cluster sees no writes and, with no events, no
//! reconciles. Writes are kept to what a change needs:
//!
//! - only the node facts a controller depends on trigger it (a pool's membership and readiness
//!   for the status, the pool's `labels/annotations/taints` for the sync), so a status write
//!   does not re-examine every member and a label the sync writes does not recount the pool;
//! - node-triggered pool reconciles are coalesced: a pool is looked at once its triggers have
//!   been quiet for 500 ms (at most 5 s after the first), so a burst of member changes costs
//!   one status write per pool;
//! - a reconcile whose cached object is still the version our own last write replaced does
//!   nothing (the watch event of that write triggers the next one), and a 409 Conflict is not
//!   retried from the stale version but left to the watch event of the change that caused it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use yurt_core::crd::{NodePool, NodePoolStatus};
use yurt_core::wellknown::node::{NODEPOOL_LABEL, PREVIOUS_ATTRIBUTES_ANNOTATION};

use super::queue::{PendingWrites, WorkQueue, coalesce};
use super::{ReconcileError, drive, is_conflict};
use crate::context::Context;
use crate::names::NODEPOOL;

/// How long a reconcile waits for a shared cache's first list before failing (and retrying).
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// The pool attributes last applied to a node, as kept in its
/// `nodepool.openyurt.io/previous-attributes` annotation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolAttributes {
    /// Labels the pool set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations the pool set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Taints the pool set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

impl PoolAttributes {
    /// The attributes `pool` asks for (empty when there is no pool).
    pub fn of(pool: Option<&NodePool>) -> PoolAttributes {
        pool.map(|p| PoolAttributes {
            labels: p.spec.labels.clone(),
            annotations: p.spec.annotations.clone(),
            taints: p.spec.taints.clone(),
        })
        .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty() && self.taints.is_empty()
    }
}

/// The JSON merge patch that moves `node` from the attributes it last got (`previous`,
/// from its annotation) to `desired`, or `None` when it already matches. The patch carries the
/// node's resourceVersion as a precondition.
pub fn attribute_patch(node: &Node, desired: &PoolAttributes) -> Option<Value> {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let previous: PoolAttributes = annotations
        .get(PREVIOUS_ATTRIBUTES_ANNOTATION)
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or_default();

    let label_patch = map_patch(labels, &previous.labels, &desired.labels);
    let mut annotation_patch = map_patch(annotations, &previous.annotations, &desired.annotations);
    let record = if desired.is_empty() {
        None
    } else {
        Some(serde_json::to_string(desired).expect("attributes serialise"))
    };
    if annotations.get(PREVIOUS_ATTRIBUTES_ANNOTATION) != record.as_ref() {
        let current_record: Option<PoolAttributes> = annotations
            .get(PREVIOUS_ATTRIBUTES_ANNOTATION)
            .and_then(|raw| serde_json::from_str(raw).ok());
        // Rewrite the record only when its meaning changes (not for a mere formatting
        // difference, such as upstream's field order).
        if current_record.as_ref() != Some(desired) || record.is_none() {
            annotation_patch.insert(
                PREVIOUS_ATTRIBUTES_ANNOTATION.to_owned(),
                record.map(Value::String).unwrap_or(Value::Null),
            );
        }
    }

    let current_taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let key = |t: &Taint| (t.key.clone(), t.effect.clone());
    let mut taints: Vec<Taint> = current_taints
        .iter()
        .filter(|t| {
            let k = key(t);
            let dropped = previous.taints.iter().any(|p| key(p) == k)
                && !desired.taints.iter().any(|d| key(d) == k);
            let replaced = desired.taints.iter().any(|d| key(d) == k);
            !dropped && !replaced
        })
        .cloned()
        .collect();
    for d in &desired.taints {
        match current_taints.iter().find(|t| key(t) == key(d)) {
            // Keep the node's own copy (and its position) when it already matches.
            Some(t) if t.value == d.value => taints.push(t.clone()),
            _ => taints.push(d.clone()),
        }
    }
    let same_taints = {
        let mut a: Vec<_> = current_taints
            .iter()
            .map(|t| (key(t), t.value.clone()))
            .collect();
        let mut b: Vec<_> = taints.iter().map(|t| (key(t), t.value.clone())).collect();
        a.sort();
        b.sort();
        a == b
    };

    if label_patch.is_empty() && annotation_patch.is_empty() && same_taints {
        return None;
    }
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(node.resource_version()));
    if !label_patch.is_empty() {
        metadata.insert("labels".into(), Value::Object(label_patch));
    }
    if !annotation_patch.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotation_patch));
    }
    let mut patch = json!({ "metadata": metadata });
    if !same_taints {
        patch["spec"] = json!({ "taints": taints });
    }
    Some(patch)
}

/// Merge-patch entries moving `current` from `previous` to `desired`: keys the pool dropped
/// are removed, keys it sets are written when they differ.
fn map_patch(
    current: &BTreeMap<String, String>,
    previous: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in previous.keys() {
        if !desired.contains_key(key) && current.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, value) in desired {
        if current.get(key) != Some(value) {
            patch.insert(key.clone(), Value::String(value.clone()));
        }
    }
    patch
}

/// The status a pool should have given the nodes in `nodes` (all nodes; members are picked by
/// label): sorted member names and ready/unready counts. Other status fields are kept.
pub fn desired_status(pool: &NodePool, nodes: &[Arc<Node>]) -> NodePoolStatus {
    let name = pool.name_any();
    let mut members: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.labels().get(NODEPOOL_LABEL) == Some(&name))
        .map(|n| n.as_ref())
        .collect();
    members.sort_by_key(|n| n.name_any());
    let ready = members.iter().filter(|n| is_ready(n)).count() as i32;
    let mut status = pool.status.clone().unwrap_or_default();
    status.nodes = members.iter().map(|n| n.name_any()).collect();
    status.ready_node_num = Some(ready);
    status.unready_node_num = Some(members.len() as i32 - ready);
    status
}

/// Whether the node's `Ready` condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// How long a pool's triggers must be quiet before its status (or its buckets) is recomputed:
/// a burst of member changes becomes one write per pool.
pub(crate) const BURST_QUIET: Duration = Duration::from_millis(500);
/// The longest a triggered pool waits for its triggers to go quiet.
pub(crate) const BURST_LONGEST: Duration = Duration::from_secs(5);

/// Subscribes to Nodes and NodePools and returns the future running both controllers.
pub fn setup(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let (pools, pool_changes) = ctx.informers.subscribe::<NodePool>();
    let (nodes, node_changes) = ctx.informers.subscribe::<Node>();
    // One queue for both controllers (their keys are of different kinds).
    let queue = WorkQueue::new(ctx, NODEPOOL);

    // Pool status, keyed by pool; a node event that changes a pool's membership or readiness
    // triggers its current and its last seen pool, coalesced per pool.
    let pool_mapper = queue.track_mapper(
        pools.clone(),
        node_pool_mapper(nodes.clone(), NodeFacts::MembershipAndReadiness),
    );
    let pool_triggers = coalesce(
        node_changes.flat_map(move |node| futures::stream::iter(pool_mapper(node))),
        BURST_QUIET,
        BURST_LONGEST,
    );
    let status = Controller::for_shared_stream(
        queue.track_changes(pool_changes, pools.clone()),
        pools.clone(),
    )
    .reconcile_on(pool_triggers);
    let status_nodes = nodes.clone();
    let status_writes = PendingWrites::default();
    let status_future = drive(
        NODEPOOL,
        status,
        ctx.clone(),
        queue.clone(),
        move |pool, ctx| reconcile_status(pool, ctx, status_nodes.clone(), status_writes.clone()),
    );

    if !ctx.config.enable_sync_nodepool_configurations {
        return status_future;
    }

    // Attribute sync, keyed by node; a pool whose attributes change (or that is deleted)
    // triggers its members.
    let (_, node_changes) = ctx.informers.subscribe::<Node>();
    let (_, pool_changes) = ctx.informers.subscribe::<NodePool>();
    let sync = Controller::for_shared_stream(
        queue.track_changes(node_changes, nodes.clone()),
        nodes.clone(),
    )
    .watches_shared_stream(
        pool_changes,
        queue.track_mapper(nodes.clone(), pool_member_mapper(pools.clone(), nodes)),
    );
    let node_writes = PendingWrites::default();
    let sync_future = drive(NODEPOOL, sync, ctx.clone(), queue, move |node, ctx| {
        reconcile_attributes(node, ctx, pools.clone(), node_writes.clone())
    });
    async move {
        futures::join!(status_future, sync_future);
    }
    .boxed()
}

/// Maps a changed NodePool to its member nodes when the attributes it gives them changed since
/// it was last seen, or when it was deleted (its members lose what it gave them). A pool's
/// status writes therefore trigger nothing here.
fn pool_member_mapper(
    pools: Store<NodePool>,
    nodes: Store<Node>,
) -> impl Fn(Arc<NodePool>) -> Vec<ObjectRef<Node>> + Send + Sync + 'static {
    let last: Mutex<HashMap<String, PoolAttributes>> = Mutex::default();
    move |pool: Arc<NodePool>| {
        let name = pool.name_any();
        let deleted = pools.get(&ObjectRef::from_obj(pool.as_ref())).is_none();
        let changed = {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if deleted {
                last.remove(&name);
                true
            } else {
                let now = PoolAttributes::of(Some(pool.as_ref()));
                last.insert(name.clone(), now.clone()).as_ref() != Some(&now)
            }
        };
        if !changed {
            return Vec::new();
        }
        nodes
            .state()
            .into_iter()
            .filter(|n| n.labels().get(NODEPOOL_LABEL) == Some(&name))
            .map(|n| ObjectRef::from_obj(n.as_ref()))
            .collect()
    }
}

/// What about a node a pool-keyed controller depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeFacts {
    /// Only which pool it is in (NodeBuckets).
    Membership,
    /// Its pool and whether it is ready (pool status).
    MembershipAndReadiness,
}

/// Maps a changed Node to the pools it affects: the pool it is in now and the pool it was last
/// seen in (so a node that leaves a pool, or is deleted, triggers that pool too). Only a change
/// of what `facts` names triggers anything (a node's heartbeat or a label we set on it does
/// not). `nodes` is the shared Node store, which is updated before subscribers hear of a
/// change, so a node missing from it was deleted.
pub(crate) fn node_pool_mapper(
    nodes: Store<Node>,
    facts: NodeFacts,
) -> impl Fn(Arc<Node>) -> Vec<ObjectRef<NodePool>> + Send + Sync + 'static {
    // Node name -> (pool, ready) when last seen.
    let last_seen: Mutex<HashMap<String, (String, bool)>> = Mutex::default();
    move |node: Arc<Node>| {
        let mut last = last_seen.lock().unwrap_or_else(|e| e.into_inner());
        let name = node.name_any();
        let now = node.labels().get(NODEPOOL_LABEL).cloned();
        let ready = facts == NodeFacts::MembershipAndReadiness && is_ready(&node);
        let deleted = nodes.get(&ObjectRef::from_obj(node.as_ref())).is_none();
        let before = match &now {
            Some(pool) if !deleted => last.insert(name, (pool.clone(), ready)),
            _ => last.remove(&name),
        };
        if let (Some(pool), Some(before)) = (&now, &before)
            && !deleted
            && before == &(pool.clone(), ready)
        {
            return Vec::new();
        }
        let mut out: Vec<ObjectRef<NodePool>> = Vec::new();
        for pool in now.into_iter().chain(before.map(|(pool, _)| pool)) {
            if !out.iter().any(|r| r.name == pool) {
                out.push(ObjectRef::new(&pool));
            }
        }
        out
    }
}

/// Waits (bounded) for the shared cache of `K` to hold its first list; a reconcile fails (and is
/// retried) rather than act on an empty cache.
pub(crate) async fn synced<K: crate::informers::Watched>(
    ctx: &Context,
    what: &'static str,
) -> Result<(), ReconcileError> {
    if ctx.informers.wait_synced::<K>(SYNC_WAIT).await {
        Ok(())
    } else {
        Err(ReconcileError::NotSynced(what))
    }
}

async fn reconcile_status(
    pool: Arc<NodePool>,
    ctx: Arc<Context>,
    nodes: Store<Node>,
    writes: PendingWrites,
) -> Result<Action, ReconcileError> {
    synced::<Node>(&ctx, "nodes").await?;
    let name = pool.name_any();
    if writes.behind(&name, pool.resource_version().as_deref()) {
        // The watch event of our own last status write is still on its way; it triggers the
        // next reconcile.
        return Ok(Action::await_change());
    }
    let desired = desired_status(&pool, &nodes.state());
    let current = pool.status.clone().unwrap_or_default();
    if current == desired {
        return Ok(Action::await_change());
    }
    let patch = json!({
        "metadata": {"resourceVersion": pool.resource_version()},
        "status": {
            "nodes": desired.nodes,
            "readyNodeNum": desired.ready_node_num,
            "unreadyNodeNum": desired.unready_node_num,
        }
    });
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    let result = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    if is_conflict(&result) {
        return Ok(Action::await_change());
    }
    result?;
    writes.wrote(name, pool.resource_version());
    Ok(Action::await_change())
}

async fn reconcile_attributes(
    node: Arc<Node>,
    ctx: Arc<Context>,
    pools: Store<NodePool>,
    writes: PendingWrites,
) -> Result<Action, ReconcileError> {
    synced::<NodePool>(&ctx, "nodepools").await?;
    let name = node.name_any();
    if writes.behind(&name, node.resource_version().as_deref()) {
        return Ok(Action::await_change());
    }
    let pool = node
        .labels()
        .get(NODEPOOL_LABEL)
        .and_then(|name| pools.get(&ObjectRef::new(name)));
    let desired = PoolAttributes::of(pool.as_deref());
    let Some(patch) = attribute_patch(&node, &desired) else {
        return Ok(Action::await_change());
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let result = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    if is_conflict(&result) {
        return Ok(Action::await_change());
    }
    result?;
    writes.wrote(name, node.resource_version());
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, annotations: Value, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "resourceVersion": "7", "labels": labels, "annotations": annotations},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn attrs(v: Value) -> PoolAttributes {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn new_attributes_are_added_and_recorded() {
        let n = node(json!({"own": "x"}), json!({}), json!([]));
        let want = attrs(json!({"labels": {"zone": "a"},
            "taints": [{"key": "edge", "effect": "NoSchedule"}]}));
        let patch = attribute_patch(&n, &want).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["metadata"]["labels"], json!({"zone": "a"}));
        assert_eq!(
            patch["spec"]["taints"],
            json!([{"key": "edge", "effect": "NoSchedule"}])
        );
        let record: PoolAttributes = serde_json::from_str(
            patch["metadata"]["annotations"][PREVIOUS_ATTRIBUTES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record, want);
    }

    #[test]
    fn dropped_keys_are_removed_but_the_nodes_own_are_kept() {
        let prev = json!({"labels": {"zone": "a", "tier": "1"}, "taints": [{"key": "edge", "effect": "NoSchedule"}]});
        let n = node(
            json!({"own": "x", "zone": "a", "tier": "1"}),
            json!({PREVIOUS_ATTRIBUTES_ANNOTATION: prev.to_string()}),
            json!([{"key": "edge", "effect": "NoSchedule"}, {"key": "mine", "effect": "NoExecute"}]),
        );
        let want = attrs(json!({"labels": {"zone": "b"}}));
        let patch = attribute_patch(&n, &want).unwrap();
        assert_eq!(
            patch["metadata"]["labels"],
            json!({"tier": null, "zone": "b"})
        );
        assert_eq!(
            patch["spec"]["taints"],
            json!([{"key": "mine", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn a_converged_node_needs_no_patch_and_leaving_clears_the_record() {
        let want = attrs(json!({"labels": {"zone": "a"}}));
        let n = node(
            json!({"zone": "a"}),
            json!({PREVIOUS_ATTRIBUTES_ANNOTATION: serde_json::to_string(&want).unwrap()}),
            json!(null),
        );
        assert_eq!(attribute_patch(&n, &want), None);
        let patch = attribute_patch(&n, &PoolAttributes::default()).unwrap();
        assert_eq!(
            patch["metadata"]["labels"],
            json!({"zone": null}),
            "a node leaving its pool loses the pool's labels"
        );
        assert_eq!(
            patch["metadata"]["annotations"][PREVIOUS_ATTRIBUTES_ANNOTATION],
            Value::Null
        );
    }
}
