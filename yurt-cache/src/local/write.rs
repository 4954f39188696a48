//! Offline writes: create echoes (Events journaled), update and patch applied to the cached
//! copy and journaled in the same transaction.
//!
//! Create and update bodies may be JSON or protobuf (client-go's default for built-in kinds:
//! kubelet's Event POSTs and Lease updates). A protobuf body is decoded to the JSON object the
//! apiserver would store and from then on handled, cached and journaled as JSON (the journal
//! replays it with `Content-Type: application/json`); a kind the decoder does not convert is a
//! 415 `Status` carrying the decoder's message, which names the kind. Patches stay JSON-based
//! as in the apiserver.
//!
//! Nothing the apiserver would refuse is answered as a success, cached or journaled: every
//! written object is checked with [`yurt_core::validation`] in the apiserver's order, with its
//! answers. A create or update body that does not decode into the resource's type (a `kind`
//! or `apiVersion` that is not the endpoint's, a ConfigMap value that is not a string, a
//! Secret value that is not base64) is a 400; a patch whose result does not decode is a 422;
//! a result that no longer names the URL's object (a strategic merge `$patch: delete` at the
//! top empties it) is a 400, one with another uid a 409; invalid metadata (name, namespace,
//! label keys and values, annotation keys and total size) is a 422 `Invalid` with one
//! `details.causes` entry per problem.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use yurt_core::patch::{PatchType, apply_patch};
use yurt_core::validation::{self, NameRule};
use yurt_core::{RequestInfo, Status, Verb, protobuf};

use super::endpoints::pod_state;
use super::journal::{JournalEntry, JournalVerb};
use super::read::{api_version_of, object_kind, store_failure};
use super::{Inner, LocalEvent, gvr_of, json_response, random_u64};
use crate::body::Body;
use crate::store::{Gvr, Object, ObjectKey, Store};

/// The request body, bounded.
async fn read_body(
    inner: &Inner,
    req: Request<Body>,
) -> Result<(http::request::Parts, Bytes), Response<Body>> {
    let (parts, body) = req.into_parts();
    let limit = inner.config.max_body_bytes;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_none() =>
        {
            // Not the size: the body itself is broken (a malformed chunked encoding).
            Err(Status::bad_request("the request body could not be read").to_response())
        }
        Err(e) => Err(Status::failure(
            yurt_core::StatusReason::RequestEntityTooLarge,
            format!("the request body could not be read (limit {limit} bytes): {e}"),
        )
        .with_code(413)
        .to_response()),
    }
}

fn content_type(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned()
}

fn is_json(ct: &str) -> bool {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
}

/// A create or update body as JSON, with the content type to journal it under: JSON as sent,
/// protobuf decoded (see the module docs), anything else a 415.
fn json_body(ct: &str, raw: &[u8]) -> Result<(Value, String), Box<Response<Body>>> {
    if protobuf::is_protobuf(ct) {
        return match protobuf::decode(raw) {
            Ok(v) => Ok((v, "application/json".to_owned())),
            Err(e) => Err(Box::new(e.to_status().to_response())),
        };
    }
    if !is_json(ct) {
        return Err(Box::new(
            Status::unsupported_media_type(&["application/json", protobuf::MEDIA_TYPE])
                .to_response(),
        ));
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) if v.is_object() => Ok((v, ct.to_owned())),
        _ => Err(Box::new(
            Status::bad_request("the request body is not a JSON object").to_response(),
        )),
    }
}

