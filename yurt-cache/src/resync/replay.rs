//! Journal replay: the rules are in the [module docs](super).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::Service;

use super::{USER_AGENT, Worker};
use crate::body::Body;
use crate::local::{JournalEntry, JournalVerb};
use crate::upstream::Error as UpstreamError;

/// The outcome of one attempt at an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Conflict,
    Gone,
    /// A 4xx other than 404/409/410/429: final.
    Rejected,
    /// A 5xx or no answer: retried, at most `max_attempts` times.
    Retry,
    /// 429: retried without counting (the apiserver asks to come back later).
    Throttled,
    /// No apiserver answered (connection failed, none healthy): the pass stops, nothing is
    /// counted against the entry.
    Unreachable,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Conflict => "conflict",
            Outcome::Gone => "gone",
            Outcome::Rejected => "rejected",
            Outcome::Retry | Outcome::Throttled | Outcome::Unreachable => "retry",
        }
    }
}

/// What the replay remembers of an entry it could not place yet, across passes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempts {
    /// Counted attempts (5xx or no answer).
    pub(super) count: u32,
    /// When the first attempt failed.
    pub(super) since: Instant,
}

/// Per-pass bookkeeping.
#[derive(Default)]
struct Pass {
    /// Objects whose pending entry is being retried: their later entries wait.
    blocked: HashSet<String>,
    /// Entries being retried this pass.
    retrying: HashSet<u64>,
    /// The oldest `at_ms` of the entries left in the journal (retried or held back).
    oldest_pending_ms: Option<u64>,
    complete: bool,
    /// The pass stopped before the end of the journal.
    stopped: bool,
}

impl Pass {
    fn pending(&mut self, at_ms: u64) {
        self.oldest_pending_ms = Some(self.oldest_pending_ms.map_or(at_ms, |o| o.min(at_ms)));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Replays the journal in bounded batches; `false` if an entry is left to retry.
pub(super) async fn replay<S>(w: &Worker<S>) -> bool
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let cfg = &w.config;
    let mut pass = Pass {
        complete: true,
        ..Default::default()
    };
    let mut after = 0u64;
    let mut first = true;
    loop {
        let batch = match w
            .store
            .journal_batch(after, cfg.replay_batch_entries, cfg.replay_batch_bytes)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "resync: could not read the journal");
                pass.complete = false;
                pass.stopped = true;
                break;
            }
        };
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        if first {
            tracing::info!("resync: replaying offline writes");
            first = false;
        }
        after = last;
        if !replay_batch(w, batch, &mut pass).await {
            pass.stopped = true;
            break;
        }
    }
    // Forget entries no longer retried (placed, rejected, or gone from the journal).
    let stuck = {
        let mut attempts = w.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if !pass.stopped {
            attempts.retain(|seq, _| pass.retrying.contains(seq));
        }
        attempts
            .values()
            .any(|a| a.since.elapsed() >= cfg.replay_stuck_after)
    };
    let age = pass
        .oldest_pending_ms
        .map(|at| Duration::from_millis(now_ms().saturating_sub(at)).as_secs() as i64)
        .unwrap_or(0);
    w.metrics.replay_oldest_pending_seconds.set(age);
    w.metrics.replay_stuck.set(i64::from(stuck));
    w.replay_ok.send_if_modified(|ok| {
        let changed = *ok == stuck;
        *ok = !stuck;
        changed
    });
    pass.complete
}

