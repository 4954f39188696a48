//! The in-memory watch cache of one multiplexed resource, as plain code (no sockets, no tasks):
//! what the feed puts in ([`WatchCache::replace`] after a list, [`WatchCache::apply`] per watch
//! event) and what clients take out ([`WatchCache::list`], [`WatchCache::subscribe`]), with
//! per-client selection ([`Selection`]) and event conversion ([`Selection::event_line`]).
//!
//! Resource versions are compared as unsigned integers, as etcd-backed apiservers issue them.
//! The cache keeps the current objects, its resourceVersion and a bounded history of events; a
//! watch may resume from any resourceVersion not older than the history's start (else 410
//! Gone). A re-list after the first one is turned into the ADDED, MODIFIED and DELETED events
//! that lead from the old state to the new one, so open watches carry on across it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::broadcast;
use yurt_core::Status;
use yurt_core::selector::{FieldSelector, LabelSelector};

/// One object as the feed last saw it: parsed (for selectors) and as raw JSON (for clients).
#[derive(Debug)]
pub(crate) struct Obj {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) rv: u64,
    pub(crate) value: Value,
    pub(crate) raw: Bytes,
}

impl Obj {
    /// Builds from a JSON object, filling `kind` and `apiVersion` when absent (list items);
    /// `None` without a name.
    pub(crate) fn from_value(mut value: Value, kind: &str, api_version: &str) -> Option<Obj> {
        let map = value.as_object_mut()?;
        if !kind.is_empty() && !map.contains_key("kind") {
            map.insert("kind".into(), Value::from(kind));
        }
        if !api_version.is_empty() && !map.contains_key("apiVersion") {
            map.insert("apiVersion".into(), Value::from(api_version));
        }
        let raw = Bytes::from(serde_json::to_vec(&value).ok()?);
        Obj::with_raw(value, raw)
    }

    /// Builds from a parsed object and the same object's raw JSON.
    pub(crate) fn with_raw(value: Value, raw: Bytes) -> Option<Obj> {
        let meta = value.get("metadata")?;
        let name = meta.get("name")?.as_str()?.to_owned();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let rv = parse_rv(meta.get("resourceVersion").and_then(Value::as_str)).unwrap_or(0);
        Some(Obj {
            namespace,
            name,
            rv,
            value,
            raw,
        })
    }

    fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// A copy carrying resourceVersion `rv` (a deletion found by a re-list).
    fn at_rv(&self, rv: u64) -> Obj {
        let mut value = self.value.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
        }
        let raw = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Obj {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            rv,
            value,
            raw,
        }
    }
}

/// Parses a resourceVersion (`None` for absent, empty or non-numeric).
pub(crate) fn parse_rv(rv: Option<&str>) -> Option<u64> {
    rv.filter(|s| !s.is_empty())?.parse().ok()
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
}

impl EventType {
    pub(crate) fn parse(s: &str) -> Option<EventType> {
        Some(match s {
            "ADDED" => EventType::Added,
            "MODIFIED" => EventType::Modified,
            "DELETED" => EventType::Deleted,
            "BOOKMARK" => EventType::Bookmark,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
        }
    }
}

/// One event of the cache's history, encoded once for every client that takes it unchanged.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) kind: EventType,
    pub(crate) rv: u64,
    /// The object (for a bookmark, a bare `{kind, apiVersion, metadata.resourceVersion}`).
    pub(crate) obj: Arc<Obj>,
    /// The object's previous state (MODIFIED and DELETED).
    pub(crate) prev: Option<Arc<Obj>>,
    /// `{"type":..,"object":..}\n`.
    pub(crate) line: Bytes,
}

/// Encodes one newline-terminated watch event.
pub(crate) fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(object.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(object);
    b.put_slice(b"}\n");
    b.freeze()
}

/// An ERROR watch event carrying `status`.
pub(crate) fn error_line(status: &Status) -> Bytes {
    event_line("ERROR", &status.to_json())
}

/// A BOOKMARK object at `rv`, with the `k8s.io/initial-events-end` annotation if asked.
pub(crate) fn bookmark_object(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = serde_json::json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = serde_json::json!({ "k8s.io/initial-events-end": "true" });
    }
    let v = serde_json::json!({ "kind": kind, "apiVersion": api_version, "metadata": meta });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// Why a watch cannot start where the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// The requested resourceVersion is older than the history: 410 Gone.
    TooOld { oldest: u64 },
}

