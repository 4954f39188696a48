//! How many apiserver writes the pool controllers make, counted by the test apiserver's traffic
//! accounting (successes and 409 Conflicts apart): start-up writes exactly what the cluster
//! needs, a node moving between pools costs one node write plus one status and one bucket
//! write per pool it touches, and no write is refused for a stale resourceVersion. Also the
//! `workqueue_depth` metric: it counts pools waiting to be reconciled and drains to zero.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use serde_json::json;
use yurt_core::crd::{NodeBucket, NodePool};
use yurt_core::wellknown::node::NODEPOOL_LABEL;
use yurt_core::wellknown::pool::POOL_NAME_LABEL;
use yurt_pool::Manager;
use yurt_pool::metrics::ControllerLabel;
use yurt_pool::names::{NODE_BUCKET, NODEPOOL};
use yurt_testkit::TestApiServer;

use crate::support::*;

const AGENT: &str = "yurt-manager-writes-test";
const POOLS: usize = 4;
const PER_POOL: usize = 10;

/// A client identifying as [`AGENT`], so the manager's requests can be told apart.
fn manager_client(s: &TestApiServer) -> kube::Client {
    let mut config = s.client_config().expect("client config");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(AGENT),
    ));
    kube::Client::try_from(config).expect("client")
}

/// The manager's write requests since the last traffic reset: (succeeded, 409 Conflict, other).
fn writes(s: &TestApiServer) -> (usize, usize, usize) {
    let mut out = (0, 0, 0);
    for r in s
        .traffic()
        .records
        .iter()
        .filter(|r| r.user_agent.starts_with(AGENT))
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
    {
        match r.status {
            200..=299 => out.0 += 1,
            409 => out.1 += 1,
            _ => out.2 += 1,
        }
    }
    out
}

/// Whether every pool's status, bucket and member labels match `membership` (node -> pool).
async fn converged(s: &TestApiServer, membership: &BTreeMap<String, String>) -> bool {
    let pools: Api<NodePool> = Api::all(s.client());
    let buckets: Api<NodeBucket> = Api::all(s.client());
    let nodes: Api<Node> = Api::all(s.client());
    let (Ok(pools), Ok(buckets), Ok(nodes)) = (
        pools.list(&ListParams::default()).await,
        buckets.list(&ListParams::default()).await,
        nodes.list(&ListParams::default()).await,
    ) else {
        return false;
    };
    let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (node, pool) in membership {
        want.entry(pool).or_default().push(node.clone());
    }
    let statuses_right = pools.items.iter().all(|p| {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        let st = p.status.clone().unwrap_or_default();
        let expect = want.get(name).cloned().unwrap_or_default();
        st.nodes == expect && st.ready_node_num == Some(expect.len() as i32)
    });
    let mut in_buckets = BTreeMap::new();
    for b in &buckets.items {
        let pool = b.metadata.labels.clone().unwrap_or_default()[POOL_NAME_LABEL].clone();
        for n in b.node_names() {
            in_buckets.insert(n.to_owned(), pool.clone());
        }
    }
    let labels_right = nodes.items.iter().all(|n| {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        labels.get("zone")
            == labels
                .get(NODEPOOL_LABEL)
                .map(|p| format!("zone-{p}"))
                .as_ref()
    });
    statuses_right && labels_right && &in_buckets == membership
}

/// Waits until the cluster matches `membership` and the manager has nothing left to do: no
/// pool or node waiting in a work queue, no reconcile running, and the reconcile count
/// unchanged across two samples.
async fn settle(s: &TestApiServer, m: &Running, membership: &BTreeMap<String, String>) {
    eventually("converged", || async {
        converged(s, membership).await.then_some(())
    })
    .await;
    let metrics = &m.ctx.metrics;
    let total = || {
        [NODEPOOL, NODE_BUCKET]
            .iter()
            .map(|c| metrics.reconcile_count(c))
            .sum::<u64>()
    };
    let mut last = total();
    eventually("manager idle", || {
        let idle = [NODEPOOL, NODE_BUCKET].iter().all(|c| {
            metrics.queue_depth(c) == 0
                && metrics
                    .active
                    .get_or_create(&ControllerLabel {
                        controller: (*c).to_owned(),
                    })
                    .get()
                    == 0
        });
        let now = total();
        let stable = now == last;
        last = now;
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (idle && stable).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn start_up_and_a_pool_move_write_only_what_is_needed() {
    let s = server_with_crds().await;
    let mut membership = BTreeMap::new();
    for p in 0..POOLS {
        let pool = format!("p{p}");
        create_pool(
            &s,
            &pool,
            json!({"labels": {"zone": format!("zone-{pool}")}}),
        )
        .await;
        for i in 0..PER_POOL {
            let node = format!("n{p}{i}");
            create_node(&s, &node, json!({NODEPOOL_LABEL: pool}), true).await;
            membership.insert(node, pool.clone());
        }
    }

    s.reset_traffic();
    let m = Running::start(Manager::builder(manager_client(&s)));
    settle(&s, &m, &membership).await;
    // One attribute patch per node, one status write and one bucket per pool.
    assert_eq!(writes(&s), (POOLS * PER_POOL + 2 * POOLS, 0, 0));

    s.reset_traffic();
    label_node(&s, "n00", json!({NODEPOOL_LABEL: "p1"})).await;
    membership.insert("n00".into(), "p1".into());
    settle(&s, &m, &membership).await;
    // The node's attributes, and each of the two pools' status and bucket.
    assert_eq!(writes(&s), (1 + 2 + 2, 0, 0));
    m.stop().await.unwrap();
}

#[tokio::test]
async fn workqueue_depth_counts_waiting_pools_and_drains() {
    let s = server_with_crds().await;
    create_pool(&s, "a", json!({})).await;
    create_pool(&s, "b", json!({})).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "a"}), true).await;
    create_node(&s, "n2", json!({NODEPOOL_LABEL: "a"}), true).await;
    let m = Running::all(&s);
    let metrics = m.ctx.metrics.clone();
    eventually("statuses", || async {
        let st = pool(&s, "a").await.status.unwrap_or_default();
        (st.nodes == ["n1", "n2"]).then_some(())
    })
    .await;
    eventually("queues drained", || async {
        (metrics.queue_depth(NODEPOOL) == 0 && metrics.queue_depth(NODE_BUCKET) == 0).then_some(())
    })
    .await;

    // A node moving from a to b: both pools wait (their triggers are coalesced) before they
    // are reconciled, in the status queue and in the bucket queue.
    label_node(&s, "n1", json!({NODEPOOL_LABEL: "b"})).await;
    eventually("both pools queued", || async {
        (metrics.queue_depth(NODEPOOL) == 2 && metrics.queue_depth(NODE_BUCKET) == 2).then_some(())
    })
    .await;
    assert!(
        metrics
            .encode()
            .contains("workqueue_depth{name=\"nodepool-controller\"}"),
        "exposed under controller-runtime's name"
    );
    eventually("queues drained again", || async {
        (metrics.queue_depth(NODEPOOL) == 0 && metrics.queue_depth(NODE_BUCKET) == 0).then_some(())
    })
    .await;
    let st = pool(&s, "b").await.status.unwrap_or_default();
    assert_eq!(st.nodes, ["n1"]);
    m.stop().await.unwrap();
}
