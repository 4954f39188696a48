//! Object storage with etcd's revision model: every write takes the next value of one global,
//! monotonic counter (the `resourceVersion`), each resource keeps a bounded history of its
//! changes for watches to resume from, and anything older than that window is gone (410 Expired),
//! exactly as a compacted etcd plus the apiserver's watch cache behave.
//!
//! Objects are keyed by storage key (`group/resource`; resources sharing storage, such as core
//! and `events.k8s.io` events, share a key) and then by `namespace/name` (or `name` when
//! cluster-scoped), in etcd's key order, so lists come out in the order a real apiserver returns
//! them. All access goes through one mutex-protected transaction ([`Store::write`] /
//! [`Store::read`]): a read-modify-write is atomic, and watchers are notified inside the same
//! critical section, so no watcher can miss or reorder an event. Watchers have bounded buffers;
//! one that falls behind is dropped (its stream ends and the client re-watches), never blocking
//! writers, as kube-apiserver's cacher terminates unresponsive watchers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A stored object: its JSON (in the storage version, `metadata.resourceVersion` set) and its
/// encodings, computed once on first use.
#[derive(Debug)]
pub(crate) struct Obj {
    /// The object.
    pub value: Value,
    full: OnceLock<Bytes>,
    item: OnceLock<Bytes>,
}

impl Obj {
    /// Wraps an object.
    pub(crate) fn new(value: Value) -> Obj {
        Obj {
            value,
            full: OnceLock::new(),
            item: OnceLock::new(),
        }
    }

    /// The JSON encoding.
    pub(crate) fn json(&self) -> &Bytes {
        self.full
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }

    /// The JSON encoding without `apiVersion` and `kind`, as items of built-in lists are sent.
    pub(crate) fn item_json(&self) -> &Bytes {
        self.item.get_or_init(|| {
            Bytes::from(serde_json::to_vec(&WithoutTypeMeta(&self.value)).unwrap_or_default())
        })
    }
}

/// Serializes an object without its top-level `apiVersion` and `kind`.
struct WithoutTypeMeta<'a>(&'a Value);

impl Serialize for WithoutTypeMeta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in map {
                    if k != "apiVersion" && k != "kind" {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

/// The type of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The object was created.
    Added,
    /// The object was changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventKind {
    /// The watch event type.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub(crate) struct Event {
    /// The revision of the change.
    pub rv: u64,
    /// The type of change.
    pub kind: EventKind,
    /// The object's key (`namespace/name` or `name`).
    pub key: String,
    /// The object after the change; for a deletion, the last state with the deletion's revision.
    pub object: Arc<Obj>,
    /// The object before the change (none for a creation).
    pub prev: Option<Arc<Obj>>,
}

impl Event {
    /// The namespace part of the key (empty for cluster-scoped objects).
    pub(crate) fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }
}

/// A subscriber to one storage key's changes.
enum Subscriber {
    /// A client's watch: bounded; dropped when full.
    Watch(mpsc::Sender<Arc<Event>>),
    /// An in-process controller: unbounded, never dropped while it lives.
    Internal(mpsc::UnboundedSender<Arc<Event>>),
}

struct WatcherEntry {
    namespace: Option<String>,
    subscriber: Subscriber,
}

/// The state of one storage key.
#[derive(Default)]
struct Resource {
    objects: BTreeMap<String, Arc<Obj>>,
    history: VecDeque<Arc<Event>>,
    /// A watch may resume from any revision >= this (every later change is in `history`).
    oldest: u64,
    watchers: Vec<WatcherEntry>,
}

struct Inner {
    rv: u64,
    /// Revisions below this were compacted away for every resource.
    compacted: u64,
    resources: HashMap<String, Resource>,
    history_limit: usize,
    watch_buffer: usize,
}

/// Why an old revision cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooOld {
    /// The oldest revision that can still be served.
    pub oldest: u64,
}

/// The object store. Cheap to share behind an `Arc`.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    published: AtomicU64,
    rv_tx: watch::Sender<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resourceVersion", &self.current_rv())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store keeping `history_limit` changes per resource and buffering
    /// `watch_buffer` events per watcher.
    pub(crate) fn new(history_limit: usize, watch_buffer: usize) -> Store {
        let (rv_tx, _) = watch::channel(0);
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                compacted: 0,
                resources: HashMap::new(),
                history_limit: history_limit.max(1),
                watch_buffer: watch_buffer.max(1),
            }),
            published: AtomicU64::new(0),
            rv_tx,
        }
    }

    /// The latest revision whose changes have all been delivered to watchers.
    pub(crate) fn current_rv(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// A receiver that sees the current revision change.
    pub(crate) fn rv_receiver(&self) -> watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    /// Waits until the store has reached revision `rv`, at most `limit`; true if it has.
    pub(crate) async fn wait_for_rv(&self, rv: u64, limit: std::time::Duration) -> bool {
        let mut rx = self.rv_receiver();
        let reached = async {
            loop {
                if *rx.borrow_and_update() >= rv {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, reached).await.is_ok()
    }

    /// Runs `f` in a transaction that may write; changes are visible and delivered when it returns.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut txn = Txn { inner: &mut guard };
        let out = f(&mut txn);
        let rv = guard.rv;
        if self.published.swap(rv, Ordering::AcqRel) != rv {
            self.rv_tx.send_replace(rv);
        }
        out
    }

    /// Runs `f` in a transaction (reads only by convention; it may subscribe).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        self.write(f)
    }
}

