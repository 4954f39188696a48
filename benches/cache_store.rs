//! The hub's object cache (`yurt_cache::store::RedbStore`) against two peer designs, measured in
//! the same run on the same disk:
//!
//! * **file-per-object** (YurtHub's disk storage): one JSON file per object under
//!   `<component>/<resource>.<version>.<group>/<namespace>/<name>`, each write a temp file,
//!   fsync, rename; a list replace swaps the directory; no batching.
//! * **sqlite** (KubeEdge's MetaManager design): one row per object in
//!   `meta(key TEXT PRIMARY KEY, type TEXT, value TEXT)`, SQLite defaults (rollback journal,
//!   `synchronous=FULL`); batches get one transaction, the best case for SQLite.
//!
//! All three are durable per acknowledged write (fsync). Benchmarks: durable single put;
//! watch-event batches of 1, 64 and 1,024 per commit; get; list 10k pods with and without a
//! label selector; replace a 10k list; open of a 10k-object store (files in the page cache: the
//! OS cache is not dropped, so "cold" means a new process-level open, not a cold disk).
//!
//! Watch batches are measured three ways: "isolated" (submit N single-event tickets, wait for
//! all, repeat: parse, submit and commit do not overlap), "stream" (8 batches submitted back to
//! back, as a watch tee would, so parsing overlaps committing), and the engine alone
//! (`SyncStore` with pre-validated objects). redb's figures include validating each object's
//! JSON (`Object::from_json`), which the baselines do not do. The file-per-object store cannot
//! batch, so its per-event cost is one durable write, measured over 64.
//!
//! Criterion prints its usual estimates; at the end the bench times the same operations again
//! with plain `Instant` loops and prints one ratio line per comparison plus the targets.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rusqlite::{Connection, params};
use yurt_cache::store::{
    EventKind, Gvr, ListMeta, ListScope, Object, ObjectKey, RedbStore, Store, StoreConfig,
    SyncStore, WatchEvent, WriteOp,
};

const PODS: usize = 10_000;
/// Distinct `app` label values: `app=web-3` selects one pod in ten.
const APPS: usize = 10;

fn gvr() -> Gvr {
    Gvr::new("", "v1", "pods")
}

/// A pod as kubelet receives it (~1.6 KB of JSON).
fn pod_json(ns: &str, i: usize, rv: u64) -> String {
    serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": format!("pod-{i:05}"),
            "namespace": ns,
            "uid": format!("0b6f0b9e-6a0c-4c1e-9d7c-{i:012}"),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": format!("web-{}", i % APPS), "pod-template-hash": "5d78c9869d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d78c9869d", "uid": "9a3e1f2c-0000-4000-8000-000000000001", "controller": true}],
        },
        "spec": {
            "nodeName": "edge-1",
            "containers": [{
                "name": "web", "image": "registry.example.com/web:1.2.3",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "env": [{"name": "MODE", "value": "edge"}, {"name": "LOG_LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            }],
            "restartPolicy": "Always", "serviceAccountName": "default", "dnsPolicy": "ClusterFirst",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "podIP": format!("10.244.{}.{}", i / 250, i % 250), "hostIP": "192.168.1.10",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "registry.example.com/web:1.2.3", "containerID": format!("containerd://{i:064}")}],
        },
    })
    .to_string()
}

fn pod(ns: &str, i: usize, rv: u64) -> Object {
    Object::from_json(pod_json(ns, i, rv)).expect("valid pod")
}

/// Pods of namespace `default` pre-rendered around their resourceVersion, so the timed loops
/// pay for `Object::from_json` (the store's validation, part of its cost) but not for building
/// JSON with `serde_json::json!` (the bench's own cost; the SQLite and file baselines get their
/// JSON pre-rendered too).
fn templates() -> &'static [(String, String)] {
    static T: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        (0..PODS)
            .map(|i| {
                let json = pod_json("default", i, 987_654_321_012);
                let (head, tail) = json.split_once("987654321012").expect("marker");
                (head.to_owned(), tail.to_owned())
            })
            .collect()
    })
}

