//! Store semantics: compare-and-write, deletes, list scopes and replace, group commit, space.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use yurt_cache::store::{
    DeleteOutcome, EventKind, EventOutcome, Gvr, ListMeta, ListScope, Object, ObjectKey,
    PutOutcome, RedbStore, Store, StoreConfig, SyncStore, WatchEvent, WriteOp,
};

use crate::util::{Rng, config, names, open, pod, pods};

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new("kubelet", &pods(), ns, name)
}

fn meta(rv: u64) -> ListMeta {
    ListMeta {
        resource_version: rv.to_string(),
        kind: "PodList".into(),
        api_version: "v1".into(),
        completed_at_ms: 1,
    }
}

fn scope(ns: &str, labels: &str, fields: &str) -> ListScope {
    ListScope::parse("kubelet", &pods(), ns, labels, fields).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_compares_resource_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let g = pods();
    let put = |rv| store.put("kubelet", &g, pod("default", "a", rv, "x", "n1"));
    assert_eq!(put(10).await.unwrap(), PutOutcome::Created);
    assert_eq!(put(10).await.unwrap(), PutOutcome::Unchanged);
    // "9" < "10" numerically although "9" > "10" as text.
    assert_eq!(
        put(9).await.unwrap(),
        PutOutcome::Stale {
            stored: "10".into()
        }
    );
    assert_eq!(put(11).await.unwrap(), PutOutcome::Updated);
    let got = store.get(&key("default", "a")).await.unwrap().unwrap();
    assert_eq!(got.resource_version, "11");
    let v: serde_json::Value = serde_json::from_slice(&got.json).unwrap();
    assert_eq!(v["metadata"]["resourceVersion"], "11");

    // Opaque (non-numeric) versions: order unknown, so the write wins.
    let opaque = Object::from_json(
        r#"{"metadata":{"name":"a","namespace":"default","resourceVersion":"abc"}}"#,
    )
    .unwrap();
    assert_eq!(
        store.put("kubelet", &g, opaque).await.unwrap(),
        PutOutcome::Updated
    );
    assert_eq!(
        store
            .put("kubelet", &g, pod("default", "a", 5, "x", "n1"))
            .await
            .unwrap(),
        PutOutcome::Updated
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_refused_before_the_writer() {
    for bad in [
        &b"not json"[..],
        b"[1,2]",
        br#"{"metadata":{}}"#,
        br#"{"metadata":{"name":""}}"#,
        b"{\"metadata\":{\"name\":\"a\"}} trailing",
        b"{\"metadata\":{\"name\":\"\xff\"}}",
    ] {
        assert!(
            Object::from_json(Bytes::copy_from_slice(bad)).is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_respects_newer_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let g = pods();
    store
        .put("kubelet", &g, pod("default", "a", 20, "x", "n1"))
        .await
        .unwrap();
    let k = key("default", "a");
    assert_eq!(
        store.delete(&k, Some("19")).await.unwrap(),
        DeleteOutcome::Stale {
            stored: "20".into()
        }
    );
    assert!(store.get(&k).await.unwrap().is_some());
    assert_eq!(
        store.delete(&k, Some("21")).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store.delete(&k, None).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(store.get(&k).await.unwrap().is_none());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_names_do_not_collide_or_leak_across_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let g = pods();
    // `a/b` in `ns` vs `b` in `ns/a`; NUL and non-ASCII; namespace `ns2` next to `ns`.
    let objs = [
        ("ns", "a/b"),
        ("ns/a", "b"),
        ("ns", "nul\0x"),
        ("ns", "ünïcødé"),
        ("ns2", "a"),
        ("ns-", "a"),
        ("n", "s"),
    ];
    for (i, (ns, name)) in objs.iter().enumerate() {
        let o = pod(ns, name, i as u64 + 1, "x", "n1");
        assert_eq!(
            store.put("kubelet", &g, o).await.unwrap(),
            PutOutcome::Created
        );
    }
    for (i, (ns, name)) in objs.iter().enumerate() {
        let got = store.get(&key(ns, name)).await.unwrap().unwrap();
        assert_eq!(got.resource_version, (i + 1).to_string());
    }
    let mut in_ns = names(&store.list(&scope("ns", "", "")).await.unwrap().items);
    in_ns.sort();
    assert_eq!(in_ns, ["a/b", "nul\0x", "ünïcødé"]);
    assert_eq!(
        store.list(&scope("", "", "")).await.unwrap().items.len(),
        objs.len()
    );
    // Another component sees nothing.
    let other = ListScope::parse("kube-proxy", &g, "", "", "").unwrap();
    assert!(store.list(&other).await.unwrap().items.is_empty());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_applies_selectors_and_reports_scope_meta() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    let items = vec![
        pod("a", "p1", 5, "web", "n1"),
        pod("a", "p2", 7, "db", "n1"),
        pod("b", "p3", 6, "web", "n2"),
    ];
    store
        .replace_list(&scope("", "", ""), meta(9), items)
        .await
        .unwrap();

    let all = store.list(&scope("", "", "")).await.unwrap();
    assert_eq!(names(&all.items), ["p1", "p2", "p3"]);
    assert_eq!(all.resource_version, "7", "highest item resourceVersion");
    assert_eq!(all.meta.unwrap().resource_version, "9");

    let web = store.list(&scope("", "app=web", "")).await.unwrap();
    assert_eq!(names(&web.items), ["p1", "p3"]);
    assert!(web.meta.is_none(), "this exact scope was never listed");
    assert_eq!(
        names(&store.list(&scope("a", "app=web", "")).await.unwrap().items),
        ["p1"]
    );
    assert_eq!(
        names(
            &store
                .list(&scope("", "", "spec.nodeName=n2"))
                .await
                .unwrap()
                .items
        ),
        ["p3"]
    );
    assert_eq!(
        names(
            &store
                .list(&scope("", "", "metadata.name=p2,metadata.namespace=a"))
                .await
                .unwrap()
                .items
        ),
        ["p2"]
    );
    assert_eq!(
        names(
            &store
                .list(&scope("a", "", "metadata.name=p2"))
                .await
                .unwrap()
                .items
        ),
        ["p2"]
    );
    assert!(
        store
            .list(&scope("b", "app=db", ""))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_order_is_one_scope() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .replace_list(&scope("", "a=1,b=2", ""), meta(3), vec![])
        .await
        .unwrap();
    let r = store.list(&scope("", "b=2,a=1", "")).await.unwrap();
    assert_eq!(r.meta.unwrap().resource_version, "3");
    let scopes = store.scopes("kubelet").await.unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(store.components().await.unwrap(), ["kubelet"]);
    store.shutdown().await;
}

/// OpenYurt #1400: one component, two list scopes of one resource with different selectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_of_one_scope_leaves_sibling_scopes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let web = scope("", "app=web", "");
    let db = scope("", "app=db", "");
    store
        .replace_list(
            &web,
            meta(10),
            vec![pod("a", "w1", 3, "web", "n"), pod("a", "w2", 4, "web", "n")],
        )
        .await
        .unwrap();
    store
        .replace_list(
            &db,
            meta(11),
            vec![pod("a", "d1", 5, "db", "n"), pod("b", "d2", 6, "db", "n")],
        )
        .await
        .unwrap();
    // The web list shrinks: w2 is gone. db objects are not selected by `app=web` and stay.
    let out = store
        .replace_list(&web, meta(12), vec![pod("a", "w1", 3, "web", "n")])
        .await
        .unwrap();
    assert_eq!((out.deleted, out.written, out.kept), (1, 0, 1));
    assert_eq!(names(&store.list(&db).await.unwrap().items), ["d1", "d2"]);
    assert_eq!(names(&store.list(&web).await.unwrap().items), ["w1"]);
    assert_eq!(
        names(&store.list(&scope("", "", "")).await.unwrap().items),
        ["d1", "w1", "d2"]
    );
    // An empty namespaced list removes only that namespace's selection.
    store
        .replace_list(&scope("b", "app=db", ""), meta(13), vec![])
        .await
        .unwrap();
    assert_eq!(names(&store.list(&db).await.unwrap().items), ["d1"]);
    let mut scopes: Vec<_> = store
        .scopes("kubelet")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| (k.namespace, k.label_selector))
        .collect();
    scopes.sort();
    assert_eq!(
        scopes,
        [
            ("".to_owned(), "app=db".to_owned()),
            ("".to_owned(), "app=web".to_owned()),
            ("b".to_owned(), "app=db".to_owned())
        ]
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_keeps_objects_newer_than_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let g = pods();
    // Written by a watch after the list below was served (rv 50 > list rv 40).
    store
        .put("kubelet", &g, pod("a", "late", 50, "x", "n"))
        .await
        .unwrap();
    store
        .put("kubelet", &g, pod("a", "gone", 30, "x", "n"))
        .await
        .unwrap();
    store
        .put("kubelet", &g, pod("a", "fresh", 45, "x", "n"))
        .await
        .unwrap();
    let out = store
        .replace_list(
            &scope("a", "", ""),
            meta(40),
            vec![
                pod("a", "fresh", 35, "x", "n"),
                pod("a", "new", 36, "x", "n"),
            ],
        )
        .await
        .unwrap();
    // gone: deleted; late: kept (newer); fresh: stored 45 kept over item 35; new: written.
    assert_eq!((out.deleted, out.written, out.kept), (1, 1, 1));
    let r = store.list(&scope("a", "", "")).await.unwrap();
    assert_eq!(names(&r.items), ["fresh", "late", "new"]);
    assert_eq!(r.items[0].resource_version, "45");
    store.shutdown().await;
}

/// A reader racing a list replace sees the old list or the new one, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_atomic_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sc = scope("ns", "", "");
    let gen_items = |generation: u64| {
        (0..300)
            .map(|i| {
                pod(
                    "ns",
                    &format!("g{generation}-{i}"),
                    generation * 1000 + i,
                    "x",
                    "n",
                )
            })
            .collect::<Vec<_>>()
    };
    store
        .replace_list(&sc, meta(999), gen_items(1))
        .await
        .unwrap();
    let reader = {
        let store = store.clone();
        let sc = sc.clone();
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let r = store.list(&sc).await.unwrap();
                let gens: std::collections::BTreeSet<String> = names(&r.items)
                    .into_iter()
                    .map(|n| n.split('-').next().unwrap().to_owned())
                    .collect();
                assert_eq!(gens.len(), 1, "mixed generations {gens:?}");
                assert_eq!(r.items.len(), 300);
                seen.extend(gens);
            }
            seen
        })
    };
    for generation in 2..8u64 {
        store
            .replace_list(&sc, meta(generation * 1000 + 999), gen_items(generation))
            .await
            .unwrap();
    }
    let seen = reader.await.unwrap();
    assert!(!seen.is_empty());
    store.shutdown().await;
}

/// Racing writers deliver versions of the same objects in random order; whatever the
/// interleaving, each object ends at its highest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_regress() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let seed = Rng::seed_from_time();
    println!("seed {seed}");
    const OBJECTS: u64 = 16;
    const VERSIONS: u64 = 40;
    const WRITERS: u64 = 8;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x1234_5678_9ABC));
            // Each writer owns a shuffled share of every object's versions.
            let mut work: Vec<(u64, u64)> = (0..OBJECTS)
                .flat_map(|o| {
                    (0..VERSIONS)
                        .filter(move |v| v % WRITERS == w)
                        .map(move |v| (o, v + 1))
                })
                .collect();
            for i in (1..work.len()).rev() {
                work.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for (o, v) in work {
                let obj = pod("ns", &format!("o{o}"), v, "x", "n");
                if rng.below(2) == 0 {
                    store.put("kubelet", &pods(), obj).await.unwrap();
                } else {
                    let ev = WatchEvent {
                        kind: EventKind::Modified,
                        object: obj,
                    };
                    store
                        .apply_watch_events("kubelet", &pods(), vec![ev])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for o in 0..OBJECTS {
        let got = store
            .get(&key("ns", &format!("o{o}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.resource_version,
            VERSIONS.to_string(),
            "object o{o}, seed {seed}"
        );
        let v: serde_json::Value = serde_json::from_slice(&got.json).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], VERSIONS.to_string());
    }
    assert!(
        store.metrics().stale_writes.get() > 0,
        "the race produced stale writes"
    );
    store.shutdown().await;
}

fn ev(ns: &str, name: &str, rv: u64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Added,
        object: pod(ns, name, rv, "x", "n"),
    }
}

/// N events close a batch before T: with T at an hour, N=4 events commit in one transaction.
/// Until the batch closes nothing is visible (nothing is durable, and nobody is told otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_closes_at_n_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_commit_events = 4;
    cfg.group_commit_window = Duration::from_secs(3600);
    cfg.op_timeout = Duration::from_secs(7200);
    let store = RedbStore::open(cfg).unwrap();
    let g = pods();
    let mut tickets = Vec::new();
    for i in 0..3 {
        tickets.push(
            store
                .submit_watch_events("kubelet", &g, vec![ev("ns", &format!("e{i}"), i + 1)])
                .await
                .unwrap(),
        );
    }
    // Three of four events queued: not committed, so not visible.
    assert!(
        store
            .snapshot()
            .unwrap()
            .get(&key("ns", "e0"))
            .unwrap()
            .is_none()
    );
    assert_eq!(store.metrics().commits.get(), 0);
    tickets.push(
        store
            .submit_watch_events("kubelet", &g, vec![ev("ns", "e3", 4)])
            .await
            .unwrap(),
    );
    for t in tickets {
        assert_eq!(
            t.durable().await.unwrap(),
            [EventOutcome::Put(PutOutcome::Created)]
        );
    }
    assert_eq!(
        store.metrics().commits.get(),
        1,
        "one transaction for the four events"
    );
    for i in 0..4 {
        assert!(
            store
                .snapshot()
                .unwrap()
                .get(&key("ns", &format!("e{i}")))
                .unwrap()
                .is_some()
        );
    }
    store.shutdown().await;
}

