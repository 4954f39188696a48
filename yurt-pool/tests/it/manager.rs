//! The manager's runtime: controller selection, one watch per resource type, controllers
//! skipped when their CRD is missing, an unreachable apiserver, and no reconciles when idle.

use std::time::Duration;

use serde_json::json;
use yurt_core::wellknown::node::NODEPOOL_LABEL;
use yurt_pool::{Error, Manager, Phase};
use yurt_testkit::TestApiServer;

use crate::support::*;

#[tokio::test]
async fn unknown_controller_names_are_rejected_and_aliases_accepted() {
    let s = TestApiServer::start().await.unwrap();
    let err = Manager::builder(s.client())
        .controllers(&["*", "-nodepol"])
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::UnknownController(_)));
    assert!(err.to_string().contains("\"nodepol\""), "{err}");

    let m = Manager::builder(s.client())
        .controllers(&["nodepool"])
        .build()
        .unwrap();
    assert_eq!(m.enabled(), vec!["nodepool-controller"]);
    let m = Manager::builder(s.client())
        .controllers(&["*", "-nodepool-controller", "-nodebucket"])
        .build()
        .unwrap();
    assert!(!m.enabled().contains(&"nodepool-controller"));
    assert!(!m.enabled().contains(&"node-bucket-controller"));
    assert!(m.enabled().contains(&"csr-approver-controller"));
}

#[tokio::test]
async fn each_resource_is_watched_once_however_many_controllers_use_it() {
    let s = server_with_crds().await;
    create_pool(&s, "p", json!({"labels": {"zone": "a"}})).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "p"}), true).await;
    let m = Running::all(&s);
    eventually("node synced", || async {
        node(&s, "n1")
            .await
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("zone")
            .then_some(())
    })
    .await;
    let traffic = s.traffic();
    let watches = |resource: &str| {
        traffic
            .records
            .iter()
            .filter(|r| r.watch && r.resource == resource)
            .count()
    };
    // The status, attribute-sync and bucket controllers all use nodes and nodepools.
    assert_eq!(watches("nodes"), 1);
    assert_eq!(watches("nodepools"), 1);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn a_controller_whose_crd_is_missing_is_skipped() {
    let s = TestApiServer::start().await.unwrap();
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "p"}), true).await;
    let mut m = Running::all(&s);
    m.wait_phase(Phase::Running).await;
    // The manager keeps running, and nothing watches for the missing resource.
    assert!(
        s.traffic()
            .records
            .iter()
            .all(|r| !r.path.contains("nodepools")),
        "{:?}",
        s.traffic()
            .records
            .iter()
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );
    assert_eq!(m.ctx.metrics.reconcile_count("nodepool-controller"), 0);
    m.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_apiserver_is_an_error() {
    let s = TestApiServer::start().await.unwrap();
    let client = s.client();
    s.go_down().await;
    let m = Manager::builder(client).build().unwrap();
    let err = bounded(m.run(std::future::pending())).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn a_converged_cluster_causes_no_reconciles_and_no_writes() {
    let s = server_with_crds().await;
    for p in 0..3 {
        create_pool(
            &s,
            &format!("p{p}"),
            json!({"labels": {"pool": format!("p{p}")}}),
        )
        .await;
    }
    for n in 0..9 {
        create_node(
            &s,
            &format!("n{n}"),
            json!({NODEPOOL_LABEL: format!("p{}", n % 3)}),
            n % 2 == 0,
        )
        .await;
    }
    let m = Running::all(&s);
    for p in 0..3 {
        eventually("pools converged", || async {
            let pool = pool(&s, &format!("p{p}")).await;
            (pool.status.unwrap_or_default().nodes.len() == 3).then_some(())
        })
        .await;
    }
    for n in 0..9 {
        eventually("nodes converged", || async {
            let node = node(&s, &format!("n{n}")).await;
            node.metadata
                .labels
                .unwrap_or_default()
                .contains_key("pool")
                .then_some(())
        })
        .await;
    }
    // Let the last events of our own writes come back and settle: counts stop moving.
    let metrics = m.ctx.metrics.clone();
    let total = |m: &yurt_pool::Metrics| {
        m.reconcile_count("nodepool-controller") + m.reconcile_count("node-bucket-controller")
    };
    let mut last = total(&metrics);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = total(&metrics);
        if now == last {
            break;
        }
        last = now;
    }
    let errors =
        metrics.error_count("nodepool-controller") + metrics.error_count("node-bucket-controller");
    s.reset_traffic();
    // Idle for 30 s (watch bookmarks keep arriving meanwhile).
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(metrics.reconcile_count("node-bucket-controller") > 0);
    assert_eq!(total(&metrics), last);
    let writes: Vec<_> = s
        .traffic()
        .records
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(
        metrics.error_count("nodepool-controller") + metrics.error_count("node-bucket-controller"),
        errors
    );
    m.stop().await.unwrap();
}