fn default_pod(i: usize, rv: u64) -> Object {
    let (head, tail) = &templates()[i % PODS];
    Object::from_json(format!("{head}{rv}{tail}")).expect("valid pod")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ------------------------------------------------------------------------------------------
// Baseline 1: YurtHub's file-per-object store.

struct FileStore {
    root: PathBuf,
}

impl FileStore {
    fn new(root: &Path) -> Self {
        let root = root.join("kubelet").join("pods.v1.core");
        fs::create_dir_all(&root).expect("mkdir");
        Self { root }
    }

    fn put(&self, ns: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(ns);
        if !dir.exists() {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        let tmp = dir.join(format!(".tmp_{name}"));
        let mut f = fs::File::create(&tmp).expect("create");
        std::io::Write::write_all(&mut f, data).expect("write");
        f.sync_all().expect("fsync");
        fs::rename(&tmp, dir.join(name)).expect("rename");
    }

    fn get(&self, ns: &str, name: &str) -> Vec<u8> {
        fs::read(self.root.join(ns).join(name)).expect("read")
    }

    fn list(&self, app: Option<&str>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for ns in fs::read_dir(&self.root).expect("readdir") {
            for f in fs::read_dir(ns.expect("entry").path()).expect("readdir") {
                let path = f.expect("entry").path();
                let data = fs::read(&path).expect("read");
                if let Some(app) = app {
                    let v: serde_json::Value = serde_json::from_slice(&data).expect("json");
                    if v["metadata"]["labels"]["app"] != app {
                        continue;
                    }
                }
                out.push(data);
            }
        }
        out
    }

    /// `ReplaceComponentList`: move the directory aside, write the new items, drop the old.
    fn replace(&self, ns: &str, items: &[(String, String)]) {
        let dir = self.root.join(ns);
        let old = self.root.join(format!("tmp_{ns}"));
        if dir.exists() {
            fs::rename(&dir, &old).expect("rename");
        }
        for (name, data) in items {
            self.put(ns, name, data.as_bytes());
        }
        if old.exists() {
            fs::remove_dir_all(&old).expect("rm");
        }
    }

    /// Loads without writing (`Recover()` walks the tree looking for `tmp_` leftovers).
    fn open_walk(&self) -> usize {
        let mut n = 0;
        for ns in fs::read_dir(&self.root).expect("readdir") {
            n += fs::read_dir(ns.expect("entry").path())
                .expect("readdir")
                .count();
        }
        n
    }
}

// ------------------------------------------------------------------------------------------
// Baseline 2: KubeEdge's SQLite meta table.

fn sqlite_open(path: &Path) -> Connection {
    let c = Connection::open(path).expect("sqlite open");
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, type TEXT, value TEXT);",
    )
    .expect("schema");
    c
}

fn sqlite_key(ns: &str, name: &str) -> String {
    format!("kubelet/pods/{ns}/{name}")
}

fn sqlite_put(c: &Connection, ns: &str, name: &str, data: &str) {
    c.execute(
        "INSERT OR REPLACE INTO meta (key, type, value) VALUES (?1, 'pod', ?2)",
        params![sqlite_key(ns, name), data],
    )
    .expect("insert");
}

