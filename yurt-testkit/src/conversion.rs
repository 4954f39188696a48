//! Conversion of custom resources between the versions of their CustomResourceDefinition.
//!
//! Custom resources are stored at the CRD's storage version (`storage: true`) and served at
//! every served version: a write is converted to the storage version before it is stored, a
//! read, list or watch event to the version of the request. With `spec.conversion.strategy:
//! None` (the default) only `apiVersion` changes. With `Webhook`, the objects whose version
//! differs are sent, in one `apiextensions.k8s.io/v1` ConversionReview per request (a list is
//! one review), to `spec.conversion.webhook.clientConfig` (reached as admission webhooks are,
//! with kube-apiserver's 30 s timeout). The answer must be a successful review with as many
//! objects as were sent, each of the desired `apiVersion` and the same kind, uid, name and
//! namespace; of the metadata only labels and annotations are taken from it (the rest is kept
//! from the original, as kube-apiserver restores it). A failed conversion answers the request
//! with 500 `Internal error occurred: conversion webhook for <group/version>, Kind=<kind>
//! failed: …`, and ends a watch with an ERROR event carrying that Status.

use std::time::Duration;

use serde_json::{Value, json};
use yurt_core::status::Status;

use crate::handlers::Fail;
use crate::meta::{meta_str, metadata};
use crate::registry::ResourceDef;
use crate::server::Shared;

/// kube-apiserver's timeout for conversion webhook calls.
const CONVERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How a custom resource's versions relate, from its CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrdVersions {
    /// The version objects are stored at.
    pub storage_version: String,
    /// The conversion webhook's `clientConfig` (strategy `Webhook`); `None` for strategy `None`.
    pub webhook: Option<Value>,
    /// `openAPIV3Schema` of every version, by version name.
    pub schemas: Vec<(String, Value)>,
}

impl CrdVersions {
    /// The versions of a CRD object's spec (`None` if it declares no storage version).
    pub(crate) fn from_crd_spec(spec: &Value) -> Option<CrdVersions> {
        let versions = spec["versions"].as_array()?;
        let storage_version = versions
            .iter()
            .find(|v| v["storage"] == Value::Bool(true))
            .or(versions.first())?["name"]
            .as_str()?
            .to_owned();
        let webhook = (spec["conversion"]["strategy"].as_str() == Some("Webhook"))
            .then(|| spec["conversion"]["webhook"]["clientConfig"].clone());
        let schemas = versions
            .iter()
            .filter_map(|v| {
                let name = v["name"].as_str()?;
                let schema = v["schema"]["openAPIV3Schema"].clone();
                schema.is_object().then(|| (name.to_owned(), schema))
            })
            .collect();
        Some(CrdVersions {
            storage_version,
            webhook,
            schemas,
        })
    }
}

/// The `apiVersion` of the storage version of `def` (its own for anything but custom resources).
pub(crate) fn storage_api_version(def: &ResourceDef) -> String {
    match &def.behaviour.crd {
        Some(crd) => format!("{}/{}", def.group, crd.storage_version),
        None => def.api_version(),
    }
}

/// Whether serving `stored` at `def`'s version needs the conversion webhook.
pub(crate) fn needs_webhook(def: &ResourceDef, stored: &Value) -> bool {
    def.behaviour
        .crd
        .as_ref()
        .is_some_and(|c| c.webhook.is_some())
        && stored["apiVersion"].as_str() != Some(def.api_version().as_str())
}

/// A stored object as `def`'s version serves it.
pub(crate) async fn served(
    shared: &Shared,
    def: &ResourceDef,
    stored: &Value,
) -> Result<Value, Fail> {
    if !needs_webhook(def, stored) {
        return Ok(crate::convert::to_served(def, stored));
    }
    let mut out = convert(shared, def, vec![stored.clone()], &def.api_version()).await?;
    Ok(out.pop().unwrap_or(Value::Null))
}

/// Stored objects as `def`'s version serves them (one review for all that need the webhook).
pub(crate) async fn served_all(
    shared: &Shared,
    def: &ResourceDef,
    stored: Vec<Value>,
) -> Result<Vec<Value>, Fail> {
    if !stored.iter().any(|o| needs_webhook(def, o)) {
        return Ok(stored
            .iter()
            .map(|o| crate::convert::to_served(def, o))
            .collect());
    }
    convert(shared, def, stored, &def.api_version()).await
}

