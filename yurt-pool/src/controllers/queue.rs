//! What sits between the shared informers and a controller's reconciles: the work-queue depth
//! count, the coalescing of bursts of triggers, and the record of our own writes that the cache
//! has not shown yet.
//!
//! - [`WorkQueue`] keeps the set of objects a controller has been asked to reconcile and has not
//!   started on yet, and publishes its size as `workqueue_depth{name}`. kube-runtime's scheduler
//!   is private, so the set is maintained where triggers enter (the controller's own change
//!   stream and its mappers, counting only objects its cache holds, since kube-runtime drops
//!   triggers for objects it cannot find) and where they leave (the start of a reconcile); a
//!   requeue after an error or a timed requeue puts the object back. Like controller-runtime's
//!   queue it counts distinct objects: a second trigger for a waiting object adds nothing.
//! - [`coalesce`] holds each triggered key until its triggers have been quiet for a while (or
//!   have waited too long), so a burst of member changes causes one reconcile, and at most one
//!   write, per pool rather than one per change. The longest wait bounds the delay, so a pool
//!   whose members never stop changing is still reconciled.
//! - [`PendingWrites`] remembers, per object, the resourceVersion our last write replaced. Until
//!   the informer shows a newer version, a reconcile would compute from the state before our own
//!   write and its write would fail with 409 Conflict; it waits for the watch event instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::context::Context;
use crate::informers::Watched;
use crate::metrics::QueueLabel;

/// The objects one controller has been asked to reconcile and has not started on yet (see the
/// module docs). Clones share the set.
#[derive(Clone, Debug)]
pub(crate) struct WorkQueue {
    waiting: Arc<Mutex<HashSet<String>>>,
    depth: Gauge,
}

fn key<K: Resource<DynamicType = ()>>(r: &ObjectRef<K>) -> String {
    let kind = K::kind(&());
    match &r.namespace {
        Some(ns) => format!("{kind}/{ns}/{}", r.name),
        None => format!("{kind}/{}", r.name),
    }
}

impl WorkQueue {
    /// The queue of controller `name`, published as `workqueue_depth{name}`.
    pub(crate) fn new(ctx: &Context, name: &str) -> WorkQueue {
        WorkQueue {
            waiting: Arc::default(),
            depth: ctx
                .metrics
                .queue_depth
                .get_or_create(&QueueLabel {
                    name: name.to_owned(),
                })
                .clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut HashSet<String>)) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut waiting);
        self.depth.set(waiting.len() as i64);
    }

    /// `r` was triggered (or requeued).
    pub(crate) fn add<K: Resource<DynamicType = ()>>(&self, r: &ObjectRef<K>) {
        let k = key(r);
        self.update(|w| {
            w.insert(k);
        });
    }

    /// `r`'s reconcile started, or `r` is gone and will not be reconciled.
    pub(crate) fn remove<K: Resource<DynamicType = ()>>(&self, r: &ObjectRef<K>) {
        let k = key(r);
        self.update(|w| {
            w.remove(&k);
        });
    }

    /// The controller's own change stream, counted: an object still in `store` is queued, one
    /// that is not (it was deleted) is dropped from the queue, as kube-runtime will not
    /// reconcile it.
    pub(crate) fn track_changes<K: Watched>(
        &self,
        changes: impl Stream<Item = Arc<K>> + Send + 'static,
        store: Store<K>,
    ) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let queue = self.clone();
        changes.inspect(move |obj| {
            let r = ObjectRef::from_obj(obj.as_ref());
            if store.get(&r).is_some() {
                queue.add(&r);
            } else {
                queue.remove(&r);
            }
        })
    }

    /// `mapper`, counting each object it triggers that `store` holds.
    pub(crate) fn track_mapper<S, K>(
        &self,
        store: Store<K>,
        mapper: impl Fn(Arc<S>) -> Vec<ObjectRef<K>> + Send + Sync + 'static,
    ) -> impl Fn(Arc<S>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        K: Watched,
    {
        let queue = self.clone();
        move |obj| {
            let out = mapper(obj);
            for r in &out {
                if store.get(r).is_some() {
                    queue.add(r);
                }
            }
            out
        }
    }
}

