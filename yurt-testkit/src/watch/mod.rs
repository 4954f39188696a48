//! Watches: a 200 response whose chunked body is newline-delimited JSON watch events
//! (`{"type":"ADDED","object":{...}}`), fed by the store's fan-out.
//!
//! Where a watch starts (kube-apiserver's rules):
//! - `resourceVersion` unset or `0`: an ADDED event for every current object, then changes;
//! - `resourceVersion=N`: every change after N from the kept history, then live changes; if N is
//!   older than the history, one ERROR event carrying a 410 Expired Status, then the end;
//!   if N is in the future, the server waits up to 3 s for it, then sends a 504 ERROR event;
//! - `sendInitialEvents=true` (which requires `resourceVersionMatch=NotOlderThan`, else 422):
//!   ADDED for every object, then a BOOKMARK annotated `k8s.io/initial-events-end: "true"` (when
//!   bookmarks are allowed), then changes; `sendInitialEvents=false` starts at N (or now).
//!
//! With selectors, an object that stops matching is sent as DELETED (its previous state at the
//! event's resourceVersion) and one that starts matching as ADDED, as the watch cache does.
//! With `allowWatchBookmarks`, a BOOKMARK carrying the latest resourceVersion is sent every
//! bookmark interval. The stream ends at `timeoutSeconds` (default: a random time between the
//! minimum request timeout and twice that), when the server cuts watches, or when the watcher
//! fell too far behind (its buffer filled), and the client then re-watches.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, Sleep};
use yurt_core::request::ListOptions;
use yurt_core::status::Status;

use crate::handlers::read::{Selectors, TOO_LARGE_WAIT, invalid_options, parse_rv, too_large};
use crate::handlers::{Ctx, Fail, Reply};
use crate::registry::ResourceDef;
use crate::server::Shared;
use crate::storage::{Event, EventKind, Obj};

/// The annotation on the bookmark that ends a watch's initial events.
pub(crate) const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Where a watch starts.
enum Start {
    /// ADDED for every current object first (`end_bookmark`: then the initial-events-end
    /// bookmark).
    Initial { end_bookmark: bool },
    /// Changes after this revision.
    From(u64),
}

/// One thing to send.
enum Item {
    Event(Arc<Event>),
    Initial(Arc<Obj>),
    Bookmark { rv: u64, initial_end: bool },
    Error(Box<Status>),
}

