//! `service-topology-endpoints-controller` and `service-topology-endpointslice-controller`:
//! when a Service's `openyurt.io/topologyKeys` annotation changes, its Endpoints (or its
//! EndpointSlices) are re-delivered to every watcher.
//!
//! YurtHub's service-topology filter drops endpoints outside the node's pool or zone as it
//! serves Endpoints/EndpointSlices, based on the Service's annotation. Changing the annotation
//! changes nothing in the endpoint objects themselves, so hubs would keep serving the old view.
//! These controllers write the annotation `openyurt.io/update-trigger: <unix seconds>` on the
//! Service's Endpoints (same name) or on every EndpointSlice labelled
//! `kubernetes.io/service-name=<service>`, which makes the apiserver send a fresh event that the
//! hubs filter again.
//!
//! Only a *change* triggers: the first time a Service is seen (at start-up) its annotation is
//! just remembered, so restarting the manager rewrites nothing. The written value always moves
//! forward (at least one past the object's current value), so two changes within one second
//! still make two events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use yurt_core::wellknown::service::{TOPOLOGY_KEYS_ANNOTATION, UPDATE_TRIGGER_ANNOTATION};

use super::queue::WorkQueue;
use super::{ReconcileError, drive};
use crate::context::Context;
use crate::names::{SERVICE_TOPOLOGY_ENDPOINTS, SERVICE_TOPOLOGY_ENDPOINTSLICE};

/// Label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Passes on only Services whose topology annotation differs from the last value seen (a
/// Service seen for the first time is remembered, not passed on; a deleted one is forgotten).
pub fn topology_changes(
    services: impl Stream<Item = Arc<Service>> + Send + 'static,
    store: kube::runtime::reflector::Store<Service>,
) -> impl Stream<Item = Arc<Service>> + Send + 'static {
    let seen: Arc<Mutex<HashMap<ObjectRef<Service>, Option<String>>>> = Arc::default();
    services.filter(move |svc| {
        let key = ObjectRef::from_obj(svc.as_ref());
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let pass = if store.get(&key).is_none() {
            seen.remove(&key);
            false
        } else {
            let now = svc.annotations().get(TOPOLOGY_KEYS_ANNOTATION).cloned();
            match seen.insert(key, now.clone()) {
                Some(before) => before != now,
                None => false,
            }
        };
        futures::future::ready(pass)
    })
}

/// The trigger value to write over `current`: now in unix seconds, or one past `current` if
/// that is not older.
pub fn next_trigger(current: Option<&str>, now_secs: i64) -> String {
    let current = current
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    now_secs.max(current.saturating_add(1)).to_string()
}

fn now_secs() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn trigger_patch<K: Resource>(obj: &K) -> serde_json::Value {
    let current = obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(UPDATE_TRIGGER_ANNOTATION));
    json!({"metadata": {
        "resourceVersion": obj.meta().resource_version,
        "annotations": {UPDATE_TRIGGER_ANNOTATION: next_trigger(current.map(String::as_str), now_secs())},
    }})
}

/// The Endpoints variant.
pub fn setup_endpoints(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let (services, changes) = ctx.informers.subscribe::<Service>();
    let queue = WorkQueue::new(ctx, SERVICE_TOPOLOGY_ENDPOINTS);
    let changes = queue.track_changes(
        topology_changes(changes, services.clone()),
        services.clone(),
    );
    let controller = Controller::for_shared_stream(changes, services);
    drive(
        SERVICE_TOPOLOGY_ENDPOINTS,
        controller,
        ctx.clone(),
        queue,
        reconcile_endpoints,
    )
}

/// The EndpointSlice variant.
pub fn setup_endpointslices(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let (services, changes) = ctx.informers.subscribe::<Service>();
    let queue = WorkQueue::new(ctx, SERVICE_TOPOLOGY_ENDPOINTSLICE);
    let changes = queue.track_changes(
        topology_changes(changes, services.clone()),
        services.clone(),
    );
    let controller = Controller::for_shared_stream(changes, services);
    drive(
        SERVICE_TOPOLOGY_ENDPOINTSLICE,
        controller,
        ctx.clone(),
        queue,
        reconcile_endpointslices,
    )
}

async fn reconcile_endpoints(
    svc: Arc<Service>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(ep) = api.get_opt(&svc.name_any()).await? {
        api.patch(
            &svc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(trigger_patch(&ep)),
        )
        .await?;
    }
    Ok(Action::await_change())
}

async fn reconcile_endpointslices(
    svc: Arc<Service>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", svc.name_any()));
    for slice in api.list(&lp).await?.items {
        api.patch(
            &slice.name_any(),
            &PatchParams::default(),
            &Patch::Merge(trigger_patch(&slice)),
        )
        .await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_always_moves_forward() {
        assert_eq!(next_trigger(None, 100), "100");
        assert_eq!(next_trigger(Some("50"), 100), "100");
        assert_eq!(next_trigger(Some("100"), 100), "101");
        assert_eq!(next_trigger(Some("junk"), 100), "100");
    }
}