fn sqlite_batch(c: &mut Connection, items: &[(String, String)], ns: &str) {
    let tx = c.transaction().expect("begin");
    {
        let mut st = tx
            .prepare_cached("INSERT OR REPLACE INTO meta (key, type, value) VALUES (?1, 'pod', ?2)")
            .expect("prepare");
        for (name, data) in items {
            st.execute(params![sqlite_key(ns, name), data])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn sqlite_get(c: &Connection, ns: &str, name: &str) -> String {
    c.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .expect("prepare")
        .query_row(params![sqlite_key(ns, name)], |r| r.get(0))
        .expect("row")
}

fn sqlite_list(c: &Connection, app: Option<&str>) -> Vec<String> {
    let mut st = c
        .prepare_cached(
            "SELECT value FROM meta WHERE key >= 'kubelet/pods/' AND key < 'kubelet/pods0'",
        )
        .expect("prepare");
    let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("query");
    let mut out = Vec::new();
    for row in rows {
        let data = row.expect("row");
        if let Some(app) = app {
            let v: serde_json::Value = serde_json::from_str(&data).expect("json");
            if v["metadata"]["labels"]["app"] != app {
                continue;
            }
        }
        out.push(data);
    }
    out
}

fn sqlite_replace(c: &mut Connection, ns: &str, items: &[(String, String)]) {
    let tx = c.transaction().expect("begin");
    tx.execute(
        "DELETE FROM meta WHERE key >= ?1 AND key < ?2",
        params![format!("kubelet/pods/{ns}/"), format!("kubelet/pods/{ns}0")],
    )
    .expect("delete");
    {
        let mut st = tx
            .prepare_cached("INSERT INTO meta (key, type, value) VALUES (?1, 'pod', ?2)")
            .expect("prepare");
        for (name, data) in items {
            st.execute(params![sqlite_key(ns, name), data])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

// ------------------------------------------------------------------------------------------
// redb helpers.

fn redb_config(path: &Path, batch: usize) -> StoreConfig {
    let mut cfg = StoreConfig::new(path);
    cfg.group_commit_events = batch;
    // Batches close on their size here; the window only bounds a stuck benchmark.
    cfg.group_commit_window = Duration::from_secs(10);
    cfg
}

fn scope(label: &str) -> ListScope {
    ListScope::parse("kubelet", &gvr(), "", label, "").expect("scope")
}

fn list_meta(rv: u64) -> ListMeta {
    ListMeta {
        resource_version: rv.to_string(),
        kind: "PodList".into(),
        api_version: "v1".into(),
        completed_at_ms: 0,
    }
}

fn items(ns: &str, rv: u64) -> Vec<(String, String)> {
    (0..PODS)
        .map(|i| (format!("pod-{i:05}"), pod_json(ns, i, rv + i as u64)))
        .collect()
}

/// Applies `batch` watch events as `batch` pipelined single-event submissions that the store
/// group-commits into one transaction (its N is `batch`).
async fn redb_watch_batch(store: &RedbStore, batch: usize, rv: &mut u64) {
    let mut tickets = Vec::with_capacity(batch);
    for i in 0..batch {
        *rv += 1;
        let ev = WatchEvent {
            kind: EventKind::Modified,
            object: default_pod(i, *rv),
        };
        tickets.push(
            store
                .submit_watch_events("kubelet", &gvr(), vec![ev])
                .await
                .expect("submit"),
        );
    }
    for t in tickets {
        t.durable().await.expect("durable");
    }
}

/// A watch stream as the hub's tee produces it: `batches` x `batch` events submitted back to
/// back (parsing the next events while earlier batches commit), then every ticket awaited.
async fn redb_watch_stream(store: &RedbStore, batch: usize, batches: usize, rv: &mut u64) {
    let mut tickets = Vec::with_capacity(batch * batches);
    for i in 0..batch * batches {
        *rv += 1;
        let ev = WatchEvent {
            kind: EventKind::Modified,
            object: default_pod(i % batch, *rv),
        };
        tickets.push(
            store
                .submit_watch_events("kubelet", &gvr(), vec![ev])
                .await
                .expect("submit"),
        );
    }
    for t in tickets {
        t.durable().await.expect("durable");
    }
}

/// The fixture every read benchmark uses: 10k pods in 10 namespaces in each of the three
/// designs.
struct Fixture {
    _dir: tempfile::TempDir,
    redb: RedbStore,
    files: FileStore,
    sqlite: Connection,
}

fn namespace_of(i: usize) -> String {
    format!("ns-{}", i % 10)
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb_path = dir.path().join("cache.redb");
    let redb = RedbStore::open(StoreConfig::new(&redb_path)).expect("open");
    let files = FileStore::new(&dir.path().join("files"));
    let mut sqlite = sqlite_open(&dir.path().join("meta.db"));
    let all: Vec<(String, String, String)> = (0..PODS)
        .map(|i| {
            let ns = namespace_of(i);
            let json = pod_json(&ns, i, i as u64 + 1);
            (ns, format!("pod-{i:05}"), json)
        })
        .collect();
    rt.block_on(async {
        let objects = all
            .iter()
            .map(|(_, _, j)| Object::from_json(j.clone()).expect("pod"))
            .collect();
        // One cluster-wide list replace loads the store.
        redb.replace_list(&scope(""), list_meta(PODS as u64), objects)
            .await
            .expect("load");
    });
    for (ns, name, json) in &all {
        // Setup only: written without the per-file fsync the measured path pays.
        let dir = files.root.join(ns);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(name), json).expect("write");
    }
    let tx = sqlite.transaction().expect("begin");
    for (ns, name, json) in &all {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, type, value) VALUES (?1, 'pod', ?2)",
            params![sqlite_key(ns, name), json],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    Fixture {
        _dir: dir,
        redb,
        files,
        sqlite,
    }
}

// ------------------------------------------------------------------------------------------
// Criterion benchmarks.

fn bench_writes(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("cache_store/put_durable");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    let store = RedbStore::open(redb_config(&dir.path().join("put.redb"), 1)).expect("open");
    let mut rv = 0u64;
    g.bench_function("redb", |b| {
        b.iter(|| {
            rv += 1;
            rt.block_on(store.put("kubelet", &gvr(), default_pod((rv % 100) as usize, rv)))
                .expect("put")
        })
    });
    let files = FileStore::new(&dir.path().join("files"));
    let json = pod_json("default", 1, 1);
    g.bench_function("file-per-object", |b| {
        b.iter(|| files.put("default", "pod-00001", json.as_bytes()))
    });
    let sqlite = sqlite_open(&dir.path().join("put.db"));
    g.bench_function("sqlite", |b| {
        b.iter(|| sqlite_put(&sqlite, "default", "pod-00001", &json))
    });
    g.finish();
    rt.block_on(store.shutdown());

    let mut g = c.benchmark_group("cache_store/watch_batch");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    for batch in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(batch as u64));
        let store = RedbStore::open(redb_config(
            &dir.path().join(format!("watch-{batch}.redb")),
            batch,
        ))
        .expect("open");
        let mut rv = 0u64;
        g.bench_with_input(BenchmarkId::new("redb", batch), &batch, |b, &batch| {
            b.iter(|| rt.block_on(redb_watch_batch(&store, batch, &mut rv)))
        });
        if batch == 1024 {
            g.throughput(Throughput::Elements(8 * batch as u64));
            g.bench_with_input(
                BenchmarkId::new("redb-stream-8-batches", batch),
                &batch,
                |b, &batch| b.iter(|| rt.block_on(redb_watch_stream(&store, batch, 8, &mut rv))),
            );
            g.throughput(Throughput::Elements(batch as u64));
        }
        rt.block_on(store.shutdown());
        let mut sqlite = sqlite_open(&dir.path().join(format!("watch-{batch}.db")));
        let batch_items: Vec<(String, String)> = (0..batch)
            .map(|i| (format!("pod-{i:05}"), pod_json("default", i, i as u64)))
            .collect();
        g.bench_with_input(BenchmarkId::new("sqlite", batch), &batch, |b, _| {
            b.iter(|| sqlite_batch(&mut sqlite, &batch_items, "default"))
        });
        if batch <= 64 {
            // No batching in the file store: a batch is `batch` durable writes. 1,024 per
            // iteration takes seconds; it is timed once in the ratio pass instead.
            g.bench_with_input(
                BenchmarkId::new("file-per-object", batch),
                &batch,
                |b, _| {
                    b.iter(|| {
                        for (name, data) in &batch_items {
                            files.put("default", name, data.as_bytes());
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

fn bench_reads(c: &mut Criterion, rt: &tokio::runtime::Runtime, fx: &Fixture) {
    let mut g = c.benchmark_group("cache_store/get");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(200));
    let mut i = 0usize;
    let keys: Vec<ObjectKey> = (0..PODS)
        .map(|i| ObjectKey::new("kubelet", &gvr(), &namespace_of(i), &format!("pod-{i:05}")))
        .collect();
    g.bench_function("redb snapshot", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            black_box(
                fx.redb
                    .snapshot()
                    .expect("snap")
                    .get(&keys[i])
                    .expect("get"),
            )
        })
    });
    g.bench_function("redb async (spawn_blocking)", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            black_box(rt.block_on(fx.redb.get(&keys[i])).expect("get"))
        })
    });
    g.bench_function("file-per-object", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            black_box(fx.files.get(&namespace_of(i), &format!("pod-{i:05}")))
        })
    });
    g.bench_function("sqlite", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            black_box(sqlite_get(
                &fx.sqlite,
                &namespace_of(i),
                &format!("pod-{i:05}"),
            ))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cache_store/list_10k");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    for (label, sel, app) in [("all", "", None), ("app=web-3", "app=web-3", Some("web-3"))] {
        let sc = scope(sel);
        g.bench_function(BenchmarkId::new("redb", label), |b| {
            b.iter(|| black_box(rt.block_on(fx.redb.list(&sc)).expect("list").items.len()))
        });
        g.bench_function(BenchmarkId::new("file-per-object", label), |b| {
            b.iter(|| black_box(fx.files.list(app).len()))
        });
        g.bench_function(BenchmarkId::new("sqlite", label), |b| {
            b.iter(|| black_box(sqlite_list(&fx.sqlite, app).len()))
        });
    }
    g.finish();
}

fn bench_replace_and_open(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("cache_store/replace_10k");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(100));
    let store = RedbStore::open(StoreConfig::new(dir.path().join("replace.redb"))).expect("open");
    let mut rv = 0u64;
    let sc = ListScope::parse("kubelet", &gvr(), "default", "", "").expect("scope");
    g.bench_function("redb", |b| {
        b.iter_batched(
            || {
                rv += PODS as u64 + 1;
                let objs = (0..PODS)
                    .map(|i| pod("default", i, rv + i as u64))
                    .collect::<Vec<_>>();
                (objs, list_meta(rv + PODS as u64))
            },
            |(objs, meta)| {
                rt.block_on(store.replace_list(&sc, meta, objs))
                    .expect("replace")
            },
            criterion::BatchSize::PerIteration,
        )
    });
    rt.block_on(store.shutdown());
    drop(store);
    let mut sqlite = sqlite_open(&dir.path().join("replace.db"));
    let mut srv = 0u64;
    g.bench_function("sqlite", |b| {
        b.iter_batched(
            || {
                srv += PODS as u64;
                items("default", srv)
            },
            |its| sqlite_replace(&mut sqlite, "default", &its),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("cache_store/open_10k");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(100));
    let path = dir.path().join("replace.redb");
    g.bench_function("redb (integrity check)", |b| {
        b.iter(|| {
            let s = RedbStore::open(StoreConfig::new(&path)).expect("open");
            black_box(&s);
        })
    });
    g.bench_function("redb (no integrity check)", |b| {
        b.iter(|| {
            let mut cfg = StoreConfig::new(&path);
            cfg.verify_on_open = false;
            let s = RedbStore::open(cfg).expect("open");
            black_box(&s);
        })
    });
    let db = dir.path().join("replace.db");
    g.bench_function("sqlite (quick_check)", |b| {
        b.iter(|| {
            let c = Connection::open(&db).expect("open");
            let ok: String = c
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .expect("check");
            black_box(ok)
        })
    });
    g.finish();
}

// ------------------------------------------------------------------------------------------
// The ratio pass: the same operations timed with Instant, one line per comparison.

fn per_op(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn ratio_line(what: &str, ours: Duration, theirs: Duration, peer: &str) {
    println!(
        "{what}: redb {:>10.1?} vs {peer} {:>10.1?}: {:.1}x",
        ours,
        theirs,
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn ratios(rt: &tokio::runtime::Runtime, fx: &Fixture) {
    println!("\n== cache_store ratios (same run, same disk; >1x means redb is faster) ==");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = FileStore::new(&dir.path().join("files"));
    let mut sqlite = sqlite_open(&dir.path().join("r.db"));
    let json = pod_json("default", 1, 1);

    // Durable single put.
    let store = RedbStore::open(redb_config(&dir.path().join("r1.redb"), 1)).expect("open");
    let mut rv = 0u64;
    let redb_put = per_op(100, || {
        rv += 1;
        rt.block_on(store.put("kubelet", &gvr(), default_pod(1, rv)))
            .expect("put");
    });
    rt.block_on(store.shutdown());
    let file_put = per_op(100, || files.put("default", "pod-00001", json.as_bytes()));
    let sqlite_put_t = per_op(100, || sqlite_put(&sqlite, "default", "pod-00001", &json));
    ratio_line("durable single put", redb_put, file_put, "file-per-object");
    ratio_line("durable single put", redb_put, sqlite_put_t, "sqlite");

    // Watch batches: time per event.
    let mut batch1024_rate = (0.0, 0.0);
    for batch in [1usize, 64, 1024] {
        let store = RedbStore::open(redb_config(
            &dir.path().join(format!("rw{batch}.redb")),
            batch,
        ))
        .expect("open");
        let rounds = (4096 / batch).clamp(4, 64) as u32;
        let mut rv = 0u64;
        let redb_ev = per_op(rounds, || {
            rt.block_on(redb_watch_batch(&store, batch, &mut rv))
        }) / batch as u32;
        // The same batch size as a continuous stream: 8 batches in flight.
        let stream_ev = per_op(4, || {
            rt.block_on(redb_watch_stream(&store, batch, 8, &mut rv))
        }) / (8 * batch) as u32;
        rt.block_on(store.shutdown());
        let batch_items: Vec<(String, String)> = (0..batch)
            .map(|i| (format!("pod-{i:05}"), pod_json("default", i, i as u64)))
            .collect();
        let sqlite_ev = per_op(rounds.min(8), || {
            sqlite_batch(&mut sqlite, &batch_items, "default")
        }) / batch as u32;
        // No batching for files: time 64 durable writes and take the per-event cost.
        let file_ev = per_op(1, || {
            for (name, data) in batch_items.iter().take(64) {
                files.put("default", name, data.as_bytes());
            }
        }) / batch.min(64) as u32;
        let rate = 1.0 / redb_ev.as_secs_f64();
        let stream_rate = 1.0 / stream_ev.as_secs_f64();
        if batch == 1024 {
            batch1024_rate = (rate, stream_rate);
        }
        println!(
            "redb batch-{batch}: isolated batch {rate:.0} events/s ({redb_ev:.1?} per event); \
             stream {stream_rate:.0} events/s ({stream_ev:.1?} per event)"
        );
        ratio_line(
            &format!("redb batch-{batch} stream per event"),
            stream_ev,
            file_ev,
            "file-per-object",
        );
        ratio_line(
            &format!("redb batch-{batch} stream per event"),
            stream_ev,
            sqlite_ev,
            &format!("sqlite batch-{batch}"),
        );
        ratio_line(
            &format!("redb batch-{batch} isolated per event"),
            redb_ev,
            file_ev,
            "file-per-object",
        );
        ratio_line(
            &format!("redb batch-{batch} isolated per event"),
            redb_ev,
            sqlite_ev,
            &format!("sqlite batch-{batch}"),
        );
    }

    // The engine alone: SyncStore applying 1,024 pre-validated events per durable commit (what
    // the writer thread does; no parsing, channels or wake-ups).
    let db = yurt_cache::store::redb::Database::create(dir.path().join("engine.redb")).expect("db");
    let engine = SyncStore::new(db, Default::default()).expect("engine");
    let mut erv = 0u64;
    let mut engine_total = Duration::ZERO;
    for _ in 0..8 {
        let events: Vec<WatchEvent> = (0..1024)
            .map(|i| {
                erv += 1;
                WatchEvent {
                    kind: EventKind::Modified,
                    object: default_pod(i, erv),
                }
            })
            .collect();
        let op = WriteOp::Watch {
            component: "kubelet".into(),
            gvr: gvr(),
            events,
        };
        let t = Instant::now();
        engine.apply(std::slice::from_ref(&op)).expect("apply");
        engine_total += t.elapsed();
    }
    let engine_rate = 8.0 * 1024.0 / engine_total.as_secs_f64();
    println!(
        "redb engine (SyncStore, pre-validated objects) batch-1024: {engine_rate:.0} events/s"
    );

    // Get: p50 over single reads.
    let keys: Vec<ObjectKey> = (0..PODS)
        .map(|i| ObjectKey::new("kubelet", &gvr(), &namespace_of(i), &format!("pod-{i:05}")))
        .collect();
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|n| {
            let k = &keys[(n * 7919) % PODS];
            let t = Instant::now();
            black_box(fx.redb.snapshot().expect("snap").get(k).expect("get"));
            t.elapsed()
        })
        .collect();
    samples.sort();
    let get_p50 = samples[samples.len() / 2];
    let get_p99 = samples[samples.len() * 99 / 100];
    let mut n = 0usize;
    let redb_get = per_op(20_000, || {
        n = (n + 7919) % PODS;
        black_box(
            fx.redb
                .snapshot()
                .expect("snap")
                .get(&keys[n])
                .expect("get"),
        );
    });
    let redb_get_async = per_op(5_000, || {
        n = (n + 7919) % PODS;
        black_box(rt.block_on(fx.redb.get(&keys[n])).expect("get"));
    });
    let file_get = per_op(20_000, || {
        n = (n + 7919) % PODS;
        black_box(fx.files.get(&namespace_of(n), &format!("pod-{n:05}")));
    });
    let sqlite_get_t = per_op(20_000, || {
        n = (n + 7919) % PODS;
        black_box(sqlite_get(
            &fx.sqlite,
            &namespace_of(n),
            &format!("pod-{n:05}"),
        ));
    });
    println!(
        "redb get (snapshot): p50 {get_p50:.1?}, p99 {get_p99:.1?}; async get (spawn_blocking) mean {redb_get_async:.1?}"
    );
    ratio_line("get", redb_get, file_get, "file-per-object");
    ratio_line("get", redb_get, sqlite_get_t, "sqlite");

    // List 10k.
    let mut list_all = Duration::ZERO;
    for (label, sel, app) in [("all", "", None), ("app=web-3", "app=web-3", Some("web-3"))] {
        let sc = scope(sel);
        let ours = per_op(10, || {
            black_box(rt.block_on(fx.redb.list(&sc)).expect("list"));
        });
        if app.is_none() {
            list_all = ours;
        }
        let file = per_op(5, || {
            black_box(fx.files.list(app));
        });
        let sq = per_op(10, || {
            black_box(sqlite_list(&fx.sqlite, app));
        });
        ratio_line(
            &format!("list 10k ({label})"),
            ours,
            file,
            "file-per-object",
        );
        ratio_line(&format!("list 10k ({label})"), ours, sq, "sqlite");
    }

    // Replace 10k.
    let store = RedbStore::open(StoreConfig::new(dir.path().join("rr.redb"))).expect("open");
    let sc = ListScope::parse("kubelet", &gvr(), "default", "", "").expect("scope");
    let mut rrv = 0u64;
    let mut redb_replace = Duration::ZERO;
    for _ in 0..3 {
        rrv += 2 * PODS as u64;
        let objs: Vec<Object> = (0..PODS)
            .map(|i| pod("default", i, rrv + i as u64))
            .collect();
        let t = Instant::now();
        rt.block_on(store.replace_list(&sc, list_meta(rrv + PODS as u64), objs))
            .expect("replace");
        redb_replace += t.elapsed() / 3;
    }
    rt.block_on(store.shutdown());
    drop(store);
    let its = items("default", 1);
    let sqlite_replace_t = per_op(3, || sqlite_replace(&mut sqlite, "default", &its));
    let file_replace = per_op(1, || files.replace("default", &its));
    ratio_line("replace 10k", redb_replace, file_replace, "file-per-object");
    ratio_line("replace 10k", redb_replace, sqlite_replace_t, "sqlite");

    // Open of a 10k store.
    let redb_open = per_op(5, || {
        black_box(RedbStore::open(StoreConfig::new(dir.path().join("rr.redb"))).expect("open"));
    });
    let file_open = per_op(5, || {
        black_box(fx.files.open_walk());
    });
    let dbp = dir.path().join("r.db");
    let sqlite_open_t = per_op(5, || {
        let c = Connection::open(&dbp).expect("open");
        let ok: String = c
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .expect("check");
        black_box(ok);
    });
    ratio_line(
        "open 10k (redb with integrity check)",
        redb_open,
        file_open,
        "file-per-object dir walk",
    );
    ratio_line(
        "open 10k (redb with integrity check)",
        redb_open,
        sqlite_open_t,
        "sqlite open + quick_check",
    );

    println!("\n== targets ==");
    let (isolated, stream) = batch1024_rate;
    let verdict = |rate: f64| if rate >= 100_000.0 { "met" } else { "NOT met" };
    println!(
        "batched apply at 1,024/commit (target >= 100000 events/s): engine {engine_rate:.0} ({}), \
         async API stream {stream:.0} ({}), async API one isolated batch {isolated:.0} ({})",
        verdict(engine_rate),
        verdict(stream),
        verdict(isolated),
    );
    println!(
        "get p50: {get_p50:.1?} (target <= 5us): {}",
        if get_p50 <= Duration::from_micros(5) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "list 10k: {list_all:.1?} (target <= 20ms): {}",
        if list_all <= Duration::from_millis(20) {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// The cache tee's list splitter alone: a 10,000-ConfigMap list body fed in 16 KiB chunks
/// (items come out as zero-copy slices of the chunks).
fn bench_list_split(c: &mut Criterion) {
    use yurt_cache::cache::json_stream::ListStream;
    let items: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": "default",
                    "uid": format!("0000-{i}"), "resourceVersion": (i + 10).to_string(),
                    "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "bench"}},
                "data": {"key": "a value of some forty bytes, like a flag."}})
        })
        .collect();
    // The body as `Bytes` by way of `Object::json` (this package does not depend on `bytes`);
    // the list's `metadata.name` only satisfies `Object`'s check.
    let list = Object::from_json(
        serde_json::to_vec(
            &serde_json::json!({"kind": "ConfigMapList", "apiVersion": "v1",
            "metadata": {"name": "list", "resourceVersion": "10010"}, "items": items}),
        )
        .expect("json"),
    )
    .expect("object");
    let body = list.json();
    let chunks: Vec<_> = (0..body.len())
        .step_by(16 << 10)
        .map(|at| body.slice(at..(at + (16 << 10)).min(body.len())))
        .collect();
    let mut g = c.benchmark_group("cache_tee/list_split_10k");
    g.sample_size(20)
        .throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("feed_bytes", |b| {
        b.iter(|| {
            let mut split = ListStream::new(32 << 20);
            let mut n = 0;
            for chunk in &chunks {
                n += split.feed_bytes(chunk).expect("split").len();
            }
            black_box(split.finish().expect("complete"));
            n
        })
    });
    g.finish();
}

fn main() {
    let rt = Arc::new(runtime());
    let mut c = Criterion::default().configure_from_args();
    bench_list_split(&mut c);
    bench_writes(&mut c, &rt);
    let fx = fixture(&rt);
    bench_reads(&mut c, &rt, &fx);
    bench_replace_and_open(&mut c, &rt);
    c.final_summary();
    ratios(&rt, &fx);
}
