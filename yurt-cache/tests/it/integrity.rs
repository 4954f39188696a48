//! Open-time integrity: a damaged, foreign or incompatible file is moved aside, counted and
//! replaced by an empty store; a busy file is an error, not "corruption".

use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;
use yurt_cache::store::{ObjectKey, RedbStore, Store, StoreConfig, StoreError, StoreMetrics};

use crate::util::{Rng, config, pod, pods};

const MARKER: &str = "MARKER-7f3a9c";

/// Writes a store holding a few objects with a recognisable payload, then closes it.
async fn populate(path: &Path) {
    let store = RedbStore::open_async(StoreConfig::new(path)).await.unwrap();
    for i in 0..50u64 {
        let obj = yurt_cache::store::Object::from_value(&serde_json::json!({
            "metadata": {"name": format!("p{i}"), "namespace": "ns", "resourceVersion": (i + 1).to_string()},
            "data": {"payload": format!("{MARKER}-{i}")},
        }))
        .unwrap();
        store.put("kubelet", &pods(), obj).await.unwrap();
    }
    store.shutdown().await;
}

fn quarantined_files(dir: &Path, reason: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("cache.redb.{reason}-"))
        })
        .collect()
}

/// Opens after damage and checks: quarantined once for `reason`, fresh empty store that works,
/// the metric is exported.
async fn expect_quarantine(dir: &Path, reason: &str) {
    let metrics = StoreMetrics::default();
    let mut cfg = config(dir);
    cfg.metrics = metrics.clone();
    cfg.node_name = Some("edge-1".into());
    let store = RedbStore::open_async(cfg).await.unwrap();
    assert_eq!(metrics.quarantined_count(reason), 1, "reason {reason}");
    assert_eq!(quarantined_files(dir, reason).len(), 1);
    assert_eq!(
        store.usage().await.unwrap().objects,
        0,
        "fresh store is empty"
    );
    store
        .put("kubelet", &pods(), pod("ns", "new", 1, "x", "n"))
        .await
        .unwrap();
    assert!(
        store
            .get(&ObjectKey::new("kubelet", &pods(), "ns", "new"))
            .await
            .unwrap()
            .is_some()
    );
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(&format!(
            "yurt_cache_store_quarantined_total{{reason=\"{reason}\"}} 1"
        )),
        "{text}"
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_data_bytes_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    populate(&path).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let mut flipped = 0;
    let needle = MARKER.as_bytes();
    for i in 0..bytes.len().saturating_sub(needle.len()) {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i] ^= 0xFF;
            flipped += 1;
        }
    }
    assert!(flipped > 0, "marker not found in the file");
    std::fs::write(&path, &bytes).unwrap();
    expect_quarantine(dir.path(), "corrupt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_header_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    populate(&path).await;
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[0..64] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    expect_quarantine(dir.path(), "corrupt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_byte_flips_never_crash_the_open() {
    // Whatever a flip hits, the open either keeps a consistent store (the flip was in free
    // space, or redb rolled back to the other commit slot) or quarantines: never a panic or an
    // error. Each case runs on a fresh copy.
    let seed = Rng::seed_from_time();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.redb");
    populate(&pristine).await;
    let original = std::fs::read(&pristine).unwrap();
    for case in 0..20 {
        let case_dir = dir.path().join(format!("case{case}"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(case_dir.join("cache.redb"), &bytes).unwrap();
        let metrics = StoreMetrics::default();
        let mut cfg = config(&case_dir);
        cfg.metrics = metrics.clone();
        let store = RedbStore::open_async(cfg)
            .await
            .unwrap_or_else(|e| panic!("case {case}, seed {seed}: {e}"));
        // Every object still readable is valid JSON (a torn or flipped value is never served).
        for (_, obj) in store.snapshot().unwrap().all_objects().unwrap() {
            serde_json::from_slice::<serde_json::Value>(&obj.json).unwrap();
        }
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_files_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let mut rng = Rng(7);
    let garbage: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
    std::fs::write(&path, garbage).unwrap();
    expect_quarantine(dir.path(), "corrupt").await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    populate(&path).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    expect_quarantine(dir.path(), "corrupt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_schema_version_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    populate(&path).await;
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("schema_version", b"999".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    expect_quarantine(dir.path(), "schema").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.node_name = Some("edge-0".into());
    let store = RedbStore::open_async(cfg).await.unwrap();
    store
        .put("kubelet", &pods(), pod("ns", "a", 1, "x", "n"))
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);
    expect_quarantine(dir.path(), "foreign").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_use_is_an_error_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = StoreMetrics::default();
    let store = RedbStore::open_async(config(dir.path())).await.unwrap();
    let mut cfg = config(dir.path());
    cfg.metrics = metrics.clone();
    let second = RedbStore::open_async(cfg).await;
    assert!(
        matches!(second, Err(StoreError::AlreadyOpen(_))),
        "{second:?}"
    );
    assert_eq!(metrics.quarantined_total(), 0);
    assert!(quarantined_files(dir.path(), "corrupt").is_empty());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_quarantined_copies_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    for i in 0..4 {
        std::fs::write(&path, format!("garbage {i}").repeat(1000)).unwrap();
        let store = RedbStore::open_async(config(dir.path())).await.unwrap();
        store.shutdown().await;
        drop(store);
    }
    assert_eq!(
        quarantined_files(dir.path(), "corrupt").len(),
        2,
        "keep_quarantined = 2"
    );
}