/// Holds every key from `input` until it has had no new trigger for `quiet`, or has waited
/// `longest` since its first trigger, then emits it once (see the module docs). Keys that are
/// due together come out in the order they were first triggered. When `input` ends, what is
/// still held is emitted at once.
pub(crate) fn coalesce<T>(
    input: impl Stream<Item = T> + Send + 'static,
    quiet: Duration,
    longest: Duration,
) -> impl Stream<Item = T> + Send + 'static
where
    T: Hash + Eq + Clone + Send + 'static,
{
    struct State<T> {
        input: Option<BoxStream<'static, T>>,
        /// Held keys: first and last trigger.
        held: HashMap<T, (Instant, Instant)>,
        /// Held keys in first-trigger order.
        order: VecDeque<T>,
        due: VecDeque<T>,
    }
    let state = State {
        input: Some(input.boxed()),
        held: HashMap::new(),
        order: VecDeque::new(),
        due: VecDeque::new(),
    };
    stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(t) = st.due.pop_front() {
                return Some((t, st));
            }
            let when = |(first, last): &(Instant, Instant)| (*last + quiet).min(*first + longest);
            let Some(input) = st.input.as_mut() else {
                // Input ended: flush.
                let order = std::mem::take(&mut st.order);
                st.held.clear();
                st.due.extend(order);
                if st.due.is_empty() {
                    return None;
                }
                continue;
            };
            let next = st.held.values().map(when).min();
            tokio::select! {
                item = input.next() => match item {
                    Some(t) => {
                        let now = Instant::now();
                        match st.held.get_mut(&t) {
                            Some(times) => times.1 = now,
                            None => {
                                st.held.insert(t.clone(), (now, now));
                                st.order.push_back(t);
                            }
                        }
                    }
                    None => st.input = None,
                },
                () = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let held = &mut st.held;
                    let mut keep = VecDeque::with_capacity(st.order.len());
                    for t in st.order.drain(..) {
                        if held.get(&t).is_some_and(|times| when(times) <= now) {
                            held.remove(&t);
                            st.due.push_back(t);
                        } else {
                            keep.push_back(t);
                        }
                    }
                    st.order = keep;
                }
            }
        }
    })
}

/// Our writes the informer has not shown yet (see the module docs). Clones share the record.
#[derive(Clone, Debug, Default)]
pub(crate) struct PendingWrites {
    based_on: Arc<Mutex<HashMap<String, String>>>,
}

impl PendingWrites {
    /// Whether the cached object `key` at `cached_rv` is still the version our last write to it
    /// replaced (the cache is behind our own write). Once the cache has moved on, the record is
    /// dropped.
    pub(crate) fn behind(&self, key: &str, cached_rv: Option<&str>) -> bool {
        let mut map = self.based_on.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(rv) if Some(rv.as_str()) == cached_rv => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Records a successful write to `key` that replaced version `based_on`.
    pub(crate) fn wrote(&self, key: String, based_on: Option<String>) {
        if let Some(rv) = based_on {
            self.based_on
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, rv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_comes_out_once_after_it_goes_quiet() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&str>();
        let out = coalesce(rx, Duration::from_millis(500), Duration::from_secs(5));
        let start = Instant::now();
        let feeder = async move {
            for _ in 0..10 {
                tx.unbounded_send("a").unwrap();
                tx.unbounded_send("b").unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tx.unbounded_send("c").unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let reader = out
            .map(|t| (t, start.elapsed().as_millis()))
            .collect::<Vec<_>>();
        let ((), seen) = futures::join!(feeder, reader);
        // Twenty triggers of "a" and "b" (the last at 900 ms) and one of "c" (at 1000 ms):
        // each comes out once, 500 ms after its last trigger.
        assert_eq!(seen, vec![("a", 1400), ("b", 1400), ("c", 1500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_that_never_goes_quiet_still_comes_out_after_the_longest_wait() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&str>();
        let mut out = Box::pin(coalesce(
            rx,
            Duration::from_millis(500),
            Duration::from_secs(2),
        ));
        let start = Instant::now();
        let feeder = async {
            for _ in 0..40 {
                tx.unbounded_send("busy").unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let reader = async {
            let first = out.next().await;
            (first, start.elapsed())
        };
        let ((), (first, after)) = futures::join!(feeder, reader);
        assert_eq!(first, Some("busy"));
        assert_eq!(after, Duration::from_secs(2));
    }

    #[test]
    fn a_cache_behind_our_write_is_recognised_until_it_moves_on() {
        let p = PendingWrites::default();
        assert!(!p.behind("pool-a", Some("5")));
        p.wrote("pool-a".into(), Some("5".into()));
        assert!(
            p.behind("pool-a", Some("5")),
            "cache still shows what we replaced"
        );
        assert!(!p.behind("pool-a", Some("6")), "cache shows our write");
        assert!(
            !p.behind("pool-a", Some("5")),
            "record dropped once caught up"
        );
    }
}