/// What a client selects: namespace, label selector, field selector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    pub(crate) namespace: String,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selection {
    /// Whether `obj` is selected.
    pub(crate) fn matches(&self, obj: &Obj) -> bool {
        (self.namespace.is_empty() || self.namespace == obj.namespace)
            && self.labels.matches_object(&obj.value)
            && self.fields.matches(&obj.value)
    }

    /// The line a client with this selection gets for `ev`, if any: unchanged when the object
    /// stays selected, ADDED when a modification brings it in, DELETED when one takes it out
    /// (as kube-apiserver's watch cache converts them).
    pub(crate) fn event_line(&self, ev: &Event, bookmarks: bool) -> Option<Bytes> {
        match ev.kind {
            EventType::Bookmark => bookmarks.then(|| ev.line.clone()),
            EventType::Added => self.matches(&ev.obj).then(|| ev.line.clone()),
            EventType::Deleted => (self.matches(&ev.obj)
                || ev.prev.as_ref().is_some_and(|p| self.matches(p)))
            .then(|| ev.line.clone()),
            EventType::Modified => {
                let now = self.matches(&ev.obj);
                let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(ev.line.clone()),
                    (false, true) => Some(event_line("ADDED", &ev.obj.raw)),
                    (true, false) => Some(event_line("DELETED", &ev.obj.raw)),
                    (false, false) => None,
                }
            }
        }
    }
}

/// The watch cache of one resource; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct WatchCache {
    objects: BTreeMap<(String, String), Arc<Obj>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// The oldest resourceVersion a watch may start from.
    history_start: u64,
    capacity: usize,
    synced: bool,
    /// Item kind and apiVersion (`Service`, `v1`), from the first list.
    kind: String,
    api_version: String,
    tx: Option<broadcast::Sender<Arc<Event>>>,
}

/// The current objects a client selected, at the cache's resourceVersion.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) rv: u64,
    pub(crate) items: Vec<Arc<Obj>>,
}

impl WatchCache {
    /// An empty, unsynced cache keeping `capacity` events of history, each watcher buffering
    /// at most `fanout_capacity` events it has not taken yet.
    pub(crate) fn new(capacity: usize, fanout_capacity: usize) -> WatchCache {
        let (tx, _) = broadcast::channel(fanout_capacity.max(1));
        WatchCache {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_start: 0,
            capacity: capacity.max(1),
            synced: false,
            kind: String::new(),
            api_version: String::new(),
            tx: Some(tx),
        }
    }

    /// Whether a first list has completed.
    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    /// The cache's resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// The item kind and apiVersion.
    pub(crate) fn kind(&self) -> (&str, &str) {
        (&self.kind, &self.api_version)
    }

    /// Number of objects.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Ends every open watch (they see their channel close) and refuses new ones.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }

    /// Installs a complete list (items of `kind`/`api_version` at `list_rv`). The first one
    /// syncs the cache; later ones emit the events leading from the old state to the new one.
    /// A list older than the cache (the hub's disk cache answering while the cloud is
    /// offline, a lagging apiserver) is ignored, since the cache already holds a newer state;
    /// returns whether the list was installed.
    pub(crate) fn replace(
        &mut self,
        items: Vec<Obj>,
        list_rv: u64,
        kind: &str,
        api_version: &str,
    ) -> bool {
        if self.synced && list_rv < self.rv {
            return false;
        }
        self.kind = kind.to_owned();
        self.api_version = api_version.to_owned();
        let new: BTreeMap<(String, String), Arc<Obj>> =
            items.into_iter().map(|o| (o.key(), Arc::new(o))).collect();
        if !self.synced {
            self.objects = new;
            self.rv = list_rv;
            self.history.clear();
            self.history_start = list_rv;
            self.synced = true;
            return true;
        }
        let mut events: Vec<(EventType, Arc<Obj>, Option<Arc<Obj>>)> = Vec::new();
        for (key, old) in &self.objects {
            if !new.contains_key(key) {
                events.push((
                    EventType::Deleted,
                    Arc::new(old.at_rv(list_rv)),
                    Some(old.clone()),
                ));
            }
        }
        for (key, obj) in &new {
            match self.objects.get(key) {
                None => events.push((EventType::Added, obj.clone(), None)),
                Some(old) if old.rv != obj.rv => {
                    events.push((EventType::Modified, obj.clone(), Some(old.clone())))
                }
                Some(_) => {}
            }
        }
        events.sort_by_key(|e| e.1.rv);
        for (kind, obj, prev) in events {
            let rv = obj.rv.max(self.rv);
            self.push(kind, obj, prev, rv);
        }
        self.objects = new;
        self.rv = self.rv.max(list_rv);
        true
    }

