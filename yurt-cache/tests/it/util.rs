//! Helpers shared by the test modules.

use std::path::Path;

use yurt_cache::store::{Gvr, Object, RedbStore, StoreConfig};

pub(crate) fn pods() -> Gvr {
    Gvr::new("", "v1", "pods")
}

/// A pod JSON with labels `{app: <app>}` and `spec.nodeName`.
pub(crate) fn pod(ns: &str, name: &str, rv: u64, app: &str, node: &str) -> Object {
    Object::from_value(&serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv.to_string(),
            "labels": {"app": app},
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Running"},
    }))
    .unwrap()
}

pub(crate) fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir.join("cache.redb"))
}

pub(crate) fn open(dir: &Path) -> RedbStore {
    RedbStore::open(config(dir)).unwrap()
}

/// Names of the items of a list result, from their JSON.
pub(crate) fn names(items: &[yurt_cache::store::StoredObject]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            let v: serde_json::Value = serde_json::from_slice(&i.json).unwrap();
            v["metadata"]["name"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Small deterministic PRNG (SplitMix64), so tests need no rand dependency and print seeds.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn seed_from_time() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42)
    }
}