/// kube-apiserver's watch option validation.
fn validate_watch(opts: &ListOptions) -> Result<(), Fail> {
    let mut errs: Vec<(&str, String)> = Vec::new();
    let m = opts.resource_version_match.as_deref();
    if opts.send_initial_events.is_some() && m != Some("NotOlderThan") {
        errs.push((
            "resourceVersionMatch",
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                .into(),
        ));
    }
    if let Some(m) = m {
        if opts.send_initial_events.is_none() {
            errs.push((
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
            ));
        }
        if m != "NotOlderThan" {
            errs.push((
                "resourceVersionMatch",
                format!("Unsupported value: \"{m}\": supported values: \"NotOlderThan\""),
            ));
        }
        if opts.continue_token.is_some() {
            errs.push((
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden when continue is provided".into(),
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid_options(&errs).into())
    }
}

/// A watch request.
pub(crate) async fn watch(ctx: &Ctx<'_>) -> Reply {
    let opts = &ctx.info.options;
    validate_watch(opts)?;
    let selectors = Selectors::parse(&ctx.def, opts)?;
    let name = (!ctx.info.is_collection()).then(|| ctx.info.name.clone());
    let rv_param = opts.resource_version.as_deref().unwrap_or("");
    let requested = match rv_param {
        "" | "0" => None,
        n => Some(parse_rv(n)?),
    };
    let allow_bookmarks = opts.allow_watch_bookmarks;
    let start = match (opts.send_initial_events, requested) {
        (Some(true), _) => Start::Initial {
            end_bookmark: allow_bookmarks,
        },
        (Some(false), None) => Start::From(ctx.shared.store.current_rv()),
        (_, Some(n)) => Start::From(n),
        (None, None) => Start::Initial {
            end_bookmark: false,
        },
    };
    let mut backlog = VecDeque::new();
    let mut rx = None;
    let too_far = match requested {
        Some(n) if !ctx.shared.store.wait_for_rv(n, TOO_LARGE_WAIT).await => {
            Some(too_large(n, ctx.shared.store.current_rv()))
        }
        _ => None,
    };
    let mut last_rv = 0;
    if let Some(st) = too_far {
        backlog.push_back(Item::Error(Box::new(st)));
    } else {
        let ns = (!ctx.namespace.is_empty()).then(|| ctx.namespace.clone());
        let storage = ctx.storage().to_owned();
        ctx.shared.store.read(|t| match start {
            Start::Initial { end_bookmark } => {
                let items = t.list(&storage, ns.as_deref());
                last_rv = t.rv();
                for (_, obj) in items {
                    backlog.push_back(Item::Initial(obj));
                }
                if end_bookmark {
                    backlog.push_back(Item::Bookmark {
                        rv: last_rv,
                        initial_end: true,
                    });
                }
                rx = Some(t.subscribe(&storage, ns));
            }
            Start::From(n) => match t.events_since(&storage, n) {
                Ok(events) => {
                    last_rv = n;
                    backlog.extend(events.into_iter().map(Item::Event));
                    rx = Some(t.subscribe(&storage, ns));
                }
                Err(too_old) => backlog.push_back(Item::Error(Box::new(Status::expired(format!(
                    "too old resource version: {n} ({})",
                    too_old.oldest
                ))))),
            },
        });
    }
    let settings = &ctx.shared.settings;
    let timeout = match opts.timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => {
            let min = settings.min_request_timeout.as_secs().max(1);
            Duration::from_secs(min + crate::meta::random_u64() % min)
        }
    };
    let bookmarks = allow_bookmarks.then(|| {
        let period = settings.bookmark_interval.max(Duration::from_millis(10));
        tokio::time::interval_at(tokio::time::Instant::now() + period, period)
    });
    let mut cut = ctx.shared.watch_cut.subscribe();
    cut.borrow_and_update();
    let state = WatchState {
        shared: ctx.shared.clone(),
        def: ctx.def.clone(),
        selectors,
        name,
        backlog,
        rx,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmarks,
        allow_bookmarks,
        cut,
        last_rv,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        let frame = st.next().await?;
        Some((frame, st))
    });
    let mut resp = crate::body::response(
        StatusCode::OK,
        "application/json",
        crate::body::stream(stream),
    );
    resp.extensions_mut().insert(crate::server::IsWatch);
    Ok(resp)
}

