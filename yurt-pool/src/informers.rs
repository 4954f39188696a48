//! Shared informers: one watch per resource type per process, fanned out to every controller.
//!
//! A controller asks [`Informers::subscribe`] for a type while it is being set up and gets the
//! type's reflector [`Store`] plus its own stream of changed objects. When every controller is
//! set up, [`Informers::start`] opens exactly one list+watch per subscribed type; each event is
//! applied to the store first and then handed to every subscriber, with backpressure (a slow
//! subscriber slows the watch rather than losing events). Unlike kube-runtime's own shared
//! reflector, deletions are handed on too, so a controller keyed by another object (a pool
//! counting its nodes) hears about a member that disappeared. After a (re)list, every object in
//! the store is handed on once, which is how controllers see the initial state; objects that
//! were in the store before a relist and are not after it (deleted while the watch was down)
//! are handed on as deletions.
//!
//! To keep the caches small, `metadata.managedFields` and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (often the largest parts of an
//! object, and read by no controller) are dropped before an object enters the store, and so are
//! a Node's `status.images`, `status.volumesInUse` and `status.volumesAttached` (kilobytes per
//! node in a real cluster; the controllers read a node's labels, annotations, taints and
//! conditions). Writes are merge patches of the fields a controller owns, so the slimmed copies
//! never reach the apiserver.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Annotation written by `kubectl apply`: a full copy of the applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from an object entering a cache (see the module docs).
fn slim<K: Resource + Any>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if let Some(status) = (obj as &mut dyn Any)
        .downcast_mut::<Node>()
        .and_then(|node| node.status.as_mut())
    {
        status.images = None;
        status.volumes_in_use = None;
        status.volumes_attached = None;
    }
}

/// How many changed objects may wait for a subscriber before the watch pauses.
const SUBSCRIBER_BUFFER: usize = 1024;

/// A resource type that can be watched through [`Informers`].
pub trait Watched:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

struct Informer<K: Watched> {
    writer: Option<reflector::store::Writer<K>>,
    reader: Store<K>,
    subscribers: Vec<mpsc::Sender<Arc<K>>>,
    /// Set once the first list is in the store. (kube-runtime's `Store::wait_until_ready`
    /// wakes only one of several concurrent waiters, so readiness is tracked here.)
    synced: watch::Sender<bool>,
}

trait ErasedInformer: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn start(&mut self, client: Client) -> Option<BoxFuture<'static, ()>>;
    fn type_name(&self) -> &'static str;
}

impl<K: Watched> ErasedInformer for Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<K>()
    }

    fn start(&mut self, client: Client) -> Option<BoxFuture<'static, ()>> {
        let writer = self.writer.take()?;
        let subscribers = std::mem::take(&mut self.subscribers);
        let reader = self.reader.clone();
        let synced = self.synced.clone();
        let api: Api<K> = Api::all(client);
        let kind = K::kind(&()).into_owned();
        Some(
            async move {
                let mut subscribers = subscribers;
                let mut events = std::pin::pin!(
                    watcher::watcher(api, watcher::Config::default())
                        .default_backoff()
                        .modify(slim::<K>)
                        .reflect(writer)
                );
                // The store's objects when a relist began (the store is replaced at its end).
                let mut before_relist: Vec<Arc<K>> = Vec::new();
                while let Some(event) = events.next().await {
                    let changed: Vec<Arc<K>> = match event {
                        Ok(Event::Apply(obj)) | Ok(Event::Delete(obj)) => vec![Arc::new(obj)],
                        Ok(Event::Init) => {
                            before_relist = reader.state();
                            Vec::new()
                        }
                        Ok(Event::InitDone) => {
                            synced.send_replace(true);
                            let mut changed = reader.state();
                            changed.extend(
                                std::mem::take(&mut before_relist).into_iter().filter(|old| {
                                    reader.get(&ObjectRef::from_obj(old.as_ref())).is_none()
                                }),
                            );
                            changed
                        }
                        Ok(Event::InitApply(_)) => Vec::new(),
                        Err(err) => {
                            tracing::warn!(%kind, error = %err, "watch failed; retrying with backoff");
                            Vec::new()
                        }
                    };
                    for obj in changed {
                        let mut live = Vec::with_capacity(subscribers.len());
                        for mut tx in subscribers.drain(..) {
                            if tx.send(obj.clone()).await.is_ok() {
                                live.push(tx);
                            }
                        }
                        subscribers = live;
                    }
                }
            }
            .boxed(),
        )
    }
}

/// The process-wide set of shared informers (see the module docs).
#[derive(Clone, Default)]
pub struct Informers {
    inner: Arc<Mutex<HashMap<TypeId, Box<dyn ErasedInformer>>>>,
}

impl Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<_> = inner.values().map(|i| i.type_name()).collect();
        names.sort_unstable();
        f.debug_struct("Informers").field("types", &names).finish()
    }
}

impl Informers {
    /// The store of `K` (shared by every subscriber; filled once the informers start) and a new
    /// stream of `K` objects that changed or were deleted. Subscribe before [`Informers::start`];
    /// a stream taken later sees nothing.
    pub fn subscribe<K: Watched>(&self) -> (Store<K>, impl Stream<Item = Arc<K>> + Send + 'static) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = inner.entry(TypeId::of::<K>()).or_insert_with(|| {
            let writer = reflector::store::Writer::<K>::default();
            let reader = writer.as_reader();
            Box::new(Informer {
                writer: Some(writer),
                reader,
                subscribers: Vec::new(),
                synced: watch::Sender::new(false),
            })
        });
        let informer = slot
            .as_any_mut()
            .downcast_mut::<Informer<K>>()
            .expect("informer slots are keyed by their type");
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        informer.subscribers.push(tx);
        (informer.reader.clone(), rx)
    }

    /// The store of `K` without a change stream (for controllers that only read `K`).
    pub fn store<K: Watched>(&self) -> Store<K> {
        let (store, _changes) = self.subscribe::<K>();
        store
    }

    /// Waits up to `limit` for the first list of `K` to be in its store; `false` on timeout or
    /// when nothing subscribed to `K`.
    pub async fn wait_synced<K: Watched>(&self, limit: Duration) -> bool {
        let rx = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let Some(slot) = inner.get_mut(&TypeId::of::<K>()) else {
                return false;
            };
            match slot.as_any_mut().downcast_mut::<Informer<K>>() {
                Some(informer) => informer.synced.subscribe(),
                None => return false,
            }
        };
        let mut rx = rx;
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }

    /// One future per subscribed type that lists and watches it until dropped. Types already
    /// started are skipped, so calling this twice opens no second watch.
    pub fn start(&self, client: &Client) -> Vec<BoxFuture<'static, ()>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .values_mut()
            .filter_map(|informer| informer.start(client.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cached_objects_lose_what_no_controller_reads() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"apps.openyurt.io/nodepool": "hz"},
                "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"taints": [{"key": "edge", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry/image:1"], "sizeBytes": 1}],
                "volumesInUse": ["v"], "volumesAttached": [{"name": "v", "devicePath": "/d"}]}
        }))
        .unwrap();
        slim(&mut node);
        assert_eq!(
            serde_json::to_value(&node).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"apps.openyurt.io/nodepool": "hz"},
                    "annotations": {"keep": "me"}},
                "spec": {"taints": [{"key": "edge", "effect": "NoSchedule"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            })
        );
    }
}