fn user_agent(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A random RFC 4122 version-4 style uid.
fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The 5-character suffix kube-apiserver appends to `generateName`.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
            r /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The `kind` of the endpoint's objects: the protobuf table's, else a cached list's or
/// object's, else `fallback` (the body's own).
async fn endpoint_kind(inner: &Arc<Inner>, gvr: &Gvr, component: &str, fallback: &str) -> String {
    if let Some(k) = protobuf::kind_for_resource(&gvr.group, &gvr.version, &gvr.resource) {
        return k.kind.to_owned();
    }
    object_kind(inner, gvr, component)
        .await
        .unwrap_or_else(|| fallback.to_owned())
}

/// The 422 for invalid metadata of `obj`, if any (see the module docs).
fn metadata_problems(
    obj: &Value,
    gvr: &Gvr,
    kind: &str,
    name: &str,
    creating: bool,
) -> Option<Response<Body>> {
    let errors =
        validation::validate_metadata(obj, NameRule::of(&gvr.group, &gvr.resource), creating);
    (!errors.is_empty())
        .then(|| validation::invalid_status(&gvr.group, kind, name, &errors).to_response())
}

fn is_event(gvr: &Gvr) -> bool {
    gvr.resource == "events" && (gvr.group.is_empty() || gvr.group == "events.k8s.io")
}

/// An offline create: echoed back as created; Events are journaled for upload.
pub(super) async fn create(
    inner: &Arc<Inner>,
    req: Request<Body>,
    info: &RequestInfo,
    component: &str,
) -> Response<Body> {
    let (parts, raw) = match read_body(inner, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (mut obj, ct) = match json_body(&content_type(&parts), &raw) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let sent = obj.clone();
    let gvr = gvr_of(info);
    let kind = endpoint_kind(inner, &gvr, component, obj["kind"].as_str().unwrap_or("")).await;
    if let Some(reason) = validation::decode_error(&obj, &gvr.group, &gvr.version, &kind) {
        return validation::body_decode_status(&obj, &gvr.version, &kind, &reason).to_response();
    }
    // A cluster-scoped object's namespace is cleared, not refused.
    if let Some(ns) = obj["metadata"]["namespace"].as_str()
        && !ns.is_empty()
        && !info.namespace.is_empty()
        && ns != info.namespace
    {
        return Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )
        .to_response();
    }
    let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if name.is_empty()
        && let Some(prefix) = obj["metadata"]["generateName"].as_str()
        && !prefix.is_empty()
    {
        name = format!("{prefix}{}", name_suffix());
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Default::default());
    }
    if !name.is_empty() {
        obj["metadata"]["name"] = Value::String(name.clone());
    }
    if let Some(resp) = metadata_problems(&obj, &gvr, &kind, &name, true) {
        return resp;
    }
    if !info.namespace.is_empty() {
        obj["metadata"]["namespace"] = Value::String(info.namespace.clone());
    }
    obj["metadata"]["uid"] = Value::String(new_uid());
    obj["metadata"]["creationTimestamp"] =
        Value::String(yurt_core::time::format_time(SystemTime::now()));
    if is_event(&gvr) {
        let entry = JournalEntry {
            verb: JournalVerb::Create,
            component: component.to_owned(),
            user_agent: user_agent(&parts),
            path: info.path.clone(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            content_type: ct,
            body: sent,
            group: gvr.group.clone(),
            version: gvr.version.clone(),
            resource: gvr.resource.clone(),
            namespace: info.namespace.clone(),
            name: String::new(),
            subresource: String::new(),
            uid: String::new(),
            base_resource_version: String::new(),
            status: None,
            at_ms: now_ms(),
        };
        if let Err(e) = inner
            .store
            .journal_append(entry.append(inner.config.journal))
            .await
        {
            return super::journal::append_failure(e);
        }
        inner.metrics.journaled.inc();
    }
    json_response(StatusCode::CREATED, obj.to_string())
}

/// An offline update or patch of the cached copy.
pub(super) async fn modify(
    inner: &Arc<Inner>,
    req: Request<Body>,
    info: &RequestInfo,
    component: &str,
) -> Response<Body> {
    let (parts, raw) = match read_body(inner, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let ct = content_type(&parts);
    let gvr = gvr_of(info);
    let status_only = info.subresource == "status";
    let patch_type = if info.verb == Verb::Patch {
        match PatchType::from_content_type(&ct) {
            Some(t) => Some(t),
            None => {
                let accepted: Vec<&str> = PatchType::ALL.iter().map(|t| t.content_type()).collect();
                return Status::unsupported_media_type(&accepted).to_response();
            }
        }
    } else {
        None
    };
    // An update's body, as JSON (decoded if protobuf), before taking the write lock.
    let (update, ct) = if patch_type.is_none() {
        match json_body(&ct, &raw) {
            Ok((v, ct)) => (Some(v), ct),
            Err(resp) => return *resp,
        }
    } else {
        (None, ct)
    };
    // One offline write at a time: the read-modify-write below must not interleave.
    let _serial = inner.writes.lock().await;
    let key = ObjectKey::new(component, &gvr, &info.namespace, &info.name);
    let cached = match inner.store.get(&key).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Status::not_found(&info.api_group, &info.resource, &info.name).to_response();
        }
        Err(e) => return store_failure(e),
    };
    let Ok(mut cached_v) = serde_json::from_slice::<Value>(&cached.json) else {
        return Status::internal("the cached copy is not JSON").to_response();
    };
    // Items cached from a list carry no kind; the patch engine needs it, and the answer
    // should have it as the apiserver's would.
    if cached_v["kind"].as_str().unwrap_or("").is_empty()
        && let Some(kind) = object_kind(inner, &gvr, component).await
    {
        cached_v["kind"] = Value::String(kind);
        cached_v["apiVersion"] = Value::String(api_version_of(&gvr));
    }
    let cached_rv = cached.resource_version.clone();
    let conflict = || {
        Status::conflict(
            &info.api_group,
            &info.resource,
            &info.name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
        .to_response()
    };
    let kind = cached_v["kind"].as_str().unwrap_or("").to_owned();
    let kind = if kind.is_empty() {
        endpoint_kind(inner, &gvr, component, "").await
    } else {
        kind
    };
    let cached_uid = cached_v["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let changed = match patch_type {
        Some(pt) => {
            let mut patched =
                match apply_patch(pt, &cached_v, &raw, (&gvr.group, &gvr.version, &kind)) {
                    Ok(v) => v,
                    Err(e) => return e.status().to_response(),
                };
            if pt == PatchType::Strategic
                && let Some(m) = patched.as_object_mut()
            {
                // Strategic merge decodes the merged map field by field into the typed
                // object: the type fields it carries are not checked (the type is the
                // endpoint's).
                for f in ["kind", "apiVersion"] {
                    match cached_v.get(f) {
                        Some(v) if m.contains_key(f) => {
                            m.insert(f.to_owned(), v.clone());
                        }
                        _ => {}
                    }
                }
            }
            if let Some(reason) =
                validation::decode_error(&patched, &gvr.group, &gvr.version, &kind)
            {
                let value = if pt == PatchType::Strategic {
                    validation::go_map_text(&serde_json::from_slice(&raw).unwrap_or(Value::Null))
                } else {
                    patched.to_string()
                };
                return validation::patch_decode_status(&value, &reason).to_response();
            }
            if patched["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or(&cached_rv)
                != cached_rv
            {
                return conflict();
            }
            patched
        }
        None => {
            let new = update.clone().unwrap_or_default();
            if let Some(reason) = validation::decode_error(&new, &gvr.group, &gvr.version, &kind) {
                return validation::body_decode_status(&new, &gvr.version, &kind, &reason)
                    .to_response();
            }
            match new["metadata"]["resourceVersion"].as_str() {
                Some(rv) if !rv.is_empty() && rv != cached_rv => return conflict(),
                _ => {}
            }
            new
        }
    };
    if let Err(st) = validation::check_patched_identity(
        &changed,
        &gvr.group,
        &gvr.resource,
        &info.namespace,
        &info.name,
        &cached_uid,
    ) {
        return st.to_response();
    }
    // What the apiserver would keep: on /status only the status changes; on the object
    // itself the status stays (built-in kinds with a status subresource ignore it there),
    // and server-managed metadata stays.
    let mut result = if status_only {
        let mut r = cached_v.clone();
        r["status"] = changed.get("status").cloned().unwrap_or(Value::Null);
        r
    } else {
        let mut r = changed;
        if let Some(s) = cached_v.get("status") {
            r["status"] = s.clone();
        }
        r
    };
    if !result["metadata"].is_object() {
        result["metadata"] = Value::Object(Default::default());
    }
    for k in ["uid", "creationTimestamp", "namespace", "name"] {
        if let Some(v) = cached_v["metadata"].get(k) {
            result["metadata"][k] = v.clone();
        }
    }
    result["metadata"]["resourceVersion"] = Value::String(cached_rv.clone());
    if let Some(resp) = metadata_problems(&result, &gvr, &kind, &info.name, false) {
        return resp;
    }
    let object = match Object::from_value(&result) {
        Ok(o) => o,
        Err(e) => {
            return Status::invalid(&info.api_group, "", &info.name, &e.to_string()).to_response();
        }
    };
    let node = &inner.config.node_name;
    let pod_changed = component == "kubelet"
        && gvr == Gvr::new("", "v1", "pods")
        && pod_state(&cached.json, node).map(|s| s.1)
            != pod_state(object.json(), node).map(|s| s.1);
    let body = if let Some(update) = update {
        update
    } else if ct.starts_with(PatchType::Apply.content_type()) {
        Value::String(String::from_utf8_lossy(&raw).into_owned())
    } else {
        serde_json::from_slice(&raw).unwrap_or(Value::Null)
    };
    let entry = JournalEntry {
        verb: if info.verb == Verb::Patch {
            JournalVerb::Patch
        } else {
            JournalVerb::Update
        },
        component: component.to_owned(),
        user_agent: user_agent(&parts),
        path: info.path.clone(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        content_type: ct,
        body,
        group: gvr.group.clone(),
        version: gvr.version.clone(),
        resource: gvr.resource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        subresource: info.subresource.clone(),
        uid: cached_v["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        base_resource_version: cached_rv,
        status: status_only.then(|| result.get("status").cloned().unwrap_or(Value::Null)),
        at_ms: now_ms(),
    };
    if let Err(e) = inner
        .store
        .local_write(
            component,
            &gvr,
            object.clone(),
            Some(entry.append(inner.config.journal)),
        )
        .await
    {
        return super::journal::append_failure(e);
    }
    inner.metrics.journaled.inc();
    let _ = inner.events.send(LocalEvent {
        component: component.to_owned(),
        gvr,
        kind: "MODIFIED",
        object: object.clone(),
        pod_changed,
    });
    json_response(StatusCode::OK, object.json().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_and_uids_look_like_kubernetes_ones() {
        let s = name_suffix();
        assert_eq!(s.len(), 5);
        assert!(
            s.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uid(), u);
    }
}
