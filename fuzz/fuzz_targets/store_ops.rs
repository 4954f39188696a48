//! Arbitrary sequences of store writes (puts, deletes, watch batches, list replaces, commits)
//! against a `BTreeMap` model, with a simulated crash point, in the style of redb's own fuzzer.
//!
//! The database lives on an in-memory backend whose bytes outlive the `Database`. Every
//! operation's outcome must equal the model's prediction. At `crash_after` operations the run
//! stops mid-transaction: the current disk image is copied (as a SIGKILL would leave it, with
//! whatever the open transaction already wrote) and the database is dropped without committing.
//! Reopening the copy must recover exactly the model as of the last commit: every object, every
//! list scope (with each selector), and each scope's list metadata.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use yurt_cache::store::redb::{self, StorageBackend};
use yurt_cache::store::{
    DeleteOutcome, EventKind, EventOutcome, Gvr, ListMeta, ListScope, Object, ObjectKey, OpOutcome,
    PutOutcome, ReplaceOutcome, StoreMetrics, SyncStore, WatchEvent, WriteOp,
};

/// A storage backend whose bytes survive the database (a "disk").
#[derive(Debug, Clone, Default)]
struct Disk(Arc<Mutex<Vec<u8>>>);

impl Disk {
    fn image(&self) -> Disk {
        Disk(Arc::new(Mutex::new(self.0.lock().unwrap().clone())))
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let data = self.0.lock().unwrap();
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + out.len();
        if end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            ));
        }
        out.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.0.lock().unwrap().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut buf = self.0.lock().unwrap();
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if start + data.len() > buf.len() {
            buf.resize(start + data.len(), 0);
        }
        buf[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

const NAMESPACES: [&str; 3] = ["ns", "ns2", "n"];
const NAMES: [&str; 6] = ["a", "a/b", "b", "ü", "nul\0", "%2F"];
const APPS: [&str; 3] = ["x", "y", "z"];
/// (label selector, field selector, model predicate on (name, app)).
const SELECTORS: [(&str, &str); 5] = [
    ("", ""),
    ("app=x", ""),
    ("app!=y", ""),
    ("app in (x,z)", ""),
    ("", "metadata.name=b"),
];

fn selected(sel: usize, name: &str, app: &str) -> bool {
    match sel {
        0 => true,
        1 => app == "x",
        2 => app != "y",
        3 => app == "x" || app == "z",
        _ => name == "b",
    }
}

/// A resourceVersion: small numbers collide often; 250+ is the opaque "x".
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Rv(u8);

impl Rv {
    fn text(self) -> String {
        if self.0 >= 250 {
            "x".into()
        } else {
            self.0.to_string()
        }
    }
}

/// The model's own resourceVersion rule (independent of the store's code).
fn older(candidate: &str, stored: &str) -> bool {
    match (candidate.parse::<u8>(), stored.parse::<u8>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Obj {
    ns: u8,
    name: u8,
    rv: Rv,
    app: u8,
}

impl Obj {
    fn ns(&self) -> &'static str {
        NAMESPACES[usize::from(self.ns) % NAMESPACES.len()]
    }
    fn name(&self) -> &'static str {
        NAMES[usize::from(self.name) % NAMES.len()]
    }
    fn app(&self) -> &'static str {
        APPS[usize::from(self.app) % APPS.len()]
    }
    fn object(&self) -> Object {
        Object::from_value(&serde_json::json!({
            "metadata": {"name": self.name(), "namespace": self.ns(),
                         "resourceVersion": self.rv.text(), "labels": {"app": self.app()}},
        }))
        .expect("valid object")
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Put(Obj),
    Delete {
        obj: Obj,
        with_rv: bool,
    },
    Watch(Vec<(u8, Obj)>),
    Replace {
        ns: u8,
        selector: u8,
        items: Vec<Obj>,
        list_rv: Rv,
    },
    Commit,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    crash_after: u16,
}

/// Stored object in the model: (resourceVersion text, app).
type Objects = BTreeMap<(String, String), (String, String)>;

#[derive(Clone, Default, Debug)]
struct Model {
    objects: Objects,
    /// (scope namespace, selector index) -> list resourceVersion.
    lists: BTreeMap<(String, usize), String>,
}

impl Model {
    fn put(&mut self, o: &Obj) -> PutOutcome {
        let key = (o.ns().to_owned(), o.name().to_owned());
        let new = (o.rv.text(), o.app().to_owned());
        match self.objects.get(&key) {
            Some(s) if *s == new => PutOutcome::Unchanged,
            Some(s) if older(&new.0, &s.0) => PutOutcome::Stale {
                stored: s.0.clone(),
            },
            Some(_) => {
                self.objects.insert(key, new);
                PutOutcome::Updated
            }
            None => {
                self.objects.insert(key, new);
                PutOutcome::Created
            }
        }
    }

    fn delete(&mut self, o: &Obj, rv: Option<String>) -> DeleteOutcome {
        let key = (o.ns().to_owned(), o.name().to_owned());
        match (self.objects.get(&key), rv) {
            (None, _) => DeleteOutcome::NotFound,
            (Some(s), Some(rv)) if older(&rv, &s.0) => DeleteOutcome::Stale {
                stored: s.0.clone(),
            },
            _ => {
                self.objects.remove(&key);
                DeleteOutcome::Deleted
            }
        }
    }

    fn replace(&mut self, ns: &str, sel: usize, items: &[Obj], list_rv: &str) -> ReplaceOutcome {
        let keys: BTreeSet<(String, String)> = items
            .iter()
            .map(|o| (o.ns().to_owned(), o.name().to_owned()))
            .collect();
        let doomed: Vec<_> = self
            .objects
            .iter()
            .filter(|((ons, name), (rv, app))| {
                (ns.is_empty() || ns == ons)
                    && !keys.contains(&(ons.clone(), name.clone()))
                    && selected(sel, name, app)
                    && !older(list_rv, rv)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = ReplaceOutcome {
            deleted: doomed.len(),
            ..Default::default()
        };
        for k in doomed {
            self.objects.remove(&k);
        }
        for o in items {
            match self.put(o) {
                PutOutcome::Created | PutOutcome::Updated => out.written += 1,
                _ => out.kept += 1,
            }
        }
        self.lists.insert((ns.to_owned(), sel), list_rv.to_owned());
        out
    }
}

fn gvr() -> Gvr {
    Gvr::new("", "v1", "configmaps")
}

fn scope(ns: &str, sel: usize) -> ListScope {
    let (l, f) = SELECTORS[sel];
    ListScope::parse("fuzz", &gvr(), ns, l, f).expect("selector")
}

fn open(disk: Disk) -> SyncStore {
    let db = redb::Builder::new()
        .create_with_backend(disk)
        .expect("open the disk image");
    SyncStore::new(db, StoreMetrics::default()).expect("schema")
}

/// Checks the whole store against the model.
fn check(store: &SyncStore, model: &Model) {
    let snap = store.snapshot().expect("snapshot");
    let mut stored = Objects::new();
    for (k, o) in snap.all_objects().expect("objects") {
        let v: serde_json::Value = serde_json::from_slice(&o.json).expect("stored JSON");
        assert_eq!(
            v["metadata"]["resourceVersion"],
            o.resource_version.as_str()
        );
        let app = v["metadata"]["labels"]["app"]
            .as_str()
            .expect("app")
            .to_owned();
        stored.insert((k.namespace, k.name), (o.resource_version, app));
    }
    assert_eq!(stored, model.objects);
    for ns in std::iter::once("").chain(NAMESPACES) {
        for sel in 0..SELECTORS.len() {
            let got = snap.list(&scope(ns, sel)).expect("list");
            let got: Vec<String> = got
                .items
                .iter()
                .map(|i| i.resource_version.clone())
                .collect();
            let want: Vec<String> = model
                .objects
                .iter()
                .filter(|((ons, name), (_, app))| {
                    (ns.is_empty() || ns == ons) && selected(sel, name, app)
                })
                .map(|(_, (rv, _))| rv.clone())
                .collect();
            assert_eq!(got.len(), want.len(), "scope {ns:?} selector {sel}");
            let meta = snap.list_meta(&scope(ns, sel).key()).expect("meta");
            assert_eq!(
                meta.map(|m| m.resource_version),
                model.lists.get(&(ns.to_owned(), sel)).cloned()
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let disk = Disk::default();
    let store = open(disk.clone());
    let mut committed = Model::default();
    let mut working = Model::default();
    let mut txn = store.begin().expect("begin");
    let crash_at = usize::from(input.crash_after);
    let mut crashed = false;
    for (i, op) in input.ops.iter().enumerate() {
        if i == crash_at {
            crashed = true;
            break;
        }
        let (write, want) = match op {
            Op::Commit => {
                txn.commit().expect("commit");
                committed = working.clone();
                txn = store.begin().expect("begin");
                continue;
            }
            Op::Put(o) => (
                WriteOp::Put {
                    component: "fuzz".into(),
                    gvr: gvr(),
                    object: o.object(),
                },
                OpOutcome::Put(working.put(o)),
            ),
            Op::Delete { obj, with_rv } => {
                let rv = with_rv.then(|| obj.rv.text());
                (
                    WriteOp::Delete {
                        key: ObjectKey::new("fuzz", &gvr(), obj.ns(), obj.name()),
                        resource_version: rv.clone(),
                    },
                    OpOutcome::Delete(working.delete(obj, rv)),
                )
            }
            Op::Watch(events) => {
                let mut want = Vec::new();
                let mut evs = Vec::new();
                for (kind, o) in events {
                    let kind = match kind % 4 {
                        0 => EventKind::Added,
                        1 => EventKind::Modified,
                        2 => EventKind::Deleted,
                        _ => EventKind::Bookmark,
                    };
                    want.push(match kind {
                        EventKind::Added | EventKind::Modified => EventOutcome::Put(working.put(o)),
                        EventKind::Deleted => {
                            EventOutcome::Delete(working.delete(o, Some(o.rv.text())))
                        }
                        EventKind::Bookmark => EventOutcome::Ignored,
                    });
                    evs.push(WatchEvent {
                        kind,
                        object: o.object(),
                    });
                }
                (
                    WriteOp::Watch {
                        component: "fuzz".into(),
                        gvr: gvr(),
                        events: evs,
                    },
                    OpOutcome::Watch(want),
                )
            }
            Op::Replace {
                ns,
                selector,
                items,
                list_rv,
            } => {
                // Scope namespace: "" (cluster-wide) or one namespace; items of a namespaced
                // scope live in it, as the apiserver would send them.
                let ns_idx = usize::from(*ns) % (NAMESPACES.len() + 1);
                let scope_ns = if ns_idx == 0 {
                    ""
                } else {
                    NAMESPACES[ns_idx - 1]
                };
                let items: Vec<Obj> = items
                    .iter()
                    .map(|o| {
                        let mut o = o.clone();
                        if ns_idx > 0 {
                            o.ns = (ns_idx - 1) as u8;
                        }
                        o
                    })
                    .collect();
                let sel = usize::from(*selector) % SELECTORS.len();
                let want = working.replace(scope_ns, sel, &items, &list_rv.text());
                (
                    WriteOp::ReplaceList {
                        scope: scope(scope_ns, sel),
                        meta: ListMeta {
                            resource_version: list_rv.text(),
                            kind: "ConfigMapList".into(),
                            api_version: "v1".into(),
                            completed_at_ms: 0,
                        },
                        items: items.iter().map(Obj::object).collect(),
                    },
                    OpOutcome::Replace(want),
                )
            }
        };
        let got = txn.apply(std::slice::from_ref(&write)).expect("apply");
        assert_eq!(got, vec![want], "op {i}: {op:?}");
    }

    let image = if crashed {
        // Crash: the disk as the process left it, open transaction and all.
        let image = disk.image();
        drop(txn);
        drop(store);
        image
    } else {
        txn.commit().expect("final commit");
        committed = working;
        check(&store, &committed);
        drop(store);
        disk.image()
    };
    let reopened = open(image);
    check(&reopened, &committed);
});