/// Replays one batch; `false` if no apiserver answered (the pass stops there).
async fn replay_batch<S>(w: &Worker<S>, batch: Vec<(u64, Bytes)>, pass: &mut Pass) -> bool
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let mut decoded = Vec::with_capacity(batch.len());
    for (seq, bytes) in batch {
        match JournalEntry::from_bytes(&bytes) {
            Ok(e) => decoded.push((seq, e)),
            Err(err) => {
                tracing::warn!(seq, error = %err, "resync: rejecting an undecodable journal entry");
                let record = json!({
                    "seq": seq,
                    "reason": "undecodable",
                    "error": err.to_string(),
                    "rejectedAtMs": now_ms(),
                });
                reject(w, seq, None, record, "undecodable").await;
            }
        }
    }
    // Journals written before status writes were coalesced as they arrived may hold several
    // per object: only the last one of the batch is sent.
    let mut last_status: HashMap<String, u64> = HashMap::new();
    for (seq, e) in &decoded {
        if let Some(k) = e.coalesce_key() {
            last_status.insert(k, *seq);
        }
    }
    for (seq, e) in decoded {
        let order = e.order_key(seq);
        let coalesce = e.coalesce_key();
        if pass.blocked.contains(&order) {
            pass.pending(e.at_ms);
            continue;
        }
        if let Some(k) = &coalesce
            && last_status.get(k) != Some(&seq)
        {
            w.metrics.replayed("coalesced");
            remove(w, seq, coalesce.clone()).await;
            continue;
        }
        let what = describe(&e);
        let (outcome, status) = match w.send(request(&e)).await {
            None => (
                Outcome::Retry,
                no_answer(&format!(
                    "no answer from the apiserver within {:?}",
                    w.config.request_timeout
                )),
            ),
            Some(resp) => {
                let outcome = classify(&resp, e.verb);
                let status = if matches!(
                    outcome,
                    Outcome::Rejected | Outcome::Retry | Outcome::Throttled | Outcome::Unreachable
                ) {
                    status_of(w, resp).await
                } else {
                    Value::Null
                };
                (outcome, status)
            }
        };
        w.metrics.replayed(outcome.label());
        match outcome {
            Outcome::Unreachable => {
                tracing::info!(seq, write = %what, status = %status, "resync: no apiserver answered; replay paused");
                let mut all = w.attempts.lock().unwrap_or_else(|e| e.into_inner());
                all.entry(seq).or_insert(Attempts {
                    count: 0,
                    since: Instant::now(),
                });
                pass.retrying.insert(seq);
                pass.pending(e.at_ms);
                pass.complete = false;
                return false;
            }
            Outcome::Retry | Outcome::Throttled => {
                let attempts = {
                    let mut all = w.attempts.lock().unwrap_or_else(|e| e.into_inner());
                    let a = all.entry(seq).or_insert(Attempts {
                        count: 0,
                        since: Instant::now(),
                    });
                    if outcome == Outcome::Retry {
                        a.count += 1;
                    }
                    *a
                };
                if attempts.count >= w.config.replay_max_attempts {
                    tracing::warn!(
                        seq,
                        write = %what,
                        attempts = attempts.count,
                        status = %status,
                        "resync: the cloud keeps failing this offline write; rejected and skipped"
                    );
                    let record = record(seq, &e, "retries_exhausted", attempts.count, status);
                    reject(w, seq, coalesce, record, "retries_exhausted").await;
                    w.attempts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&seq);
                    continue;
                }
                tracing::info!(
                    seq,
                    write = %what,
                    attempts = attempts.count,
                    status = %status,
                    "resync: offline write not accepted yet; later writes of the same object wait"
                );
                pass.blocked.insert(order);
                pass.retrying.insert(seq);
                pass.pending(e.at_ms);
                pass.complete = false;
                continue;
            }
            Outcome::Rejected => {
                let attempts = w
                    .attempts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&seq)
                    .map_or(1, |a| a.count + 1);
                tracing::warn!(
                    seq,
                    write = %what,
                    status = %status,
                    "resync: the cloud rejected the offline write; skipped"
                );
                let record = record(seq, &e, "client_error", attempts, status);
                reject(w, seq, coalesce, record, "client_error").await;
                continue;
            }
            Outcome::Applied => tracing::debug!(seq, write = %what, "resync: replayed"),
            Outcome::Conflict => {
                tracing::info!(seq, write = %what, "resync: the cloud changed the object meanwhile; its version wins")
            }
            Outcome::Gone => {
                tracing::info!(seq, write = %what, "resync: the object is gone upstream; write dropped")
            }
        }
        remove(w, seq, coalesce).await;
    }
    true
}

/// `verb resource namespace/name by component`, for the logs.
fn describe(e: &JournalEntry) -> String {
    format!(
        "{:?} {}{} {}/{} by {}",
        e.verb,
        e.resource,
        if e.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", e.subresource)
        },
        e.namespace,
        if e.name.is_empty() {
            "(generated)"
        } else {
            &e.name
        },
        e.component
    )
}

/// The record kept of a rejected entry (served at `/v1/journal/rejected`).
fn record(seq: u64, e: &JournalEntry, reason: &str, attempts: u32, status: Value) -> Value {
    json!({
        "seq": seq,
        "reason": reason,
        "attempts": attempts,
        "verb": e.verb,
        "component": e.component,
        "group": e.group,
        "version": e.version,
        "resource": e.resource,
        "subresource": e.subresource,
        "namespace": e.namespace,
        "name": e.name,
        "path": e.path,
        "writtenAtMs": e.at_ms,
        "rejectedAtMs": now_ms(),
        "status": status,
    })
}

/// A Status for an attempt that got no answer.
fn no_answer(message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": "Timeout", "code": 504})
}

/// The Status the apiserver answered (bounded read), or one made from the code.
async fn status_of<S>(w: &Worker<S>, resp: Response<Body>) -> Value
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let code = resp.status().as_u16();
    let upstream = resp
        .extensions()
        .get::<Arc<UpstreamError>>()
        .map(|e| e.to_string());
    let body = w.body(resp).await;
    match body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(v) if v["kind"] == "Status" => v,
        _ => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": upstream.unwrap_or_else(|| format!("HTTP {code}")), "code": code}),
    }
}

async fn remove<S>(w: &Worker<S>, seq: u64, coalesce: Option<String>) {
    if let Err(e) = w.store.journal_remove(seq, coalesce).await {
        tracing::warn!(seq, error = %e, "resync: could not remove a journal entry");
    }
}

async fn reject<S>(w: &Worker<S>, seq: u64, coalesce: Option<String>, record: Value, reason: &str) {
    w.metrics.rejected(reason);
    let bytes = Bytes::from(record.to_string());
    if let Err(e) = w
        .store
        .journal_reject(seq, coalesce, bytes, w.config.replay_rejected_kept)
        .await
    {
        tracing::warn!(seq, error = %e, "resync: could not move a rejected journal entry");
    }
}

fn classify(resp: &Response<Body>, verb: JournalVerb) -> Outcome {
    let status = resp.status();
    if resp.extensions().get::<Arc<UpstreamError>>().is_some() {
        return Outcome::Unreachable;
    }
    match status {
        s if s.is_success() => Outcome::Applied,
        StatusCode::CONFLICT if verb == JournalVerb::Create => Outcome::Applied,
        StatusCode::CONFLICT => Outcome::Conflict,
        StatusCode::NOT_FOUND | StatusCode::GONE => Outcome::Gone,
        StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled,
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
        assert_eq!(classify(&resp(429), JournalVerb::Patch), Outcome::Throttled);
        assert_eq!(classify(&resp(400), JournalVerb::Create), Outcome::Rejected);
    }
}
