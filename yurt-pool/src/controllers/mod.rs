//! The controllers a [`Manager`](crate::Manager) can run, and the plumbing they share: metrics
//! around every reconcile and per-object exponential requeue after errors.
//!
//! Each controller module exposes a `setup` function that subscribes to the shared informers
//! and returns the future that drives its kube-runtime `Controller`s. Its triggers pass through
//! a work-queue count (`workqueue_depth`), and the pool-keyed controllers coalesce bursts of
//! member changes (see the `queue` module). A controller whose custom
//! resource is not installed is skipped by the manager before `setup` is called.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::Resource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::informers::Watched;
use crate::metrics::{ControllerLabel, ResultLabels};
use crate::names;

pub mod csrapprover;
pub mod nodebucket;
pub mod nodepool;
pub(crate) mod queue;
pub mod servicetopology;

use queue::WorkQueue;

/// A custom resource a controller needs; the controller is skipped when it is not served.
#[derive(Clone, Copy, Debug)]
pub struct RequiredResource {
    /// `group/version`, such as `apps.openyurt.io/v1beta2`.
    pub group_version: &'static str,
    /// Plural resource name, such as `nodepools`.
    pub plural: &'static str,
}

/// A controller the manager knows.
#[derive(Clone, Copy)]
pub struct ControllerDef {
    /// Canonical (upstream) name.
    pub name: &'static str,
    /// Custom resources that must be served for it to run.
    pub requires: &'static [RequiredResource],
    /// Whether `*` leaves it off.
    pub disabled_by_default: bool,
    /// Subscribes to the informers and returns the controller's driving future.
    pub setup: fn(&Arc<Context>) -> BoxFuture<'static, ()>,
}

impl std::fmt::Debug for ControllerDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerDef")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish_non_exhaustive()
    }
}

const NODEPOOLS: RequiredResource = RequiredResource {
    group_version: "apps.openyurt.io/v1beta2",
    plural: "nodepools",
};

const NODEBUCKETS: RequiredResource = RequiredResource {
    group_version: "apps.openyurt.io/v1alpha1",
    plural: "nodebuckets",
};

/// Every controller of this crate, in the order they are started.
pub fn all() -> Vec<ControllerDef> {
    vec![
        ControllerDef {
            name: names::NODEPOOL,
            requires: &[NODEPOOLS],
            disabled_by_default: false,
            setup: nodepool::setup,
        },
        ControllerDef {
            name: names::NODE_BUCKET,
            requires: &[NODEPOOLS, NODEBUCKETS],
            disabled_by_default: false,
            setup: nodebucket::setup,
        },
        ControllerDef {
            name: names::CSR_APPROVER,
            requires: &[],
            disabled_by_default: false,
            setup: csrapprover::setup,
        },
        ControllerDef {
            name: names::SERVICE_TOPOLOGY_ENDPOINTS,
            requires: &[],
            disabled_by_default: false,
            setup: servicetopology::setup_endpoints,
        },
        ControllerDef {
            name: names::SERVICE_TOPOLOGY_ENDPOINTSLICE,
            requires: &[],
            disabled_by_default: false,
            setup: servicetopology::setup_endpointslices,
        },
    ]
}

/// Errors a reconcile can end with; each leads to an exponential requeue of the object.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The apiserver refused or failed a request (including resourceVersion conflicts).
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// A shared cache has not finished its first list yet.
    #[error("cache of {0} not synced yet")]
    NotSynced(&'static str),
    /// Building a request body failed.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whether `result` failed with 409 Conflict: the object changed since the version the write
/// was based on. The watch event of that change triggers another reconcile, so a controller
/// waits for it instead of retrying from the stale version it has.
pub(crate) fn is_conflict<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.is_conflict())
}

/// Runs `controller` with `reconcile`, counting every reconcile in the metrics under `name`,
/// requeueing failed objects with per-object exponential backoff and forgetting the backoff
/// after a success. `queue` is the controller's work-queue count: an object leaves it when its
/// reconcile starts and goes back when it is requeued. The returned future ends only when the
/// controller's streams end.
pub(crate) fn drive<K, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    ctx: Arc<Context>,
    queue: WorkQueue,
    reconcile: F,
) -> BoxFuture<'static, ()>
where
    K: Watched + Unpin,
    K::DynamicType: std::fmt::Debug + Unpin + Eq + std::hash::Hash + Clone,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let error_queue = queue.clone();
    let wrapped = move |obj: Arc<K>, ctx: Arc<Context>| {
        let reconcile = reconcile.clone();
        let queue = queue.clone();
        async move {
            let obj_ref = ObjectRef::from_obj(obj.as_ref());
            queue.remove(&obj_ref);
            let label = ControllerLabel {
                controller: name.to_owned(),
            };
            let key = object_key(name, obj.as_ref());
            let active = ctx.metrics.active.get_or_create(&label).clone();
            active.inc();
            let result = reconcile(obj, ctx.clone()).await;
            active.dec();
            let outcome = match &result {
                Ok(action) => {
                    if *action != Action::await_change() {
                        queue.add(&obj_ref);
                    }
                    ctx.forget_failures(&key);
                    "success"
                }
                Err(err) => {
                    tracing::debug!(controller = name, object = %key, error = %err, "reconcile failed");
                    ctx.metrics.errors.get_or_create(&label).inc();
                    "error"
                }
            };
            ctx.metrics
                .reconciles
                .get_or_create(&ResultLabels {
                    controller: name.to_owned(),
                    result: outcome.to_owned(),
                })
                .inc();
            result
        }
    };
    let error_policy = move |obj: Arc<K>, err: &ReconcileError, ctx: Arc<Context>| {
        let key = object_key(name, obj.as_ref());
        let delay = ctx.next_backoff(&key);
        error_queue.add(&ObjectRef::from_obj(obj.as_ref()));
        tracing::info!(controller = name, object = %key, error = %err, ?delay, "requeueing after error");
        Action::requeue(delay)
    };
    controller
        .run(wrapped, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

fn object_key<K: Resource<DynamicType = ()>>(controller: &str, obj: &K) -> String {
    let r = ObjectRef::from_obj(obj);
    match &r.namespace {
        Some(ns) => format!("{controller}/{ns}/{}", r.name),
        None => format!("{controller}/{}", r.name),
    }
}