/// An object of `def`'s version in the form it is stored in.
pub(crate) async fn to_storage(
    shared: &Shared,
    def: &ResourceDef,
    served: Value,
) -> Result<Value, Fail> {
    let target = storage_api_version(def);
    let webhook = def
        .behaviour
        .crd
        .as_ref()
        .is_some_and(|c| c.webhook.is_some());
    if webhook && served["apiVersion"].as_str() != Some(target.as_str()) {
        let mut out = convert(shared, def, vec![served], &target).await?;
        return Ok(out.pop().unwrap_or(Value::Null));
    }
    Ok(crate::convert::to_stored(def, served))
}

/// An object of `from`'s version as `to` (another version of the same resource) serves it.
pub(crate) async fn between(
    shared: &Shared,
    from: &ResourceDef,
    to: &ResourceDef,
    v: &Value,
) -> Result<Value, Fail> {
    if from.version == to.version {
        return Ok(v.clone());
    }
    let stored = to_storage(shared, from, v.clone()).await?;
    served(shared, to, &stored).await
}

/// Converts `objects` to `desired` (an `apiVersion` of `def`'s resource): `apiVersion`
/// rewrites without a webhook, else one ConversionReview for the objects not already there.
async fn convert(
    shared: &Shared,
    def: &ResourceDef,
    mut objects: Vec<Value>,
    desired: &str,
) -> Result<Vec<Value>, Fail> {
    let webhook = def.behaviour.crd.as_ref().and_then(|c| c.webhook.clone());
    let pending: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i]["apiVersion"].as_str() != Some(desired))
        .collect();
    let Some(client_config) = webhook.filter(|_| !pending.is_empty()) else {
        for o in &mut objects {
            if let Some(m) = o.as_object_mut() {
                m.insert("apiVersion".into(), json!(desired));
            }
        }
        return Ok(objects);
    };
    let first = &objects[pending[0]];
    let what = format!(
        "{}, Kind={}",
        first["apiVersion"].as_str().unwrap_or(""),
        first["kind"].as_str().unwrap_or("")
    );
    let failed = |why: String| -> Fail {
        Box::new(Status::internal(format!(
            "conversion webhook for {what} failed: {why}"
        )))
    };
    let uid = crate::meta::new_uid();
    let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
    let review = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": sent}});
    let target = crate::webhook::resolve(shared, &client_config, CONVERSION_TIMEOUT)
        .await
        .map_err(failed)?;
    let answer = crate::webhook::post(&target, &review, CONVERSION_TIMEOUT)
        .await
        .map_err(failed)?;
    let (av, kind) = (
        answer["apiVersion"].as_str().unwrap_or(""),
        answer["kind"].as_str().unwrap_or(""),
    );
    if av != "apiextensions.k8s.io/v1" || kind != "ConversionReview" {
        return Err(failed(format!(
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {av}, Kind={kind}"
        )));
    }
    let resp = &answer["response"];
    let got = resp["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(failed(format!(
            "expected response.uid={uid:?}, got {got:?}"
        )));
    }
    if resp["result"]["status"].as_str() != Some("Success") {
        let message = resp["result"]["message"].as_str().unwrap_or("");
        return Err(failed(message.to_owned()));
    }
    let converted = resp["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if converted.len() != sent.len() {
        return Err(Box::new(Status::internal(format!(
            "conversion webhook for {what} returned {} objects, expected {}",
            converted.len(),
            sent.len()
        ))));
    }
    for (n, (&i, mut c)) in pending.iter().zip(converted).enumerate() {
        let original = &objects[i];
        let invalid = |why: String| -> Fail {
            Box::new(Status::internal(format!(
                "conversion webhook for {what} returned invalid converted object at index {n}: {why}"
            )))
        };
        if c["apiVersion"].as_str() != Some(desired) {
            return Err(invalid(format!(
                "invalid apiVersion {:?}, expected {desired:?}",
                c["apiVersion"].as_str().unwrap_or("")
            )));
        }
        if c["kind"] != original["kind"] {
            return Err(invalid(format!(
                "invalid kind {:?}, expected {:?}",
                c["kind"].as_str().unwrap_or(""),
                original["kind"].as_str().unwrap_or("")
            )));
        }
        for field in ["uid", "name", "namespace"] {
            if meta_str(&c, field) != meta_str(original, field) {
                return Err(invalid(format!("must not change metadata.{field}")));
            }
        }
        restore_metadata(original, &mut c);
        objects[i] = c;
    }
    Ok(objects)
}

/// Keeps the original metadata but for labels and annotations, which the webhook may change.
fn restore_metadata(original: &Value, converted: &mut Value) {
    let mut meta = metadata(original).cloned().unwrap_or_default();
    let new_meta = metadata(converted).cloned().unwrap_or_default();
    for field in ["labels", "annotations"] {
        match new_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    if let Some(m) = converted.as_object_mut() {
        m.insert("metadata".into(), Value::Object(meta));
    }
}
