//! Offline watches: a small state machine over the local event fan-out, the health channel, a
//! deadline and a bookmark ticker, turned into a streamed body.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::Frame;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, mpsc, watch as tokio_watch};
use tokio::time::{Interval, MissedTickBehavior, Sleep};
use yurt_core::request::ListOptions;
use yurt_core::{RequestInfo, Status};

use super::endpoints;
use super::read::{api_version_of, object_kind};
use super::{Inner, LocalEvent, gvr_of, random_fraction};
use crate::body::{Body, BoxError};
use crate::health::HealthSnapshot;
use crate::multiplex::event_line;
use crate::store::{Gvr, ListScope, RedbStore, rv};

/// Initial events (`sendInitialEvents`) are read from the store in batches of this many.
const INITIAL_BATCH: usize = 256;

/// How a watch starts, once its options are defaulted and validated as kube-apiserver v1.36
/// does (the WatchList feature is on there by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WatchPlan {
    /// ADDED events for the current state come first.
    pub(crate) initial: bool,
    /// The initial events end with a BOOKMARK annotated `k8s.io/initial-events-end`.
    pub(crate) end_bookmark: bool,
}

impl WatchPlan {
    /// Defaults and validates a watch's options. A watch from `resourceVersion` unset or `"0"`
    /// without `sendInitialEvents` or `resourceVersionMatch` is a streaming list
    /// (`sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`); an explicit
    /// `sendInitialEvents` needs `resourceVersionMatch=NotOlderThan` and a
    /// `resourceVersionMatch` needs `sendInitialEvents`. Only an explicit
    /// `sendInitialEvents=true` with bookmarks allowed ends its initial events with the
    /// `initial-events-end` bookmark (a legacy watch from `0` gets plain periodic bookmarks, as
    /// v1.36 sends them); without bookmarks the initial events simply end. Invalid
    /// combinations are the apiserver's 422 `ListOptions.meta.k8s.io` Status.
    pub(crate) fn of(o: &ListOptions) -> Result<WatchPlan, Box<Status>> {
        let legacy = matches!(o.resource_version.as_deref(), None | Some("" | "0"));
        let matching = o
            .resource_version_match
            .as_deref()
            .filter(|m| !m.is_empty());
        let (send, matching) = match (o.send_initial_events, matching) {
            (None, None) if legacy => (Some(true), Some(NOT_OLDER_THAN)),
            other => other,
        };
        let mut errors: Vec<(&str, &str, String)> = Vec::new();
        if send.is_some() && matching != Some(NOT_OLDER_THAN) {
            errors.push((
                "FieldValueForbidden",
                "Forbidden",
                format!(
                    "sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"
                ),
            ));
        }
        if let Some(m) = matching {
            if send.is_none() {
                errors.push((
                    "FieldValueForbidden",
                    "Forbidden",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
                        .to_owned(),
                ));
            }
            if m != NOT_OLDER_THAN {
                errors.push((
                    "FieldValueNotSupported",
                    "Unsupported value",
                    format!("\"{m}\": supported values: \"{NOT_OLDER_THAN}\""),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Box::new(invalid_list_options(&errors)));
        }
        Ok(WatchPlan {
            initial: send == Some(true),
            end_bookmark: o.send_initial_events == Some(true) && o.allow_watch_bookmarks,
        })
    }
}

const NOT_OLDER_THAN: &str = "NotOlderThan";

/// The apiserver's 422 for invalid list options: every error of field `resourceVersionMatch`
/// as `(cause reason, error type, detail)`, joined as field.ErrorList prints them.
fn invalid_list_options(errors: &[(&str, &str, String)]) -> Status {
    const FIELD: &str = "resourceVersionMatch";
    let each: Vec<String> = errors
        .iter()
        .map(|(_, kind, detail)| format!("{FIELD}: {kind}: {detail}"))
        .collect();
    let why = if each.len() == 1 {
        each[0].clone()
    } else {
        format!("[{}]", each.join(", "))
    };
    let mut status = Status::invalid("meta.k8s.io", "ListOptions", "", &why);
    for (reason, kind, detail) in errors {
        status = status.with_cause(reason, FIELD, &format!("{kind}: {detail}"));
    }
    status
}

/// An offline watch.
pub(super) async fn watch(
    inner: &Arc<Inner>,
    info: &RequestInfo,
    component: &str,
) -> Response<Body> {
    let gvr = gvr_of(info);
    let o = &info.options;
    let scope = match super::scope_of(info, component) {
        Ok(s) => s,
        Err(status) => return status.to_response(),
    };
    let plan = match WatchPlan::of(o) {
        Ok(plan) => plan,
        Err(status) => return status.to_response(),
    };
    // Subscribe before reading anything, so no local write can fall between the two.
    let events = inner.events.subscribe();
    let mut health = inner.health.clone();
    health.borrow_and_update();
    let timeout = match o.timeout_seconds {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => inner
            .config
            .min_request_timeout
            .mul_f64(1.0 + random_fraction()),
    };
    let kind = object_kind(inner, &gvr, component)
        .await
        .unwrap_or_default();
    let initial = plan.initial.then(|| initial_events(inner, &scope));
    let start_rv = match o.resource_version.as_deref() {
        Some(rv) if !rv.is_empty() && rv != "0" => rv.to_owned(),
        _ => current_rv(&inner.store, &scope).await,
    };
    let mut bookmarks = tokio::time::interval_at(
        tokio::time::Instant::now() + inner.config.bookmark_interval,
        inner.config.bookmark_interval,
    );
    bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    inner.metrics.open_watches.inc();
    let state = State {
        inner: inner.clone(),
        scope,
        kind,
        api_version: api_version_of(&gvr),
        gvr,
        events,
        health,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmarks: o.allow_watch_bookmarks.then_some(bookmarks),
        initial,
        end_bookmark: plan.end_bookmark,
        pending: VecDeque::new(),
        closing: inner.closing.subscribe(),
        last_rv: start_rv,
        done: false,
        _open: OpenWatch(inner.metrics.open_watches.clone()),
    };
    let mut state = state;
    if endpoints::applies_to(&state.gvr) && state.initial.is_none() {
        state.resend_endpoints(None).await;
    }
    let stream = futures::stream::unfold(state, |mut s| async move {
        let line = s.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(line)), s))
    });
    let mut resp = Response::new(Body::new(http_body_util::StreamBody::new(stream)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Decrements the open-watches gauge when the watch's body is dropped.
struct OpenWatch(Gauge);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What woke the watch.
enum Step {
    End,
    Health,
    Bookmark,
    Event(Box<LocalEvent>),
}

struct State {
    inner: Arc<Inner>,
    scope: ListScope,
    gvr: Gvr,
    kind: String,
    api_version: String,
    events: broadcast::Receiver<LocalEvent>,
    health: tokio_watch::Receiver<HealthSnapshot>,
    deadline: Pin<Box<Sleep>>,
    bookmarks: Option<Interval>,
    /// Items of a `sendInitialEvents` watch still to send.
    initial: Option<mpsc::Receiver<Vec<Bytes>>>,
    /// Whether the initial events end with the `initial-events-end` bookmark.
    end_bookmark: bool,
    /// Lines ready to send.
    pending: VecDeque<Bytes>,
    closing: tokio_watch::Receiver<bool>,
    last_rv: String,
    done: bool,
    _open: OpenWatch,
}

impl State {
    /// The next line of the body; `None` ends the watch.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.done {
                return None;
            }
            if let Some(rx) = &mut self.initial {
                match rx.recv().await {
                    Some(batch) => {
                        for json in batch {
                            self.note_rv_of(&json);
                            self.pending.push_back(event_line("ADDED", &json));
                        }
                    }
                    None => {
                        self.initial = None;
                        if self.end_bookmark {
                            self.pending.push_back(self.bookmark(true));
                        }
                    }
                }
                continue;
            }
            let step = tokio::select! {
                _ = &mut self.deadline => Step::End,
                _ = self.closing.wait_for(|c| *c) => Step::End,
                changed = self.health.changed() => match changed {
                    Ok(()) => Step::Health,
                    // The checker is gone: nothing will tell this watch the cloud is back.
                    Err(_) => Step::End,
                },
                _ = tick(&mut self.bookmarks) => Step::Bookmark,
                ev = self.events.recv() => match ev {
                    Ok(ev) => Step::Event(Box::new(ev)),
                    // Fell behind the fan-out: end, the client re-lists.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "an offline watch fell behind; ending it");
                        Step::End
                    }
                    Err(broadcast::error::RecvError::Closed) => Step::End,
                },
            };
            match step {
                Step::End => return None,
                // The cloud is back: end, so the client re-watches upstream.
                Step::Health if self.health.borrow_and_update().any_healthy() => return None,
                Step::Health => {}
                Step::Bookmark => return Some(self.bookmark(false)),
                Step::Event(ev) => self.on_event(*ev).await,
            }
        }
    }

    async fn on_event(&mut self, ev: LocalEvent) {
        if ev.component == self.scope.component && ev.gvr == self.gvr {
            let ns_ok =
                self.scope.namespace.is_empty() || self.scope.namespace == ev.object.namespace();
            let labels: BTreeMap<String, String> =
                serde_json::from_str(ev.object.labels()).unwrap_or_default();
            if ns_ok && self.scope.selection().selects(&labels, &ev.object.json) {
                let rv = ev.object.resource_version().to_owned();
                self.note_rv(&rv);
                self.pending.push_back(event_line(ev.kind, &ev.object.json));
            }
        }
        if ev.pod_changed && endpoints::applies_to(&self.gvr) {
            self.resend_endpoints_of(&ev).await;
        }
    }

    /// Re-sends this watch's endpoint objects that refer to the changed pod, rewritten.
    async fn resend_endpoints_of(&mut self, ev: &LocalEvent) {
        let target = (
            ev.object.namespace().to_owned(),
            ev.object.name().to_owned(),
        );
        self.resend_endpoints(Some(target)).await;
    }

    /// Re-sends, rewritten, this watch's endpoint objects that refer to pod `target`, or (with
    /// `None`, when the watch starts) every one the node's pods rewrite: the client may hold
    /// the copy from before a change it was not watching for.
    async fn resend_endpoints(&mut self, target: Option<(String, String)>) {
        let scope = self.scope.clone();
        let node = self.inner.config.node_name.clone();
        let found = self
            .inner
            .store
            .read_snapshot(move |snap| {
                let pods = endpoints::load_pods(snap, &node)?;
                let mut out = Vec::new();
                if pods.is_empty() {
                    return Ok(out);
                }
                snap.scan(&scope, |_, json| {
                    match &target {
                        Some((ns, name)) => {
                            if endpoints::refers_to(json, ns, name) {
                                let new = endpoints::rewrite(&scope.gvr, json, &pods)
                                    .unwrap_or_else(|| json.to_vec());
                                out.push(new);
                            }
                        }
                        None => {
                            if let Some(new) = endpoints::rewrite(&scope.gvr, json, &pods) {
                                out.push(new);
                            }
                        }
                    }
                    true
                })?;
                Ok(out)
            })
            .await;
        match found {
            Ok(objects) => {
                for json in objects {
                    // Stamped with the watch's current resourceVersion (a real one, not older
                    // than the object's), so a consumer that drops events older than what it
                    // holds (the multiplexer's watch cache) still takes the rewrite.
                    let json = match serde_json::from_slice::<serde_json::Value>(&json) {
                        Ok(mut v) if !self.last_rv.is_empty() => {
                            let own = v["metadata"]["resourceVersion"].as_str().unwrap_or("");
                            if rv::is_older(own, &self.last_rv) {
                                v["metadata"]["resourceVersion"] =
                                    serde_json::Value::String(self.last_rv.clone());
                            }
                            serde_json::to_vec(&v).unwrap_or(json)
                        }
                        _ => json,
                    };
                    self.pending.push_back(event_line("MODIFIED", &json));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not re-read endpoints offline"),
        }
    }

    fn note_rv(&mut self, rv: &str) {
        if rv::is_older(&self.last_rv, rv) || self.last_rv.is_empty() {
            self.last_rv = rv.to_owned();
        }
    }

    fn note_rv_of(&mut self, json: &[u8]) {
        #[derive(serde::Deserialize)]
        struct H {
            metadata: M,
        }
        #[derive(serde::Deserialize)]
        struct M {
            #[serde(rename = "resourceVersion", default)]
            rv: String,
        }
        if let Ok(h) = serde_json::from_slice::<H>(json) {
            self.note_rv(&h.metadata.rv);
        }
    }

    fn bookmark(&self, initial_end: bool) -> Bytes {
        let mut meta = serde_json::json!({"resourceVersion": self.last_rv});
        if initial_end {
            meta["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
        }
        let object = serde_json::json!({
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": meta,
        });
        event_line("BOOKMARK", object.to_string().as_bytes())
    }
}

/// Waits for the next bookmark tick, or forever without bookmarks.
async fn tick(t: &mut Option<Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Streams the scope's cached objects in batches for the initial events.
fn initial_events(inner: &Arc<Inner>, scope: &ListScope) -> mpsc::Receiver<Vec<Bytes>> {
    let (tx, rx) = mpsc::channel(2);
    let store = inner.store.clone();
    let scope = scope.clone();
    let node = inner.config.node_name.clone();
    // Owned by the watch: ends with the scan or when the watch's receiver is dropped.
    tokio::task::spawn_blocking(move || {
        let Ok(snap) = store.snapshot() else { return };
        let pods = if endpoints::applies_to(&scope.gvr) {
            endpoints::load_pods(&snap, &node).unwrap_or_default()
        } else {
            Default::default()
        };
        let mut batch = Vec::with_capacity(INITIAL_BATCH);
        let mut gone = false;
        let result = snap.scan(&scope, |_, json| {
            let json = endpoints::rewrite(&scope.gvr, json, &pods).unwrap_or_else(|| json.to_vec());
            batch.push(Bytes::from(json));
            if batch.len() >= INITIAL_BATCH
                && tx
                    .blocking_send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(INITIAL_BATCH),
                    ))
                    .is_err()
            {
                gone = true;
                return false;
            }
            true
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "offline initial events: store scan failed");
        }
        if !gone && !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
    });
    rx
}

/// The highest resourceVersion cached in `scope` ("0" when empty).
async fn current_rv(store: &RedbStore, scope: &ListScope) -> String {
    let scope = scope.clone();
    store
        .read_snapshot(move |snap| {
            let mut best = String::new();
            snap.scan(&scope, |rv, _| {
                if best.is_empty() || rv::is_older(&best, rv) {
                    best = rv.to_owned();
                }
                true
            })?;
            Ok(best)
        })
        .await
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(query: &[(&str, &str)]) -> Result<WatchPlan, Box<Status>> {
        let mut o = ListOptions {
            watch: true,
            ..ListOptions::default()
        };
        for (k, v) in query {
            match *k {
                "resourceVersion" => o.resource_version = Some((*v).to_owned()),
                "resourceVersionMatch" => o.resource_version_match = Some((*v).to_owned()),
                "sendInitialEvents" => o.send_initial_events = Some(*v == "true"),
                "allowWatchBookmarks" => o.allow_watch_bookmarks = *v == "true",
                _ => unreachable!(),
            }
        }
        WatchPlan::of(&o)
    }

    #[test]
    fn legacy_watches_start_with_the_current_state() {
        let p = plan(&[]).unwrap();
        assert!(p.initial && !p.end_bookmark);
        let p = plan(&[("resourceVersion", "0"), ("allowWatchBookmarks", "true")]).unwrap();
        assert!(p.initial && !p.end_bookmark);
        let p = plan(&[
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("allowWatchBookmarks", "true"),
        ])
        .unwrap();
        assert!(p.initial && p.end_bookmark);
        let p = plan(&[("resourceVersion", "12")]).unwrap();
        assert!(!p.initial);
        let p = plan(&[
            ("sendInitialEvents", "false"),
            ("resourceVersionMatch", "NotOlderThan"),
        ])
        .unwrap();
        assert!(!p.initial);
    }

    #[test]
    fn invalid_combinations_use_the_apiservers_wording() {
        let st = plan(&[("sendInitialEvents", "true")]).unwrap_err();
        assert_eq!(st.code, 422);
        assert_eq!(
            st.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: \
             sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        );
        let st = plan(&[
            ("resourceVersion", "5"),
            ("resourceVersionMatch", "NotOlderThan"),
        ])
        .unwrap_err();
        assert!(st.message.ends_with(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless \
             sendInitialEvents is provided"
        ));
        let st = plan(&[
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "Exact"),
        ])
        .unwrap_err();
        assert_eq!(
            st.message,
            "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: \
             sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, \
             resourceVersionMatch: Unsupported value: \"Exact\": supported values: \"NotOlderThan\"]"
        );
        assert_eq!(st.details.causes.len(), 2);
    }
}
