//! `service-topology-endpoints/-endpointslice-controller`: a change of a Service's
//! `openyurt.io/topologyKeys` re-delivers its Endpoints and EndpointSlices (annotation
//! `openyurt.io/update-trigger`); start-up and unrelated changes write nothing.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use yurt_core::wellknown::service::{TOPOLOGY_KEYS_ANNOTATION, UPDATE_TRIGGER_ANNOTATION};
use yurt_pool::Manager;
use yurt_testkit::TestApiServer;

use crate::support::*;

async fn create<K>(s: &TestApiServer, obj: Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(s.client(), "default");
    let obj: K = serde_json::from_value(obj).unwrap();
    bounded(api.create(&PostParams::default(), &obj))
        .await
        .expect("create");
}

fn trigger<K: Resource>(obj: &K) -> Option<String> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(UPDATE_TRIGGER_ANNOTATION).cloned())
}

async fn annotate_service(s: &TestApiServer, annotations: Value) {
    let api: Api<Service> = Api::namespaced(s.client(), "default");
    bounded(api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn topology_changes_redeliver_endpoints_and_slices() {
    let s = TestApiServer::start().await.unwrap();
    create::<Service>(
        &s,
        json!({"metadata": {"name": "web",
        "annotations": {TOPOLOGY_KEYS_ANNOTATION: "kubernetes.io/hostname"}},
        "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create::<Endpoints>(&s, json!({"metadata": {"name": "web"}})).await;
    for (name, svc) in [("web-a", "web"), ("web-b", "web"), ("other-a", "other")] {
        create::<EndpointSlice>(&s, json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/service-name": svc}}, "addressType": "IPv4", "endpoints": []}))
        .await;
    }
    let m = Running::start(
        Manager::builder(s.client())
            .controllers(&["servicetopologyendpoints", "servicetopologyendpointslices"]),
    );
    let services = m.ctx.informers.store::<Service>();
    assert!(
        m.ctx
            .informers
            .wait_synced::<Service>(std::time::Duration::from_secs(20))
            .await
    );
    let eps: Api<Endpoints> = Api::namespaced(s.client(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(s.client(), "default");

    // Change the topology: Endpoints and both of web's slices get a trigger.
    annotate_service(
        &s,
        json!({TOPOLOGY_KEYS_ANNOTATION: "openyurt.io/nodepool"}),
    )
    .await;
    let first = eventually("endpoints triggered", || async {
        trigger(&bounded(eps.get("web")).await.unwrap())
    })
    .await;
    for name in ["web-a", "web-b"] {
        eventually(&format!("{name} triggered"), || async {
            trigger(&bounded(slices.get(name)).await.unwrap())
        })
        .await;
    }
    assert_eq!(
        trigger(&bounded(slices.get("other-a")).await.unwrap()),
        None
    );

    // An unrelated annotation is ignored; the next topology change moves the trigger on.
    annotate_service(&s, json!({"unrelated": "x"})).await;
    annotate_service(&s, json!({TOPOLOGY_KEYS_ANNOTATION: "kubernetes.io/zone"})).await;
    let second = eventually("endpoints triggered again", || async {
        let t = trigger(&bounded(eps.get("web")).await.unwrap())?;
        (t != first).then_some(t)
    })
    .await;
    assert!(second.parse::<i64>().unwrap() > first.parse::<i64>().unwrap());
    assert_eq!(
        m.ctx
            .metrics
            .reconcile_count("service-topology-endpoints-controller"),
        2,
        "one reconcile per topology change; start-up and unrelated changes cause none"
    );
    let svc = services
        .get(&kube::runtime::reflector::ObjectRef::new("web").within("default"))
        .unwrap();
    assert_eq!(svc.name_any(), "web");
    m.stop().await.unwrap();
}
