//! `node-bucket-controller`: a NodePool's member list split into NodeBuckets.
//!
//! Hubs that need a pool's membership watch NodeBuckets (labelled `openyurt.io/pool-name`)
//! instead of every Node, so a change to one node rewrites one small bucket. Each bucket holds
//! at most `--max-nodes-per-bucket` names. Like Kubernetes' EndpointSlice controller, the plan
//! keeps churn low: nodes stay in the bucket they are in; a bucket that lost members is
//! refilled first (fullest first); remaining new nodes go into the existing bucket that ends
//! closest to full, or, when they fit in none, fill the fullest bucket with room, and only then
//! go into new buckets (named `<pool>-<random>` by the apiserver
//! from `generateName`); a bucket left empty is reused for a new one rather than deleted and
//! created.
//!
//! Node changes reach a pool coalesced (once its triggers have been quiet for 500 ms, at most
//! 5 s after the first), so a burst of joins and leaves costs one write per touched bucket.
//! Writes carry the bucket's resourceVersion (merge patch or delete precondition). Because the
//! bucket cache lags behind our own writes, each pool remembers what it wrote and does not plan
//! again until the cache has caught up, so a burst of events cannot create duplicate buckets.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use yurt_core::crd::{BucketNode, NodeBucket, NodeBucketFields, NodePool};
use yurt_core::wellknown::node::NODEPOOL_LABEL;
use yurt_core::wellknown::pool::POOL_NAME_LABEL;

use super::nodepool::{BURST_LONGEST, BURST_QUIET, NodeFacts, node_pool_mapper, synced};
use super::queue::{WorkQueue, coalesce};
use super::{ReconcileError, drive};
use crate::context::Context;
use crate::names::NODE_BUCKET;

/// How soon a pool is looked at again while the bucket cache catches up with our writes.
const CATCH_UP: Duration = Duration::from_millis(50);

/// An existing bucket as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Bucket name.
    pub name: String,
    /// resourceVersion it was read at.
    pub resource_version: String,
    /// Member node names, in bucket order.
    pub nodes: Vec<String>,
}

/// What to write for one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketPlan {
    /// New buckets' node lists.
    pub create: Vec<Vec<String>>,
    /// Existing buckets to rewrite (name, resourceVersion, new node list).
    pub update: Vec<Bucket>,
    /// Buckets to delete (name, resourceVersion).
    pub delete: Vec<Bucket>,
}

impl BucketPlan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Plans the buckets of a pool whose members are `desired`, given its `existing` buckets and
/// the bucket size `max` (see the module docs). New members are placed in name order, so the
/// plan is deterministic.
pub fn plan(desired: &BTreeSet<String>, existing: &[Bucket], max: usize) -> BucketPlan {
    let max = max.max(1);
    let mut unplaced = desired.clone();
    let mut unchanged: Vec<Bucket> = Vec::new();
    let mut update: Vec<Bucket> = Vec::new();
    let mut delete: Vec<Bucket> = Vec::new();
    for bucket in existing {
        let kept: Vec<String> = bucket
            .nodes
            .iter()
            .filter(|n| unplaced.remove(*n))
            .cloned()
            .collect();
        if kept.len() == bucket.nodes.len() && kept.len() <= max {
            unchanged.push(bucket.clone());
        } else if kept.is_empty() {
            delete.push(bucket.clone());
        } else {
            let mut b = bucket.clone();
            // An oversized bucket (the limit was lowered) gives its surplus back.
            for surplus in kept.iter().skip(max) {
                unplaced.insert(surplus.clone());
            }
            b.nodes = kept.into_iter().take(max).collect();
            update.push(b);
        }
    }
    let take = |bucket: &mut Vec<String>, unplaced: &mut BTreeSet<String>| {
        while bucket.len() < max {
            match unplaced.pop_first() {
                Some(n) => bucket.push(n),
                None => break,
            }
        }
    };
    // Refill buckets that are being rewritten anyway, fullest first.
    update.sort_by_key(|b| std::cmp::Reverse(b.nodes.len()));
    for b in &mut update {
        take(&mut b.nodes, &mut unplaced);
    }
    // Then the unchanged bucket that ends closest to full, then new buckets.
    let mut create: Vec<Vec<String>> = Vec::new();
    while !unplaced.is_empty() {
        let n = unplaced.len();
        let best = (n < max)
            .then(|| {
                unchanged
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.nodes.len() + n <= max)
                    .min_by_key(|(_, b)| max - (b.nodes.len() + n))
                    .map(|(i, _)| i)
            })
            .flatten();
        // Otherwise the fullest bucket with room is filled up before a new one is made, so a
        // pool has as few buckets as its size allows however its nodes arrived.
        let best = best.or_else(|| {
            unchanged
                .iter()
                .enumerate()
                .filter(|(_, b)| b.nodes.len() < max)
                .max_by_key(|(_, b)| b.nodes.len())
                .map(|(i, _)| i)
        });
        match best {
            Some(i) => {
                let mut b = unchanged.remove(i);
                take(&mut b.nodes, &mut unplaced);
                update.push(b);
            }
            None => {
                let mut nodes = Vec::new();
                take(&mut nodes, &mut unplaced);
                create.push(nodes);
            }
        }
    }
    // Reuse buckets that would be deleted for buckets that would be created.
    while let (Some(_), Some(nodes)) = (delete.last(), create.last()) {
        let mut b = delete.pop().expect("checked");
        b.nodes = nodes.clone();
        create.pop();
        update.push(b);
    }
    BucketPlan {
        create,
        update,
        delete,
    }
}

