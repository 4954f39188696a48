//! Journal replay: the rules are in the [module docs](super).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;
use tower::Service;

use super::{USER_AGENT, Worker};
use crate::body::Body;
use crate::local::{JournalEntry, JournalVerb};
use crate::upstream::Error as UpstreamError;

/// The final outcome of one entry, or `Retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Conflict,
    Gone,
    Rejected,
    Retry,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Conflict => "conflict",
            Outcome::Gone => "gone",
            Outcome::Rejected => "rejected",
            Outcome::Retry => "retry",
        }
    }
}

/// Replays the journal in order; `false` if it stopped at a retryable failure.
pub(super) async fn replay<S>(w: &Worker<S>) -> bool
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let entries = match w.store.journal().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "resync: could not read the journal");
            return false;
        }
    };
    if entries.is_empty() {
        return true;
    }
    tracing::info!(entries = entries.len(), "resync: replaying offline writes");
    let mut decoded = Vec::with_capacity(entries.len());
    for (seq, bytes) in entries {
        match JournalEntry::from_bytes(&bytes) {
            Ok(e) => decoded.push((seq, e)),
            Err(err) => {
                tracing::warn!(seq, error = %err, "resync: dropping an undecodable journal entry");
                w.metrics.replayed("rejected");
                remove(w, seq).await;
            }
        }
    }
    // The last status write of each object is the one that is sent.
    let mut last_status: HashMap<(String, String, String, String, String), u64> = HashMap::new();
    for (seq, e) in &decoded {
        if e.is_status_write() {
            last_status.insert(e.object_id(), *seq);
        }
    }
    for (seq, e) in decoded {
        if e.is_status_write() && last_status.get(&e.object_id()) != Some(&seq) {
            w.metrics.replayed("coalesced");
            remove(w, seq).await;
            continue;
        }
        let outcome = match w.send(request(&e)).await {
            None => Outcome::Retry,
            Some(resp) => classify(&resp, e.verb),
        };
        w.metrics.replayed(outcome.label());
        let what = format!(
            "{:?} {} {}/{} by {}",
            e.verb,
            e.resource,
            e.namespace,
            if e.name.is_empty() {
                "(generated)"
            } else {
                &e.name
            },
            e.component
        );
        match outcome {
            Outcome::Retry => {
                tracing::info!(seq, write = %what, "resync: upstream not answering; replay paused");
                return false;
            }
            Outcome::Applied => tracing::debug!(seq, write = %what, "resync: replayed"),
            Outcome::Conflict => {
                tracing::info!(seq, write = %what, "resync: the cloud changed the object meanwhile; its version wins")
            }
            Outcome::Gone => {
                tracing::info!(seq, write = %what, "resync: the object is gone upstream; write dropped")
            }
            Outcome::Rejected => {
                tracing::warn!(seq, write = %what, "resync: the cloud rejected the offline write; dropped")
            }
        }
        remove(w, seq).await;
    }
    true
}

async fn remove<S>(w: &Worker<S>, seq: u64) {
    if let Err(e) = w.store.journal_remove(seq).await {
        tracing::warn!(seq, error = %e, "resync: could not remove a journal entry");
    }
}

fn classify(resp: &Response<Body>, verb: JournalVerb) -> Outcome {
    let status = resp.status();
    if resp.extensions().get::<Arc<UpstreamError>>().is_some() {
        return Outcome::Retry;
    }
    match status {
        s if s.is_success() => Outcome::Applied,
        StatusCode::CONFLICT if verb == JournalVerb::Create => Outcome::Applied,
        StatusCode::CONFLICT => Outcome::Conflict,
        StatusCode::NOT_FOUND | StatusCode::GONE => Outcome::Gone,
        StatusCode::TOO_MANY_REQUESTS => Outcome::Retry,
        s if s.is_server_error() => Outcome::Retry,
        _ => Outcome::Rejected,
    }
}

/// The upstream request that replays `e`.
fn request(e: &JournalEntry) -> Request<Body> {
    let (method, content_type, body): (Method, String, Bytes) = if e.is_status_write() {
        let mut patch = serde_json::json!({"status": e.status.clone().unwrap_or(Value::Null)});
        if !e.uid.is_empty() {
            patch["metadata"] = serde_json::json!({"uid": e.uid});
        }
        (
            Method::PATCH,
            "application/merge-patch+json".to_owned(),
            Bytes::from(patch.to_string()),
        )
    } else {
        let body = match &e.body {
            Value::String(raw) if e.content_type.contains("yaml") => Bytes::from(raw.clone()),
            v => Bytes::from(v.to_string()),
        };
        let method = match e.verb {
            JournalVerb::Create => Method::POST,
            JournalVerb::Update => Method::PUT,
            JournalVerb::Patch => Method::PATCH,
        };
        (method, e.content_type.clone(), body)
    };
    let uri = if e.query.is_empty() || e.is_status_write() {
        e.path.clone()
    } else {
        format!("{}?{}", e.path, e.query)
    };
    let mut req = Request::new(Body::from(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri.parse().unwrap_or_default();
    let h = req.headers_mut();
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    h.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(ct) = HeaderValue::from_str(&content_type) {
        h.insert(http::header::CONTENT_TYPE, ct);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verb: JournalVerb, sub: &str) -> JournalEntry {
        JournalEntry {
            verb,
            component: "kubelet".into(),
            user_agent: String::new(),
            path: format!(
                "/api/v1/namespaces/d/pods/p{}",
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                }
            ),
            query: "fieldManager=kubelet".into(),
            content_type: "application/strategic-merge-patch+json".into(),
            body: serde_json::json!({"status": {"phase": "Running"}}),
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            namespace: "d".into(),
            name: "p".into(),
            subresource: sub.into(),
            uid: "u-1".into(),
            base_resource_version: "5".into(),
            status: (sub == "status")
                .then(|| serde_json::json!({"phase": "Running", "podIP": "10.0.0.2"})),
            at_ms: 0,
        }
    }

    #[test]
    fn status_writes_replay_as_the_final_status() {
        let req = request(&entry(JournalVerb::Patch, "status"));
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/d/pods/p/status");
        assert_eq!(
            req.headers()[http::header::CONTENT_TYPE],
            "application/merge-patch+json"
        );
    }

    #[test]
    fn other_writes_replay_as_received() {
        let req = request(&entry(JournalVerb::Patch, ""));
        assert_eq!(
            req.uri(),
            "/api/v1/namespaces/d/pods/p?fieldManager=kubelet"
        );
        assert_eq!(
            req.headers()[http::header::CONTENT_TYPE],
            "application/strategic-merge-patch+json"
        );
        assert_eq!(
            request(&entry(JournalVerb::Update, "")).method(),
            Method::PUT
        );
        assert_eq!(
            request(&entry(JournalVerb::Create, "")).method(),
            Method::POST
        );
    }

    #[test]
    fn outcomes() {
        let resp = |code: u16| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            r
        };
        assert_eq!(classify(&resp(200), JournalVerb::Patch), Outcome::Applied);
        assert_eq!(classify(&resp(409), JournalVerb::Create), Outcome::Applied);
        assert_eq!(classify(&resp(409), JournalVerb::Update), Outcome::Conflict);
        assert_eq!(classify(&resp(404), JournalVerb::Patch), Outcome::Gone);
        assert_eq!(classify(&resp(422), JournalVerb::Patch), Outcome::Rejected);
        assert_eq!(classify(&resp(503), JournalVerb::Patch), Outcome::Retry);
        assert_eq!(classify(&resp(429), JournalVerb::Patch), Outcome::Retry);
    }
}
