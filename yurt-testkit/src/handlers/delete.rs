//! `delete` and `deletecollection`, following kube-apiserver's generic registry:
//!
//! - preconditions (`uid`, `resourceVersion`) from the DeleteOptions body give 409 Conflict;
//! - an object with finalizers is not removed: it gets `deletionTimestamp` (and
//!   `deletionGracePeriodSeconds: 0`, and a generation bump) and stays until an update removes
//!   its last finalizer;
//! - Pods bound to a node and not yet finished are deleted gracefully (their grace period, or
//!   `gracePeriodSeconds`): they stay with a future `deletionTimestamp` until deleted again with
//!   `gracePeriodSeconds=0`, which is what a kubelet does once the containers are gone;
//! - Namespaces become `Terminating`; the namespace controller (in [`crate::controllers`])
//!   empties and then removes them. CRDs likewise get their cleanup finalizer.
//!
//! A completed delete answers with the object for the kinds whose registry returns it (pods,
//! services, namespaces, service accounts, CRDs, custom resources) and with a `Success` Status
//! naming it otherwise; a delete left pending answers with the object.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};
use yurt_core::status::Status;

use super::read::Selectors;
use super::{Ctx, Fail, Reply};
use crate::admission;
use crate::meta::{self, meta_str, metadata, metadata_mut};
use crate::registry::{ResourceDef, Special};
use crate::storage::{Obj, Txn, object_key};