/// What this controller wrote for a pool and is waiting to see in its cache.
#[derive(Default)]
struct Written {
    /// Bucket name and the resourceVersion our write produced.
    present: Vec<(String, u64)>,
    /// Buckets we deleted.
    absent: Vec<String>,
}

/// Subscribes to NodePools, Nodes and NodeBuckets and returns the future running the
/// controller.
pub fn setup(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let (pools, pool_changes) = ctx.informers.subscribe::<NodePool>();
    let (nodes, node_changes) = ctx.informers.subscribe::<Node>();
    let (buckets, bucket_changes) = ctx.informers.subscribe::<NodeBucket>();
    let queue = WorkQueue::new(ctx, NODE_BUCKET);
    // Membership changes reach a pool coalesced, like the pool status (one bucket write per
    // pool per burst).
    let pool_mapper = queue.track_mapper(
        pools.clone(),
        node_pool_mapper(nodes.clone(), NodeFacts::Membership),
    );
    let pool_triggers = coalesce(
        node_changes.flat_map(move |node| futures::stream::iter(pool_mapper(node))),
        BURST_QUIET,
        BURST_LONGEST,
    );
    let controller = Controller::for_shared_stream(
        queue.track_changes(pool_changes, pools.clone()),
        pools.clone(),
    )
    .reconcile_on(pool_triggers)
    .watches_shared_stream(
        bucket_changes,
        queue.track_mapper(pools, |bucket: Arc<NodeBucket>| {
            bucket
                .labels()
                .get(POOL_NAME_LABEL)
                .map(|p| ObjectRef::<NodePool>::new(p))
                .into_iter()
                .collect()
        }),
    );
    let written: Arc<Mutex<HashMap<String, Written>>> = Arc::default();
    drive(
        NODE_BUCKET,
        controller,
        ctx.clone(),
        queue,
        move |pool, ctx| reconcile(pool, ctx, nodes.clone(), buckets.clone(), written.clone()),
    )
}

fn caught_up(store: &Store<NodeBucket>, written: &Written) -> bool {
    written.present.iter().all(|(name, rv)| {
        store
            .get(&ObjectRef::new(name))
            .and_then(|b| b.resource_version())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|seen| seen >= *rv)
    }) && written
        .absent
        .iter()
        .all(|name| store.get(&ObjectRef::new(name)).is_none())
}

async fn reconcile(
    pool: Arc<NodePool>,
    ctx: Arc<Context>,
    nodes: Store<Node>,
    buckets: Store<NodeBucket>,
    written: Arc<Mutex<HashMap<String, Written>>>,
) -> Result<Action, ReconcileError> {
    synced::<Node>(&ctx, "nodes").await?;
    synced::<NodeBucket>(&ctx, "nodebuckets").await?;
    let name = pool.name_any();
    {
        let mut map = written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get(&name) {
            if !caught_up(&buckets, w) {
                return Ok(Action::requeue(CATCH_UP));
            }
            map.remove(&name);
        }
    }
    if pool.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let desired: BTreeSet<String> = nodes
        .state()
        .iter()
        .filter(|n| n.labels().get(NODEPOOL_LABEL) == Some(&name))
        .map(|n| n.name_any())
        .collect();
    let mut existing: Vec<Bucket> = buckets
        .state()
        .iter()
        .filter(|b| b.labels().get(POOL_NAME_LABEL) == Some(&name))
        .map(|b| Bucket {
            name: b.name_any(),
            resource_version: b.resource_version().unwrap_or_default(),
            nodes: b.node_names().map(str::to_owned).collect(),
        })
        .collect();
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    let plan = plan(&desired, &existing, ctx.config.max_nodes_per_bucket);
    if plan.is_empty() {
        return Ok(Action::await_change());
    }

    let api: Api<NodeBucket> = Api::all(ctx.client.clone());
    let mut done = Written::default();
    let result = write(&api, &pool, &plan, &mut done).await;
    if !done.present.is_empty() || !done.absent.is_empty() {
        written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, done);
    }
    match result {
        // A bucket changed under us: its watch event triggers the pool again.
        Err(ReconcileError::Kube(kube::Error::Api(status))) if status.is_conflict() => {
            Ok(Action::await_change())
        }
        Err(err) => Err(err),
        Ok(()) => Ok(Action::await_change()),
    }
}