    /// Applies one upstream watch event (`obj` for a bookmark only carries the
    /// resourceVersion). Returns whether it changed the cache's resourceVersion.
    pub(crate) fn apply(&mut self, kind: EventType, obj: Obj) -> bool {
        if obj.rv != 0 && obj.rv < self.rv {
            // An event the cache already holds (a re-watch overlapping the history).
            return false;
        }
        let rv = obj.rv.max(self.rv);
        let obj = Arc::new(obj);
        match kind {
            EventType::Bookmark => {
                let line = event_line("BOOKMARK", &obj.raw);
                self.rv = rv;
                self.send(Arc::new(Event {
                    kind,
                    rv,
                    obj,
                    prev: None,
                    line,
                }));
            }
            EventType::Added | EventType::Modified => {
                let prev = self.objects.insert(obj.key(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.push(kind, obj, prev, rv);
            }
            EventType::Deleted => {
                let prev = self.objects.remove(&obj.key());
                self.push(kind, obj, prev, rv);
            }
        }
        true
    }

    fn push(&mut self, kind: EventType, obj: Arc<Obj>, prev: Option<Arc<Obj>>, rv: u64) {
        let line = event_line(kind.as_str(), &obj.raw);
        let ev = Arc::new(Event {
            kind,
            rv,
            obj,
            prev,
            line,
        });
        self.rv = rv;
        self.history.push_back(ev.clone());
        while self.history.len() > self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.history_start = old.rv;
            }
        }
        self.send(ev);
    }

    fn send(&self, ev: Arc<Event>) {
        if let Some(tx) = &self.tx {
            // No receiver is fine: nobody watches.
            let _ = tx.send(ev);
        }
    }

    /// The objects `sel` selects, at the current resourceVersion.
    pub(crate) fn list(&self, sel: &Selection) -> Snapshot {
        Snapshot {
            rv: self.rv,
            items: self
                .objects
                .values()
                .filter(|o| sel.matches(o))
                .cloned()
                .collect(),
        }
    }

    /// Starts a watch: `from = None` gives the selected objects as initial state (the client
    /// gets them as ADDED events); `Some(rv)` gives the history after `rv`. Either way the
    /// receiver then yields every later event, with no gap and no duplicate. `None` once the
    /// cache is closed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn subscribe(
        &self,
        sel: &Selection,
        from: Option<u64>,
    ) -> Option<Result<(Start, broadcast::Receiver<Arc<Event>>), WatchFrom>> {
        let tx = self.tx.as_ref()?;
        let start = match from {
            None => Start::Initial(self.list(sel)),
            Some(rv) if rv < self.history_start => {
                return Some(Err(WatchFrom::TooOld {
                    oldest: self.history_start,
                }));
            }
            Some(rv) => {
                Start::History(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
            }
        };
        Some(Ok((start, tx.subscribe())))
    }
}