/// The state of one watch stream.
struct WatchState {
    shared: Arc<Shared>,
    def: Arc<ResourceDef>,
    selectors: Selectors,
    name: Option<String>,
    backlog: VecDeque<Item>,
    rx: Option<mpsc::Receiver<Arc<Event>>>,
    deadline: Pin<Box<Sleep>>,
    bookmarks: Option<Interval>,
    allow_bookmarks: bool,
    cut: watch::Receiver<u64>,
    last_rv: u64,
    done: bool,
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl WatchState {
    /// The next frame, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            while let Some(item) = self.backlog.pop_front() {
                if let Some(frame) = self.encode(item).await {
                    return Some(frame);
                }
            }
            if self.done {
                return None;
            }
            let WatchState {
                shared,
                backlog,
                rx,
                deadline,
                bookmarks,
                cut,
                done,
                ..
            } = self;
            let Some(receiver) = rx.as_mut() else {
                *done = true;
                continue;
            };
            tokio::select! {
                biased;
                _ = cut.changed() => *done = true,
                () = deadline.as_mut() => *done = true,
                ev = receiver.recv() => match ev {
                    Some(ev) => backlog.push_back(Item::Event(ev)),
                    None => *done = true,
                },
                () = tick(bookmarks) => {
                    // Everything up to the published revision is already in the channel.
                    let rv = shared.store.current_rv();
                    while let Ok(ev) = receiver.try_recv() {
                        backlog.push_back(Item::Event(ev));
                    }
                    backlog.push_back(Item::Bookmark { rv, initial_end: false });
                }
            }
        }
    }

    fn matches(&self, key: &str, obj: &Value) -> bool {
        if let Some(name) = &self.name
            && key.rsplit('/').next() != Some(name.as_str())
        {
            return false;
        }
        self.selectors.matches(obj)
    }

    async fn encode(&mut self, item: Item) -> Option<Bytes> {
        match item {
            Item::Initial(obj) => {
                let key = crate::storage::object_key(
                    crate::meta::meta_str(&obj.value, "namespace"),
                    crate::meta::meta_str(&obj.value, "name"),
                );
                if !self.matches(&key, &obj.value) {
                    return None;
                }
                Some(self.frame("ADDED", &obj).await)
            }
            Item::Event(ev) => {
                self.last_rv = self.last_rv.max(ev.rv);
                let now = ev.kind != EventKind::Deleted && self.matches(&ev.key, &ev.object.value);
                let before = ev
                    .prev
                    .as_ref()
                    .is_some_and(|p| self.matches(&ev.key, &p.value));
                match (now, before) {
                    (true, false) => Some(self.frame("ADDED", &ev.object).await),
                    (true, true) => Some(self.frame(ev.kind.as_str(), &ev.object).await),
                    (false, true) if ev.kind == EventKind::Deleted => {
                        Some(self.frame("DELETED", &ev.object).await)
                    }
                    (false, true) => {
                        // Stopped matching: its previous state, at this event's revision.
                        let prev = ev.prev.as_ref().expect("checked");
                        let mut v = prev.value.clone();
                        crate::meta::metadata_mut(&mut v)
                            .insert("resourceVersion".into(), json!(ev.rv.to_string()));
                        Some(self.frame("DELETED", &Obj::new(v)).await)
                    }
                    (false, false) => None,
                }
            }
            Item::Bookmark { rv, initial_end } => {
                if !self.allow_bookmarks {
                    return None;
                }
                let rv = rv.max(self.last_rv);
                self.last_rv = rv;
                let mut meta = json!({"resourceVersion": rv.to_string()});
                if initial_end {
                    meta["annotations"] = json!({INITIAL_EVENTS_END: "true"});
                }
                let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
                Some(frame("BOOKMARK", &Bytes::from(obj.to_string())))
            }
            Item::Error(st) => {
                self.done = true;
                self.rx = None;
                Some(frame("ERROR", &Bytes::from(st.to_json())))
            }
        }
    }

    /// One event of `ty` for `obj` as the watched version serves it; if the CRD's conversion
    /// webhook fails, an ERROR event with its Status, which ends the watch.
    async fn frame(&mut self, ty: &str, obj: &Obj) -> Bytes {
        if !crate::conversion::needs_webhook(&self.def, &obj.value) {
            return frame(ty, &crate::convert::served_json(&self.def, obj, false));
        }
        match crate::conversion::served(&self.shared, &self.def, &obj.value).await {
            Ok(v) => frame(ty, &Bytes::from(v.to_string())),
            Err(st) => {
                self.done = true;
                self.rx = None;
                self.backlog.clear();
                frame("ERROR", &Bytes::from(st.to_json()))
            }
        }
    }
}

/// One newline-terminated watch event.
fn frame(ty: &str, object: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(object.len() + ty.len() + 24);
    buf.put_slice(b"{\"type\":\"");
    buf.put_slice(ty.as_bytes());
    buf.put_slice(b"\",\"object\":");
    buf.put_slice(object);
    buf.put_slice(b"}\n");
    buf.freeze()
}