fn rv_of(bucket: &NodeBucket) -> u64 {
    bucket
        .resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn members(nodes: &[String]) -> Vec<BucketNode> {
    nodes
        .iter()
        .map(|n| BucketNode {
            name: Some(n.clone()),
        })
        .collect()
}

async fn write(
    api: &Api<NodeBucket>,
    pool: &NodePool,
    plan: &BucketPlan,
    done: &mut Written,
) -> Result<(), ReconcileError> {
    let pool_name = pool.name_any();
    for b in &plan.update {
        let patch = json!({
            "metadata": {"resourceVersion": b.resource_version},
            "numNodes": b.nodes.len(),
            "nodes": members(&b.nodes),
        });
        let out = api
            .patch(&b.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        done.present.push((b.name.clone(), rv_of(&out)));
    }
    for nodes in &plan.create {
        let bucket = NodeBucket {
            metadata: ObjectMeta {
                generate_name: Some(format!("{pool_name}-")),
                labels: Some([(POOL_NAME_LABEL.to_owned(), pool_name.clone())].into()),
                owner_references: owner(pool).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: NodeBucketFields {
                num_nodes: nodes.len() as i32,
                nodes: members(nodes),
            },
        };
        let out = api.create(&PostParams::default(), &bucket).await?;
        done.present.push((out.name_any(), rv_of(&out)));
    }
    for b in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(b.resource_version.clone()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(&b.name, &params).await?;
        done.absent.push(b.name.clone());
    }
    Ok(())
}

/// The controller reference from a bucket to its pool (so the garbage collector removes the
/// buckets of a deleted pool).
fn owner(pool: &NodePool) -> Option<OwnerReference> {
    let mut o = pool.controller_owner_ref(&())?;
    o.block_owner_deletion = Some(true);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<usize>) -> BTreeSet<String> {
        range.map(|i| format!("n{i:03}")).collect()
    }

    fn bucket(name: &str, nodes: &[&str]) -> Bucket {
        Bucket {
            name: name.into(),
            resource_version: "1".into(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_node_makes_one_bucket() {
        let p = plan(&names(0..1), &[], 100);
        assert_eq!(p.create, vec![vec!["n000".to_string()]]);
        assert!(p.update.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn buckets_never_exceed_the_limit() {
        let p = plan(&names(0..250), &[], 100);
        let sizes: Vec<usize> = p.create.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn members_stay_put_and_new_nodes_fill_the_closest_to_full_bucket() {
        let existing = [bucket("a", &["x1", "x2"]), bucket("b", &["y1", "y2", "y3"])];
        let desired: BTreeSet<String> = ["x1", "x2", "y1", "y2", "y3", "z1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = plan(&desired, &existing, 4);
        assert!(p.create.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].name, "b", "b ends exactly full");
        assert_eq!(p.update[0].nodes, vec!["y1", "y2", "y3", "z1"]);
    }

    #[test]
    fn leavers_are_removed_and_their_bucket_refilled_or_reused() {
        let existing = [bucket("a", &["x1", "x2"]), bucket("b", &["y1"])];
        let desired: BTreeSet<String> = ["x1", "z1"].iter().map(|s| s.to_string()).collect();
        let p = plan(&desired, &existing, 4);
        // `a` lost x2 and is rewritten anyway, so it takes z1; `b` is left empty and deleted.
        assert_eq!(
            p.update,
            vec![Bucket {
                nodes: vec!["x1".into(), "z1".into()],
                ..existing[0].clone()
            }]
        );
        assert_eq!(p.delete, vec![existing[1].clone()]);

        // An emptied bucket is reused instead of deleting one and creating another.
        let existing = [bucket("a", &["x1"])];
        let desired: BTreeSet<String> = ["z1"].iter().map(|s| s.to_string()).collect();
        let p = plan(&desired, &existing, 4);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update[0].nodes, vec!["z1"]);
    }

    #[test]
    fn nodes_arriving_in_batches_still_make_the_fewest_buckets() {
        // 60 nodes were planned first; 70 more arrive: the 60-bucket is filled up before a new
        // one is made.
        let first: Vec<String> = names(0..60).into_iter().collect();
        let refs: Vec<&str> = first.iter().map(String::as_str).collect();
        let existing = [bucket("a", &refs)];
        let p = plan(&names(0..130), &existing, 100);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].nodes.len(), 100);
        assert_eq!(p.update[0].nodes[..60], first[..]);
        let sizes: Vec<usize> = p.create.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![30]);
    }

    #[test]
    fn a_converged_pool_plans_nothing() {
        let existing = [bucket("a", &["n000", "n001"])];
        assert!(plan(&names(0..2), &existing, 2).is_empty());
    }
}