/// Access to the store inside its lock.
pub(crate) struct Txn<'a> {
    inner: &'a mut Inner,
}

impl Txn<'_> {
    /// The current revision.
    pub(crate) fn rv(&self) -> u64 {
        self.inner.rv
    }

    /// The object at `key`.
    pub(crate) fn get(&self, storage: &str, key: &str) -> Option<Arc<Obj>> {
        self.inner.resources.get(storage)?.objects.get(key).cloned()
    }

    /// The objects of a storage key, optionally of one namespace, in key order.
    pub(crate) fn list(&self, storage: &str, namespace: Option<&str>) -> Vec<(String, Arc<Obj>)> {
        let Some(res) = self.inner.resources.get(storage) else {
            return Vec::new();
        };
        collect(&res.objects, namespace)
    }

    /// Number of objects under a storage key.
    pub(crate) fn count(&self, storage: &str) -> usize {
        self.inner
            .resources
            .get(storage)
            .map_or(0, |r| r.objects.len())
    }

    /// The objects as they were at revision `at` (which must not be in the future).
    pub(crate) fn list_at(
        &self,
        storage: &str,
        namespace: Option<&str>,
        at: u64,
    ) -> Result<Vec<(String, Arc<Obj>)>, TooOld> {
        let Some(res) = self.inner.resources.get(storage) else {
            return if at >= self.inner.compacted {
                Ok(Vec::new())
            } else {
                Err(TooOld {
                    oldest: self.inner.compacted,
                })
            };
        };
        let oldest = res.oldest.max(self.inner.compacted);
        if at < oldest {
            return Err(TooOld { oldest });
        }
        if res.history.back().is_none_or(|e| e.rv <= at) {
            return Ok(collect(&res.objects, namespace));
        }
        let mut objects = res.objects.clone();
        for ev in res.history.iter().rev() {
            if ev.rv <= at {
                break;
            }
            match &ev.prev {
                Some(prev) => {
                    objects.insert(ev.key.clone(), prev.clone());
                }
                None => {
                    objects.remove(&ev.key);
                }
            }
        }
        Ok(collect(&objects, namespace))
    }

    /// Every change after revision `since`, oldest first, or why they are gone.
    pub(crate) fn events_since(
        &self,
        storage: &str,
        since: u64,
    ) -> Result<Vec<Arc<Event>>, TooOld> {
        let compacted = self.inner.compacted;
        let Some(res) = self.inner.resources.get(storage) else {
            return if since >= compacted {
                Ok(Vec::new())
            } else {
                Err(TooOld { oldest: compacted })
            };
        };
        let oldest = res.oldest.max(compacted);
        if since < oldest {
            return Err(TooOld { oldest });
        }
        let start = res.history.partition_point(|e| e.rv <= since);
        Ok(res.history.range(start..).cloned().collect())
    }

    /// Registers a client watch on a storage key (optionally one namespace).
    pub(crate) fn subscribe(
        &mut self,
        storage: &str,
        namespace: Option<String>,
    ) -> mpsc::Receiver<Arc<Event>> {
        let (tx, rx) = mpsc::channel(self.inner.watch_buffer);
        self.resource(storage).watchers.push(WatcherEntry {
            namespace,
            subscriber: Subscriber::Watch(tx),
        });
        rx
    }

    /// Registers an in-process subscriber that never misses an event.
    pub(crate) fn subscribe_internal(
        &mut self,
        storage: &str,
    ) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.resource(storage).watchers.push(WatcherEntry {
            namespace: None,
            subscriber: Subscriber::Internal(tx),
        });
        rx
    }

    /// Stores `value` at `key` with the next revision (setting `metadata.resourceVersion`).
    pub(crate) fn put(&mut self, storage: &str, key: &str, mut value: Value) -> Arc<Obj> {
        let rv = self.inner.rv + 1;
        self.inner.rv = rv;
        crate::meta::metadata_mut(&mut value)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(Obj::new(value));
        let res = self.resource(storage);
        let prev = res.objects.insert(key.to_owned(), obj.clone());
        let kind = if prev.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.record(
            storage,
            Event {
                rv,
                kind,
                key: key.to_owned(),
                object: obj.clone(),
                prev,
            },
        );
        obj
    }

    /// Removes the object at `key`; returns its last state (`last`, or the stored object) with
    /// the deletion's revision.
    pub(crate) fn delete(
        &mut self,
        storage: &str,
        key: &str,
        last: Option<Value>,
    ) -> Option<Arc<Obj>> {
        let res = self.inner.resources.get_mut(storage)?;
        let prev = res.objects.remove(key)?;
        let rv = self.inner.rv + 1;
        self.inner.rv = rv;
        let mut value = last.unwrap_or_else(|| prev.value.clone());
        crate::meta::metadata_mut(&mut value)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(Obj::new(value));
        self.record(
            storage,
            Event {
                rv,
                kind: EventKind::Deleted,
                key: key.to_owned(),
                object: obj.clone(),
                prev: Some(prev),
            },
        );
        Some(obj)
    }

    /// Forgets all history: a watch or exact read at any earlier revision gets 410.
    pub(crate) fn compact(&mut self) {
        let rv = self.inner.rv;
        self.compact_to(rv);
    }

    /// Forgets history up to revision `rv`, as etcd's compaction at `rv` does: reads at `rv`
    /// and watches from `rv` still work, anything earlier gets 410.
    pub(crate) fn compact_to(&mut self, rv: u64) {
        let rv = rv.min(self.inner.rv);
        if rv <= self.inner.compacted {
            return;
        }
        self.inner.compacted = rv;
        for res in self.inner.resources.values_mut() {
            while res.history.front().is_some_and(|e| e.rv <= rv) {
                res.history.pop_front();
            }
            res.oldest = res.oldest.max(rv);
        }
    }

    /// Ends every client watch (their streams end; clients re-watch).
    pub(crate) fn drop_watchers(&mut self) {
        for res in self.inner.resources.values_mut() {
            res.watchers
                .retain(|w| matches!(w.subscriber, Subscriber::Internal(_)));
        }
    }

    fn resource(&mut self, storage: &str) -> &mut Resource {
        if !self.inner.resources.contains_key(storage) {
            self.inner
                .resources
                .insert(storage.to_owned(), Resource::default());
        }
        self.inner
            .resources
            .get_mut(storage)
            .expect("just inserted")
    }

    /// Appends to the history (evicting the oldest beyond the limit) and fans out to watchers.
    fn record(&mut self, storage: &str, event: Event) {
        let limit = self.inner.history_limit;
        let event = Arc::new(event);
        let res = self.resource(storage);
        res.history.push_back(event.clone());
        while res.history.len() > limit {
            if let Some(old) = res.history.pop_front() {
                res.oldest = old.rv;
            }
        }
        let ns = event.namespace();
        res.watchers.retain(|w| {
            if w.namespace.as_deref().is_some_and(|want| want != ns) {
                return match &w.subscriber {
                    Subscriber::Watch(tx) => !tx.is_closed(),
                    Subscriber::Internal(tx) => !tx.is_closed(),
                };
            }
            match &w.subscriber {
                // A full buffer means an unresponsive watcher: drop it rather than block.
                Subscriber::Watch(tx) => tx.try_send(event.clone()).is_ok(),
                Subscriber::Internal(tx) => tx.send(event.clone()).is_ok(),
            }
        });
    }
}

