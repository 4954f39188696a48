//! `node-bucket-controller`: pool membership split into NodeBuckets of bounded size, at 1 and
//! 250 nodes, following joins and leaves without duplicates.

use std::collections::BTreeSet;

use kube::api::{Api, ListParams};
use serde_json::json;
use yurt_core::crd::NodeBucket;
use yurt_core::wellknown::node::NODEPOOL_LABEL;
use yurt_core::wellknown::pool::POOL_NAME_LABEL;
use yurt_pool::{Manager, ManagerConfig};
use yurt_testkit::TestApiServer;

use crate::support::*;

async fn buckets(s: &TestApiServer, pool: &str) -> Vec<NodeBucket> {
    let api: Api<NodeBucket> = Api::all(s.client());
    let lp = ListParams::default().labels(&format!("{POOL_NAME_LABEL}={pool}"));
    bounded(api.list(&lp)).await.unwrap().items
}

/// Waits until the pool's buckets hold exactly `want`, each listed once, and returns them.
async fn wait_members(s: &TestApiServer, pool: &str, want: &BTreeSet<String>) -> Vec<NodeBucket> {
    eventually(
        &format!("buckets of {pool} hold {} nodes", want.len()),
        || async {
            let bs = buckets(s, pool).await;
            let listed: Vec<String> = bs
                .iter()
                .flat_map(|b| b.node_names().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            let set: BTreeSet<String> = listed.iter().cloned().collect();
            (listed.len() == set.len() && &set == want).then_some(bs)
        },
    )
    .await
}

fn manager(s: &TestApiServer, max: usize) -> Running {
    Running::start(
        Manager::builder(s.client())
            .controllers(&["nodebucket"])
            .config(ManagerConfig {
                max_nodes_per_bucket: max,
                ..Default::default()
            }),
    )
}

#[tokio::test]
async fn one_node_gets_one_bucket_owned_by_its_pool() {
    let s = server_with_crds().await;
    create_pool(&s, "hz", json!({})).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "hz"}), true).await;
    create_node(&s, "elsewhere", json!({NODEPOOL_LABEL: "bj"}), true).await;
    let m = manager(&s, 100);
    let want: BTreeSet<String> = ["n1".to_string()].into();
    let bs = wait_members(&s, "hz", &want).await;
    assert_eq!(bs.len(), 1);
    let b = &bs[0];
    assert!(b.metadata.name.as_deref().unwrap().starts_with("hz-"));
    assert_eq!(b.spec.num_nodes, 1);
    let owner = &b.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("NodePool", "hz")
    );
    assert_eq!(owner.controller, Some(true));
    // A pool that does not exist gets no buckets.
    assert!(buckets(&s, "bj").await.is_empty());

    // The last member leaving deletes the bucket.
    label_node(&s, "n1", json!({NODEPOOL_LABEL: null})).await;
    eventually("bucket deleted", || async {
        buckets(&s, "hz").await.is_empty().then_some(())
    })
    .await;
    m.stop().await.unwrap();
}

#[tokio::test]
async fn two_hundred_fifty_nodes_fill_buckets_of_at_most_100() {
    let s = server_with_crds().await;
    create_pool(&s, "big", json!({})).await;
    let m = manager(&s, 100);
    let mut want = BTreeSet::new();
    // Nodes arrive while the controller runs, so buckets are planned many times over.
    for i in 0..250 {
        let name = format!("n{i:03}");
        create_node(&s, &name, json!({NODEPOOL_LABEL: "big"}), true).await;
        want.insert(name);
    }
    let bs = wait_members(&s, "big", &want).await;
    let mut sizes: Vec<i32> = bs.iter().map(|b| b.spec.num_nodes).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![50, 100, 100],
        "fewest buckets, none over the limit"
    );
    for b in &bs {
        assert_eq!(b.spec.num_nodes as usize, b.spec.nodes.len());
    }

    // Ten nodes leave and five join: the leavers' buckets are refilled, no bucket is added.
    for i in 0..10 {
        let name = format!("n{:03}", i * 20);
        label_node(&s, &name, json!({NODEPOOL_LABEL: null})).await;
        want.remove(&name);
    }
    for i in 250..255 {
        let name = format!("n{i:03}");
        create_node(&s, &name, json!({NODEPOOL_LABEL: "big"}), true).await;
        want.insert(name);
    }
    let bs = wait_members(&s, "big", &want).await;
    assert_eq!(bs.len(), 3);
    assert!(bs.iter().all(|b| b.spec.num_nodes <= 100));
    m.stop().await.unwrap();
}
