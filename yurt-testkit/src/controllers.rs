//! The few controllers a cluster runs that tests cannot do without, run in-process and owned by
//! the server (aborted when it is dropped):
//!
//! - the CSR signer ([`crate::csr`]);
//! - the namespace controller: a namespace being deleted has its content deleted (with the
//!   usual semantics, so finalizers and graceful pod deletion hold it up), then its `kubernetes`
//!   finalizer removed, and is gone;
//! - the CRD controllers: a new CRD gets `NamesAccepted` and `Established` conditions; a CRD
//!   being deleted has its custom resources deleted, then its cleanup finalizer removed, and its
//!   resource stops being served;
//! - the compactor: every `compaction_interval` (5 minutes by default, as kube-apiserver's
//!   etcd compaction) history older than the previous tick's revision is forgotten, so stale
//!   watches and exact lists get 410 Expired.
//!
//! There is no garbage collector (ownerReferences are not followed), no scheduler and no
//! workload controllers.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::handlers::delete::{CRD_CLEANUP_FINALIZER, DeleteOpts, delete_one, set_condition};
use crate::meta::{self, metadata_mut};
use crate::registry::{ResourceDef, Special};
use crate::server::Shared;

/// The storage key of CRDs.
const CRD_STORAGE: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// Starts the controllers; the handles are the server's to abort.
pub(crate) fn spawn(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let csr_events = shared
        .store
        .write(|t| t.subscribe_internal(crate::csr::CSR_STORAGE));
    let mut tasks = vec![
        tokio::spawn(crate::csr::run(shared.clone(), csr_events)),
        tokio::spawn(lifecycle(shared.clone())),
    ];
    let every = shared.settings.compaction_interval;
    if !every.is_zero() {
        tasks.push(tokio::spawn(compactor(shared.clone(), every)));
    }
    tasks
}

/// Compacts history every `every`, as kube-apiserver's etcd compactor does: each tick compacts
/// to the revision that was current at the previous tick.
async fn compactor(shared: Arc<Shared>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = shared.store.current_rv();
    loop {
        ticks.tick().await;
        let now = shared.store.current_rv();
        shared.store.write(|t| t.compact_to(previous));
        previous = now;
    }
}

/// Reconciles namespaces and CRDs whenever the store changes.
async fn lifecycle(shared: Arc<Shared>) {
    let mut rx = shared.store.rv_receiver();
    loop {
        rx.borrow_and_update();
        reconcile_namespaces(&shared);
        reconcile_crds(&shared);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// One definition per storage key of namespaced resources.
fn namespaced_storages(shared: &Shared) -> Vec<Arc<ResourceDef>> {
    let reg = shared.registry();
    let mut seen = std::collections::HashSet::new();
    let mut defs: Vec<Arc<ResourceDef>> = reg
        .all()
        .filter(|d| d.namespaced && d.behaviour.special != Special::Virtual)
        .cloned()
        .collect();
    // Prefer the definition stored without conversion (core events over events.k8s.io).
    defs.sort_by_key(|d| d.behaviour.conversion != crate::registry::Conversion::ApiVersion);
    defs.retain(|d| seen.insert(d.behaviour.storage_key.clone()));
    defs
}

fn reconcile_namespaces(shared: &Shared) {
    let terminating: Vec<String> = shared.store.read(|t| {
        t.list("/namespaces", None)
            .into_iter()
            .filter(|(_, o)| meta::is_terminating(&o.value))
            .map(|(k, _)| k)
            .collect()
    });
    if terminating.is_empty() {
        return;
    }
    let defs = namespaced_storages(shared);
    for ns in terminating {
        shared.store.write(|t| {
            let mut remaining = 0;
            for def in &defs {
                let storage = def.behaviour.storage_key.as_str();
                for (key, _) in t.list(storage, Some(&ns)) {
                    let _ = delete_one(def, t, &key, &DeleteOpts::default(), false);
                    if t.get(storage, &key).is_some() {
                        remaining += 1;
                    }
                }
            }
            if remaining > 0 {
                return;
            }
            let Some(obj) = t.get("/namespaces", &ns) else {
                return;
            };
            let mut v = obj.value.clone();
            if let Some(fins) = v["spec"]["finalizers"].as_array_mut() {
                fins.retain(|f| f != "kubernetes");
            }
            if meta::finalizers(&v).is_empty()
                && v["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty)
            {
                t.delete("/namespaces", &ns, Some(v));
            } else if v != obj.value {
                t.put("/namespaces", &ns, v);
            }
        });
    }
}

fn reconcile_crds(shared: &Shared) {
    let crds = shared.store.read(|t| t.list(CRD_STORAGE, None));
    // Stop serving resources whose CRD is gone.
    let orphaned: Vec<String> = {
        let reg = shared.registry();
        reg.all()
            .filter_map(|d| match &d.behaviour.special {
                Special::CustomResource(crd) if !crds.iter().any(|(k, _)| k == crd) => {
                    Some(d.behaviour.storage_key.clone())
                }
                _ => None,
            })
            .collect()
    };
    if !orphaned.is_empty() {
        let mut reg = shared.registry_mut();
        for key in orphaned {
            reg.unregister_storage(&key);
        }
    }
    for (name, crd) in crds {
        let value = &crd.value;
        if meta::is_terminating(value) {
            if meta::finalizers(value)
                .iter()
                .any(|f| f == CRD_CLEANUP_FINALIZER)
            {
                cleanup_crd(shared, &name, value);
            }
            continue;
        }
        let established = value["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if !established {
            shared.store.write(|t| {
                let Some(cur) = t.get(CRD_STORAGE, &name) else {
                    return;
                };
                let mut v = cur.value.clone();
                let storage_version = v["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|ver| ver["storage"] == true)
                    .and_then(|ver| ver["name"].as_str())
                    .unwrap_or("")
                    .to_owned();
                let names = v["spec"]["names"].clone();
                set_condition(
                    &mut v,
                    "NamesAccepted",
                    "True",
                    "NoConflicts",
                    "no conflicts found",
                );
                set_condition(
                    &mut v,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
                let st = v["status"]
                    .as_object_mut()
                    .expect("set_condition made status");
                st.insert("acceptedNames".into(), names);
                st.insert("storedVersions".into(), json!([storage_version]));
                t.put(CRD_STORAGE, &name, v);
            });
        }
    }
}

/// Deletes a terminating CRD's custom resources, then releases its finalizer.
fn cleanup_crd(shared: &Shared, name: &str, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
    let storage = crate::registry::storage_key(group, plural);
    let def = shared
        .registry()
        .all()
        .find(|d| d.behaviour.storage_key == storage)
        .cloned();
    shared.store.write(|t| {
        let mut remaining = 0;
        if let Some(def) = &def {
            for (key, _) in t.list(&storage, None) {
                let _ = delete_one(def, t, &key, &DeleteOpts::default(), false);
                if t.get(&storage, &key).is_some() {
                    remaining += 1;
                }
            }
        } else {
            remaining = t.count(&storage);
        }
        if remaining > 0 {
            return;
        }
        let Some(cur) = t.get(CRD_STORAGE, name) else {
            return;
        };
        let mut v = cur.value.clone();
        if let Some(fins) = metadata_mut(&mut v)
            .get_mut("finalizers")
            .and_then(Value::as_array_mut)
        {
            fins.retain(|f| f != CRD_CLEANUP_FINALIZER);
        }
        if meta::finalizers(&v).is_empty() {
            t.delete(CRD_STORAGE, name, Some(v));
        } else {
            t.put(CRD_STORAGE, name, v);
        }
    });
}
