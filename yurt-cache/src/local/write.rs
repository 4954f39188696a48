//! Offline writes: create echoes (Events journaled), update and patch applied to the cached
//! copy and journaled in the same transaction.
//!
//! Create and update bodies may be JSON or protobuf (client-go's default for built-in kinds:
//! kubelet's Event POSTs and Lease updates). A protobuf body is decoded to the JSON object the
//! apiserver would store and from then on handled, cached and journaled as JSON (the journal
//! replays it with `Content-Type: application/json`); a kind the decoder does not convert is a
//! 415 `Status` carrying the decoder's message, which names the kind. Patches stay JSON-based
//! as in the apiserver.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use yurt_core::patch::{PatchType, apply_patch};
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
    let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if name.is_empty() {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) if !prefix.is_empty() => name = format!("{prefix}{}", name_suffix()),
            _ => {
                return Status::invalid(
                    &info.api_group,
                    obj["kind"].as_str().unwrap_or(""),
                    "",
                    "metadata.name: Required value: name or generateName is required",
                )
                .to_response();
            }
        }
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Default::default());
    }
    obj["metadata"]["name"] = Value::String(name.clone());
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
    let changed = match patch_type {
        Some(pt) => {
            let kind = cached_v["kind"].as_str().unwrap_or("");
            let patched = match apply_patch(pt, &cached_v, &raw, (&gvr.group, &gvr.version, kind)) {
                Ok(v) => v,
                Err(e) => return e.status().to_response(),
            };
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
            if let Some(n) = new["metadata"]["name"].as_str()
                && n != info.name
            {
                return Status::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    info.name
                ))
                .to_response();
            }
            match new["metadata"]["resourceVersion"].as_str() {
                Some(rv) if !rv.is_empty() && rv != cached_rv => return conflict(),
                _ => {}
            }
            new
        }
    };
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