/// The CRD cleanup finalizer.
pub(crate) const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// DeleteOptions from the body and the query.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOpts {
    pub grace: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOpts {
    pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<DeleteOpts, Fail> {
        let mut opts = DeleteOpts::default();
        if !ctx.body.is_empty() {
            let body: Value = serde_json::from_slice(&ctx.body)
                .map_err(|e| Status::bad_request(format!("invalid DeleteOptions: {e}")))?;
            opts.grace = body["gracePeriodSeconds"].as_i64();
            opts.uid = body["preconditions"]["uid"].as_str().map(str::to_owned);
            opts.resource_version = body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
        }
        if let Some(g) = ctx.query("gracePeriodSeconds") {
            opts.grace =
                Some(g.parse().map_err(|_| {
                    Status::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?);
        }
        if let Some(g) = opts.grace
            && g < 0
        {
            opts.grace = Some(1);
        }
        Ok(opts)
    }
}

/// What a delete did.
pub(crate) enum Deleted {
    /// The object is gone; its last state.
    Gone(Arc<Obj>),
    /// The object stays (finalizers, graceful deletion, namespace termination); its state.
    Pending(Arc<Obj>),
    /// Dry run: the state it would have.
    DryRun(Value),
}

/// DELETE of one object.
pub(crate) async fn delete(ctx: &Ctx<'_>) -> Reply {
    let opts = DeleteOpts::parse(ctx)?;
    let key = object_key(&ctx.namespace, &ctx.info.name);
    let dry_run = ctx.dry_run();
    let current = ctx
        .shared
        .store
        .read(|t| t.get(ctx.storage(), &key))
        .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
    admit_delete(ctx, &current.value).await?;
    let outcome = ctx
        .shared
        .store
        .write(|t| delete_one(&ctx.def, t, &key, &opts, dry_run))?;
    match outcome {
        Deleted::Gone(obj) if !ctx.def.behaviour.return_deleted_object => {
            Ok(crate::body::status(&success(&ctx.def, &obj.value)))
        }
        Deleted::Gone(obj) | Deleted::Pending(obj) => {
            super::object_response(ctx, StatusCode::OK, &obj).await
        }
        Deleted::DryRun(v) => super::value_response(ctx, StatusCode::OK, &v).await,
    }
}

/// Admission of the deletion of `stored` (mutating webhooks are called too, as kube-apiserver
/// calls them, but a DELETE has no object to change).
async fn admit_delete(ctx: &Ctx<'_>, stored: &Value) -> Result<(), Fail> {
    let old = crate::conversion::served(ctx.shared, &ctx.def, stored).await?;
    let request = admission::Request::new(ctx, admission::Operation::Delete, None, Some(old));
    admission::mutate(ctx, request.clone()).await?;
    admission::validate(ctx, &request).await
}

/// The `Success` Status a completed delete answers with.
fn success(def: &ResourceDef, obj: &Value) -> Status {
    let mut st = Status::success().with_details(&def.group, &def.plural, meta_str(obj, "name"));
    st.details.uid = meta_str(obj, "uid").to_owned();
    st
}

/// Deletes (or starts deleting) the object at `key`.
pub(crate) fn delete_one(
    def: &ResourceDef,
    t: &mut Txn<'_>,
    key: &str,
    opts: &DeleteOpts,
    dry_run: bool,
) -> Result<Deleted, Fail> {
    let storage = def.behaviour.storage_key.as_str();
    let name = key.rsplit('/').next().unwrap_or(key);
    let old = t
        .get(storage, key)
        .ok_or_else(|| Status::not_found(&def.group, &def.plural, name))?;
    let uid = meta_str(&old.value, "uid");
    if let Some(want) = &opts.uid
        && want != uid
    {
        return Err(Status::conflict(&def.group, &def.kind, name, &format!(
            "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )).into());
    }
    let rv = meta_str(&old.value, "resourceVersion");
    if let Some(want) = &opts.resource_version
        && want != rv
    {
        return Err(Status::conflict(&def.group, &def.kind, name, &format!(
            "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )).into());
    }
    let mut obj = old.value.clone();
    let terminating = meta::is_terminating(&obj);
    let now = meta::unix_now();
    let store = |t: &mut Txn<'_>, v: Value| -> Deleted {
        if dry_run {
            Deleted::DryRun(v)
        } else {
            Deleted::Pending(t.put(storage, key, v))
        }
    };

    match def.behaviour.special {
        Special::Namespace => {
            if terminating {
                return Ok(Deleted::Pending(old));
            }
            mark_deleting(&mut obj, now);
            obj["status"] = json!({"phase": "Terminating"});
            return Ok(store(t, obj));
        }
        Special::Crd => {
            if terminating {
                return Ok(Deleted::Pending(old));
            }
            mark_deleting(&mut obj, now);
            let m = metadata_mut(&mut obj);
            let fins = m.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(a) = fins.as_array_mut()
                && !a.iter().any(|f| f == CRD_CLEANUP_FINALIZER)
            {
                a.push(json!(CRD_CLEANUP_FINALIZER));
            }
            set_condition(
                &mut obj,
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; instances will be deleted",
            );
            return Ok(store(t, obj));
        }
        _ => {}
    }

    // Graceful deletion (pods only), as rest.BeforeDelete and the pod strategy decide it.
    if def.behaviour.special == Special::Pod {
        let mut graceful = false;
        let current_grace = metadata(&obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        if terminating {
            match (current_grace, opts.grace) {
                (None | Some(0), _) => {}
                (Some(cur), Some(p)) if p < cur => {
                    let period = if p == 0 { 0 } else { p.max(1) };
                    let m = metadata_mut(&mut obj);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(meta::rfc3339(now + period)),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(period));
                    graceful = true;
                }
                _ => return Ok(Deleted::Pending(old)),
            }
        } else {
            let mut period = opts.grace.unwrap_or_else(|| {
                obj["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            });
            let phase = obj["status"]["phase"].as_str().unwrap_or("");
            if obj["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
                || phase == "Succeeded"
                || phase == "Failed"
            {
                period = 0;
            }
            let m = metadata_mut(&mut obj);
            m.insert(
                "deletionTimestamp".into(),
                json!(meta::rfc3339(now + period)),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(period));
            if let Some(g) = m
                .get("generation")
                .and_then(Value::as_i64)
                .filter(|g| *g > 0)
            {
                m.insert("generation".into(), json!(g + 1));
            }
            graceful = true;
        }
        let grace = metadata(&obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if graceful {
            // The update that sets the deletion timestamp is written (and watched) first.
            if dry_run {
                return Ok(Deleted::DryRun(obj));
            }
            let pending = grace > 0 || !meta::finalizers(&obj).is_empty();
            let stored = t.put(storage, key, obj);
            if pending {
                return Ok(Deleted::Pending(stored));
            }
            return Ok(Deleted::Gone(
                t.delete(storage, key, None)
                    .expect("object present under the lock"),
            ));
        }
    }

    if !meta::finalizers(&obj).is_empty() {
        if terminating
            && metadata(&obj).and_then(|m| m.get("deletionGracePeriodSeconds")) == Some(&json!(0))
        {
            return Ok(Deleted::Pending(old));
        }
        mark_deleting(&mut obj, now);
        return Ok(store(t, obj));
    }
    if dry_run {
        return Ok(Deleted::DryRun(obj));
    }
    Ok(Deleted::Gone(
        t.delete(storage, key, None)
            .expect("object present under the lock"),
    ))
}

/// Sets `deletionTimestamp` (now, unless already earlier), `deletionGracePeriodSeconds: 0`, and
/// bumps the generation the first time (kube-apiserver's `markAsDeleting`).
fn mark_deleting(obj: &mut Value, now: i64) {
    let terminating = meta::is_terminating(obj);
    let m = metadata_mut(obj);
    if !terminating {
        if let Some(g) = m
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            m.insert("generation".into(), json!(g + 1));
        }
        m.insert("deletionTimestamp".into(), json!(meta::rfc3339(now)));
    }
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
}

/// Sets a condition in `status.conditions` (by type).
pub(crate) fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    let map = obj.as_object_mut().expect("object");
    let st = map.entry("status").or_insert_with(|| json!({}));
    if !st.is_object() {
        *st = json!({});
    }
    let conds = st
        .as_object_mut()
        .expect("object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("array");
    let cond = json!({"type": ty, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": meta::now_rfc3339()});
    match list.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                *c = cond;
            } else {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
        }
        None => list.push(cond),
    }
}

/// DELETE of a collection: every object matching the selectors, each deleted as above.
pub(crate) async fn delete_collection(ctx: &Ctx<'_>) -> Reply {
    let opts = DeleteOpts::parse(ctx)?;
    let selectors = Selectors::parse(&ctx.def, &ctx.info.options)?;
    let ns = (!ctx.namespace.is_empty()).then_some(ctx.namespace.as_str());
    let dry_run = ctx.dry_run();
    let matching: Vec<(String, Arc<Obj>)> = ctx
        .shared
        .store
        .read(|t| t.list(ctx.storage(), ns))
        .into_iter()
        .filter(|(_, o)| selectors.matches(&o.value))
        .collect();
    // Each object is admitted as its own DELETE, as kube-apiserver deletes them one by one.
    for (_, obj) in &matching {
        admit_delete(ctx, &obj.value).await?;
    }
    let deleted = ctx.shared.store.write(|t| -> Result<Vec<Arc<Obj>>, Fail> {
        let mut out = Vec::new();
        for (key, _) in &matching {
            if t.get(ctx.storage(), key).is_none() {
                continue;
            }
            match delete_one(&ctx.def, t, key, &opts, dry_run)? {
                Deleted::Gone(o) | Deleted::Pending(o) => out.push(o),
                Deleted::DryRun(v) => out.push(Arc::new(Obj::new(v))),
            }
        }
        Ok(out)
    })?;
    let rv = ctx.shared.store.current_rv();
    let deleted = super::served_items(ctx, deleted).await?;
    Ok(super::read::list_response(
        &ctx.def,
        json!({"resourceVersion": rv.to_string()}),
        deleted,
    ))
}