/// T closes a batch that never reaches N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_closes_at_t() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_commit_events = 1_000_000;
    cfg.group_commit_window = Duration::from_millis(20);
    let store = RedbStore::open(cfg).unwrap();
    let outs = store
        .apply_watch_events("kubelet", &pods(), vec![ev("ns", "a", 1), ev("ns", "b", 2)])
        .await
        .unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(store.metrics().commits.get(), 1);
    store.shutdown().await;
}

/// Another write joins the open batch and closes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_closes_the_open_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_commit_events = 1000;
    cfg.group_commit_window = Duration::from_secs(3600);
    cfg.op_timeout = Duration::from_secs(7200);
    let store = RedbStore::open(cfg).unwrap();
    let t = store
        .submit_watch_events("kubelet", &pods(), vec![ev("ns", "a", 1)])
        .await
        .unwrap();
    store
        .put_nonresource(
            "/version",
            Bytes::from_static(b"{\"gitVersion\":\"v1.36.0\"}"),
        )
        .await
        .unwrap();
    t.durable().await.unwrap();
    assert_eq!(store.metrics().commits.get(), 1);
    assert_eq!(
        store.get_nonresource("/version").await.unwrap().unwrap(),
        Bytes::from_static(b"{\"gitVersion\":\"v1.36.0\"}")
    );
    assert!(store.get_nonresource("/apis").await.unwrap().is_none());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_apply_in_order_with_deletes_and_bookmarks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let g = pods();
    let events = vec![
        ev("ns", "a", 1),
        WatchEvent {
            kind: EventKind::Modified,
            object: pod("ns", "a", 2, "y", "n"),
        },
        WatchEvent {
            kind: EventKind::Deleted,
            object: pod("ns", "a", 3, "y", "n"),
        },
        WatchEvent {
            kind: EventKind::Bookmark,
            object: pod("ns", "bm", 4, "y", "n"),
        },
        ev("ns", "b", 5),
        WatchEvent {
            kind: EventKind::Modified,
            object: pod("ns", "b", 4, "y", "n"),
        },
    ];
    let outs = store
        .apply_watch_events("kubelet", &g, events)
        .await
        .unwrap();
    assert_eq!(
        outs,
        [
            EventOutcome::Put(PutOutcome::Created),
            EventOutcome::Put(PutOutcome::Updated),
            EventOutcome::Delete(DeleteOutcome::Deleted),
            EventOutcome::Ignored,
            EventOutcome::Put(PutOutcome::Created),
            EventOutcome::Put(PutOutcome::Stale { stored: "5".into() }),
        ]
    );
    assert!(store.get(&key("ns", "a")).await.unwrap().is_none());
    assert!(store.get(&key("ns", "bm")).await.unwrap().is_none());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_usage_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.set_last_healthy(1234).await.unwrap();
        store
            .put("kubelet", &pods(), pod("ns", "a", 1, "x", "n"))
            .await
            .unwrap();
        store
            .put(
                "coredns",
                &Gvr::new("discovery.k8s.io", "v1", "endpointslices"),
                pod("ns", "e", 1, "x", "n"),
            )
            .await
            .unwrap();
        let u = store.usage().await.unwrap();
        assert_eq!(u.objects, 2);
        assert!(u.object_bytes > 0 && u.file_bytes >= u.live_bytes);
        store.shutdown().await;
    }
    let store = open(dir.path());
    assert_eq!(store.last_healthy().await.unwrap(), Some(1234));
    assert_eq!(store.components().await.unwrap(), ["coredns", "kubelet"]);
    assert_eq!(store.metrics().quarantined_total(), 0);
    store.shutdown().await;
    assert!(matches!(
        store
            .put("kubelet", &pods(), pod("ns", "b", 1, "x", "n"))
            .await,
        Err(yurt_cache::store::StoreError::Closed)
    ));
}