/// Collects `(key, object)` pairs, optionally of one namespace.
fn collect(
    objects: &BTreeMap<String, Arc<Obj>>,
    namespace: Option<&str>,
) -> Vec<(String, Arc<Obj>)> {
    match namespace {
        Some(ns) => {
            let prefix = format!("{ns}/");
            objects
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
        None => objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The storage key of an object: `namespace/name`, or `name` when cluster-scoped.
pub(crate) fn object_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_history_and_snapshots() {
        let store = Store::new(3, 8);
        store.write(|t| {
            t.put("/cm", "a/x", json!({"metadata": {"name": "x"}, "v": 1}));
            t.put("/cm", "a/y", json!({"metadata": {"name": "y"}}));
            t.put("/cm", "a/x", json!({"metadata": {"name": "x"}, "v": 2}));
        });
        assert_eq!(store.current_rv(), 3);
        store.read(|t| {
            let at1 = t.list_at("/cm", Some("a"), 1).unwrap();
            assert_eq!(at1.len(), 1);
            assert_eq!(at1[0].1.value["v"], 1);
            assert_eq!(t.events_since("/cm", 1).unwrap().len(), 2);
        });
        store.write(|t| {
            t.delete("/cm", "a/y", None);
        });
        // history limit 3: revision 1 evicted, so resuming from 0 is too old
        store.read(|t| {
            assert_eq!(t.events_since("/cm", 0).unwrap_err(), TooOld { oldest: 1 });
            assert!(t.events_since("/cm", 1).is_ok());
        });
        store.write(|t| t.compact());
        store.read(|t| assert!(t.events_since("/cm", 3).is_err()));
    }

    #[test]
    fn item_encoding_drops_type_meta() {
        let o = Obj::new(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}));
        assert_eq!(&o.item_json()[..], br#"{"metadata":{}}"#);
    }
}
