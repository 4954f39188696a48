//! Leader election on the test apiserver: one leader, conflicts lose, release hands over at
//! once, a leader that cannot renew stops before its Lease can expire, and managers fail over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use yurt_core::wellknown::node::NODEPOOL_LABEL;
use yurt_pool::{LeaderElector, LeaseConfig, Manager, Phase};
use yurt_testkit::TestApiServer;

use crate::support::*;

/// Short timings (same ratios as upstream's 15/10/2 s) so the tests are quick.
fn quick(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(3000),
        renew_deadline: Duration::from_millis(2000),
        retry_period: Duration::from_millis(400),
        ..LeaseConfig::new("kube-system", "yurt-manager", identity)
    }
}

async fn holder(s: &TestApiServer) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(s.client(), "kube-system");
    bounded(leases.get("yurt-manager"))
        .await
        .unwrap()
        .spec
        .and_then(|sp| sp.holder_identity)
}

#[tokio::test]
async fn one_candidate_leads_and_release_hands_over() {
    let s = TestApiServer::start().await.unwrap();
    let mut a = LeaderElector::new(
        s.client(),
        LeaseConfig::new("kube-system", "yurt-manager", "a"),
    );
    let mut b = LeaderElector::new(
        s.client(),
        LeaseConfig::new("kube-system", "yurt-manager", "b"),
    );
    assert!(bounded(a.try_acquire_or_renew()).await.unwrap());
    assert!(!bounded(b.try_acquire_or_renew()).await.unwrap());
    // Renewing keeps the lease; the standby still cannot take it.
    assert!(bounded(a.try_acquire_or_renew()).await.unwrap());
    assert!(!bounded(b.try_acquire_or_renew()).await.unwrap());
    assert_eq!(holder(&s).await.as_deref(), Some("a"));

    bounded(a.release()).await.unwrap();
    assert_eq!(holder(&s).await, None);
    assert!(bounded(b.try_acquire_or_renew()).await.unwrap());
    let leases: Api<Lease> = Api::namespaced(s.client(), "kube-system");
    let spec = bounded(leases.get("yurt-manager"))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert!(!bounded(a.try_acquire_or_renew()).await.unwrap());
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let s = TestApiServer::start().await.unwrap();
    let config = quick("a");
    let lease_duration = config.lease_duration;
    let mut a = LeaderElector::new(s.client(), config);
    bounded(a.acquire()).await;
    s.blackhole();
    let lost = bounded(a.hold()).await;
    let stepped_down = tokio::time::Instant::now();
    assert_eq!(lost.name, "yurt-manager");
    assert!(!a.is_leader());
    let renewed = a.last_renewed().expect("renewed at least once");
    assert!(
        stepped_down < renewed + lease_duration,
        "stepped down {:?} after the last renewal; the lease lasts {lease_duration:?}",
        stepped_down - renewed
    );
    s.heal();
}

#[tokio::test]
async fn a_standby_manager_takes_over_when_the_leader_goes() {
    let s = server_with_crds().await;
    create_pool(&s, "p", json!({})).await;
    create_node(&s, "n1", json!({NODEPOOL_LABEL: "p"}), true).await;
    let mut a = Running::start(Manager::builder(s.client()).leader_election(quick("a")));
    a.wait_phase(Phase::Running).await;
    let mut b = Running::start(Manager::builder(s.client()).leader_election(quick("b")));
    eventually("pool status", || async {
        (pool(&s, "p").await.status.unwrap_or_default().nodes == vec!["n1".to_string()])
            .then_some(())
    })
    .await;
    // The standby stays a standby while the leader renews.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(*b.phase.borrow(), Phase::Standby);
    assert_eq!(b.ctx.metrics.reconcile_count("nodepool-controller"), 0);

    // A graceful stop releases the Lease; the standby leads and reconciles.
    a.stop().await.unwrap();
    b.wait_phase(Phase::Running).await;
    assert_eq!(holder(&s).await.as_deref(), Some("b"));
    create_node(&s, "n2", json!({NODEPOOL_LABEL: "p"}), true).await;
    eventually("standby reconciles", || async {
        (pool(&s, "p").await.status.unwrap_or_default().nodes.len() == 2).then_some(())
    })
    .await;

    // A killed leader (no release) is replaced once its Lease expires.
    let mut c = Running::start(Manager::builder(s.client()).leader_election(quick("c")));
    b.kill();
    c.wait_phase(Phase::Running).await;
    assert_eq!(holder(&s).await.as_deref(), Some("c"));
    c.stop().await.unwrap();
}