/// Where a watch starts.
#[derive(Debug)]
pub(crate) enum Start {
    /// The current state, sent as ADDED events.
    Initial(Snapshot),
    /// Events after the requested resourceVersion.
    History(Vec<Arc<Event>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, rv: u64, app: &str) -> Obj {
        Obj::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string(),
                   "labels": {"app": app}}}),
            "Service",
            "v1",
        )
        .unwrap()
    }

    fn sel(labels: &str) -> Selection {
        Selection {
            namespace: String::new(),
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::everything(),
        }
    }

    fn names(s: &Snapshot) -> Vec<String> {
        s.items.iter().map(|o| o.name.clone()).collect()
    }

    fn types(evs: &[Arc<Event>]) -> Vec<(EventType, String, u64)> {
        evs.iter()
            .map(|e| (e.kind, e.obj.name.clone(), e.rv))
            .collect()
    }

    #[test]
    fn list_fills_kind_and_selects() {
        let mut c = WatchCache::new(10, 10);
        assert!(!c.synced());
        c.replace(vec![svc("a", 5, "x"), svc("b", 6, "y")], 7, "Service", "v1");
        assert!(c.synced());
        assert_eq!(c.rv(), 7);
        let snap = c.list(&sel("app=x"));
        assert_eq!(names(&snap), ["a"]);
        assert_eq!(snap.items[0].value["kind"], "Service");
        let other_ns = Selection {
            namespace: "kube-system".into(),
            ..sel("")
        };
        assert!(c.list(&other_ns).items.is_empty());
    }

    #[test]
    fn history_resumes_and_expires() {
        let mut c = WatchCache::new(2, 10);
        c.replace(vec![svc("a", 5, "x")], 5, "Service", "v1");
        c.apply(EventType::Modified, svc("a", 6, "x"));
        c.apply(EventType::Added, svc("b", 7, "x"));
        let Some(Ok((Start::History(h), _))) = c.subscribe(&sel(""), Some(6)) else {
            panic!()
        };
        assert_eq!(types(&h), [(EventType::Added, "b".into(), 7)]);
        // A third event pushes the first out: resuming from 5 is now too old.
        c.apply(EventType::Deleted, svc("a", 8, "x"));
        assert!(matches!(
            c.subscribe(&sel(""), Some(5)),
            Some(Err(WatchFrom::TooOld { oldest: 6 }))
        ));
        assert!(matches!(c.subscribe(&sel(""), Some(6)), Some(Ok(_))));
        // A duplicate of a held event is ignored.
        assert!(!c.apply(EventType::Added, svc("b", 7, "x")));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn subscribers_get_every_later_event() {
        let mut c = WatchCache::new(10, 10);
        c.replace(vec![svc("a", 5, "x")], 5, "Service", "v1");
        let Some(Ok((Start::Initial(snap), mut rx))) = c.subscribe(&sel(""), None) else {
            panic!()
        };
        assert_eq!(names(&snap), ["a"]);
        c.apply(EventType::Added, svc("b", 6, "x"));
        let ev = rx.try_recv().unwrap();
        assert_eq!((ev.kind, ev.obj.name.as_str()), (EventType::Added, "b"));
        assert!(ev.line.starts_with(b"{\"type\":\"ADDED\",\"object\":{"));
        c.close();
        assert!(c.subscribe(&sel(""), None).is_none());
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn relabel_converts_events_per_selection() {
        let mut c = WatchCache::new(10, 10);
        c.replace(vec![svc("a", 5, "x")], 5, "Service", "v1");
        c.apply(EventType::Modified, svc("a", 6, "y"));
        let Some(Ok((Start::History(h), _))) = c.subscribe(&sel(""), Some(5)) else {
            panic!()
        };
        let x = sel("app=x");
        let y = sel("app=y");
        let z = sel("app=z");
        assert!(
            x.event_line(&h[0], false)
                .unwrap()
                .starts_with(b"{\"type\":\"DELETED\"")
        );
        assert!(
            y.event_line(&h[0], false)
                .unwrap()
                .starts_with(b"{\"type\":\"ADDED\"")
        );
        assert!(z.event_line(&h[0], false).is_none());
        assert!(
            sel("")
                .event_line(&h[0], false)
                .unwrap()
                .starts_with(b"{\"type\":\"MODIFIED\"")
        );
    }

    #[test]
    fn relist_emits_the_difference() {
        let mut c = WatchCache::new(10, 10);
        c.replace(
            vec![svc("a", 5, "x"), svc("b", 5, "x"), svc("c", 5, "x")],
            5,
            "Service",
            "v1",
        );
        c.replace(
            vec![svc("a", 5, "x"), svc("c", 8, "x"), svc("d", 9, "x")],
            10,
            "Service",
            "v1",
        );
        assert_eq!(c.rv(), 10);
        let Some(Ok((Start::History(h), _))) = c.subscribe(&sel(""), Some(5)) else {
            panic!()
        };
        assert_eq!(
            types(&h),
            [
                (EventType::Modified, "c".into(), 8),
                (EventType::Added, "d".into(), 9),
                (EventType::Deleted, "b".into(), 10),
            ]
        );
        assert_eq!(h[2].obj.value["metadata"]["resourceVersion"], "10");
        // A list older than the cache is ignored.
        assert!(!c.replace(vec![], 3, "Service", "v1"));
        assert_eq!((c.rv(), c.len()), (10, 3));
    }

    #[test]
    fn bookmarks_advance_the_version_and_reach_only_those_asking() {
        let mut c = WatchCache::new(10, 10);
        c.replace(vec![], 5, "Service", "v1");
        let Some(Ok((_, mut rx))) = c.subscribe(&sel(""), None) else {
            panic!()
        };
        let bm = Obj::with_raw(
            json!({"metadata": {"name": "", "resourceVersion": "9"}}),
            bookmark_object("Service", "v1", 9, false),
        )
        .unwrap();
        c.apply(EventType::Bookmark, bm);
        assert_eq!(c.rv(), 9);
        let ev = rx.try_recv().unwrap();
        assert!(sel("").event_line(&ev, false).is_none());
        assert!(sel("app=q").event_line(&ev, true).is_some());
    }

    /// Small deterministic PRNG (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    /// The selected part of a state: name -> resourceVersion.
    type Model = BTreeMap<String, (u64, String)>;

    fn selected(model: &Model, sel: &Selection) -> BTreeMap<String, u64> {
        model
            .iter()
            .filter(|(n, (rv, app))| sel.matches(&svc(n, *rv, app)))
            .map(|(n, (rv, _))| (n.clone(), *rv))
            .collect()
    }

    /// Applies a client's event lines to its view.
    fn replay(view: &mut BTreeMap<String, u64>, lines: &[Bytes]) {
        for line in lines {
            for l in line.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let ev: Value = serde_json::from_slice(l).unwrap();
                let name = ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let rv: u64 = ev["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                match ev["type"].as_str().unwrap() {
                    "ADDED" | "MODIFIED" => {
                        view.insert(name, rv);
                    }
                    "DELETED" => {
                        view.remove(&name);
                    }
                    t => panic!("unexpected event {t}"),
                }
            }
        }
    }

    /// Random writes and re-lists against a model: every watcher, started from the initial
    /// state or from any version still in the history, with or without a label selector, ends
    /// with exactly the model's selected state.
    #[test]
    fn watchers_reconstruct_the_state_under_random_writes_and_relists() {
        for seed in 0..40u64 {
            let mut rng = Rng(seed);
            let mut c = WatchCache::new(1 + rng.below(30) as usize, 10_000);
            let mut model = Model::new();
            let mut rv = 1;
            c.replace(vec![], rv, "Service", "v1");
            let mut states: Vec<(u64, Model)> = vec![(rv, model.clone())];
            let sels = [sel(""), sel("app=x"), sel("app!=y")];
            let mut watchers = Vec::new();
            for _ in 0..200 {
                let name = format!("o{}", rng.below(8));
                let app = ["x", "y", "z"][rng.below(3) as usize].to_owned();
                match rng.below(10) {
                    0 => {
                        // A re-list: some objects changed, some gone, some new, unseen.
                        for _ in 0..3 {
                            rv += 1;
                            let n = format!("o{}", rng.below(8));
                            if rng.below(2) == 0 {
                                model.insert(n, (rv, app.clone()));
                            } else {
                                model.remove(&n);
                            }
                        }
                        rv += 1;
                        let items = model.iter().map(|(n, (r, a))| svc(n, *r, a)).collect();
                        c.replace(items, rv, "Service", "v1");
                    }
                    1..=3 if model.contains_key(&name) => {
                        rv += 1;
                        model.remove(&name);
                        c.apply(EventType::Deleted, svc(&name, rv, &app));
                    }
                    _ => {
                        rv += 1;
                        let kind = if model.contains_key(&name) {
                            EventType::Modified
                        } else {
                            EventType::Added
                        };
                        model.insert(name.clone(), (rv, app.clone()));
                        c.apply(kind, svc(&name, rv, &app));
                    }
                }
                states.push((c.rv(), model.clone()));
                if rng.below(5) == 0 {
                    let s = sels[rng.below(3) as usize].clone();
                    let pick = &states[rng.below(states.len() as u64) as usize];
                    let from = (rng.below(2) == 0).then_some(pick.0);
                    match c.subscribe(&s, from) {
                        Some(Ok((Start::Initial(snap), rx))) => {
                            let view = snap.items.iter().map(|o| (o.name.clone(), o.rv)).collect();
                            watchers.push((s, view, rx));
                        }
                        Some(Ok((Start::History(h), rx))) => {
                            let mut view = selected(&pick.1, &s);
                            let lines: Vec<Bytes> =
                                h.iter().filter_map(|e| s.event_line(e, false)).collect();
                            replay(&mut view, &lines);
                            watchers.push((s, view, rx));
                        }
                        Some(Err(WatchFrom::TooOld { oldest })) => {
                            assert!(pick.0 < oldest, "seed {seed}");
                        }
                        None => panic!("open cache"),
                    }
                }
            }
            for (s, mut view, mut rx) in watchers {
                let mut lines = Vec::new();
                while let Ok(ev) = rx.try_recv() {
                    lines.extend(s.event_line(&ev, false));
                }
                replay(&mut view, &lines);
                assert_eq!(view, selected(&model, &s), "seed {seed}");
            }
        }
    }
}