/// Updating the same 10,000 objects 100 times keeps the file within 3x the live data (after
/// `compact()` if the uncompacted file is larger). Prints both figures.
#[test]
fn space_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let db = redb::Database::create(&path).unwrap();
    let store = SyncStore::new(db, Default::default()).unwrap();
    const N: u64 = 10_000;
    const ROUNDS: u64 = 100;
    let mut max_file = 0;
    for round in 0..ROUNDS {
        for chunk in (0..N).collect::<Vec<_>>().chunks(1024) {
            let ops: Vec<WriteOp> = chunk
                .iter()
                .map(|i| WriteOp::Put {
                    component: "kubelet".into(),
                    gvr: pods(),
                    // Built as text: this test is about the file, not JSON speed.
                    object: Object::from_json(format!(
                        r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"pod-{i:05}","namespace":"ns","resourceVersion":"{}","labels":{{"app":"x"}}}},"spec":{{"nodeName":"node-1","containers":[{{"name":"c","image":"nginx"}}]}},"status":{{"phase":"Running"}}}}"#,
                        round * N + i + 1
                    ))
                    .unwrap(),
                })
                .collect();
            store.apply(&ops).unwrap();
        }
        max_file = max_file.max(std::fs::metadata(&path).unwrap().len());
    }
    let live = store.snapshot().unwrap().usage().unwrap().live_bytes;
    let before = std::fs::metadata(&path).unwrap().len();
    let after = if before > 3 * live {
        store.compact().unwrap();
        std::fs::metadata(&path).unwrap().len()
    } else {
        before
    };
    println!(
        "live {live} B, file after {ROUNDS} rounds {before} B ({:.2}x, peak {:.2}x), after compact-if-needed {after} B ({:.2}x)",
        before as f64 / live as f64,
        max_file as f64 / live as f64,
        after as f64 / live as f64
    );
    assert!(after <= 3 * live, "file {after} B > 3x live {live} B");
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.usage().unwrap().objects, N);
    let got = snap
        .get(&ObjectKey::new("kubelet", &pods(), "ns", "pod-00007"))
        .unwrap()
        .unwrap();
    assert_eq!(got.resource_version, ((ROUNDS - 1) * N + 8).to_string());
}

/// Store handles are shared across tasks; dropping the last one stops the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let a = (*store).clone();
    a.put("kubelet", &pods(), pod("ns", "a", 1, "x", "n"))
        .await
        .unwrap();
    drop(a);
    assert!(store.get(&key("ns", "a")).await.unwrap().is_some());
    let cfg: StoreConfig = config(dir.path());
    drop(store);
    // The file is free again once every handle is gone.
    let again = RedbStore::open_async(cfg).await.unwrap();
    assert!(again.get(&key("ns", "a")).await.unwrap().is_some());
    again.shutdown().await;
}
