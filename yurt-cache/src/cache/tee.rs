//! The tee task: decodes the chunks a [`TeeBody`](super::body::TeeBody) copies to it and writes
//! what they hold into the store.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc};

use super::body::TeeSignal;
use super::json_stream::{ListStream, ObjectStream};
use super::metrics::CacheMetrics;
use super::policy::Plan;
use crate::store::{
    DeleteOutcome, EventKind, EventOutcome, Gvr, ListMeta, ListScope, ListScopeKey, MetaHead,
    Object, PutOutcome, RedbStore, Store, StoreError, WatchEvent,
};

/// Everything one tee needs.
pub(crate) struct Tee {
    pub(crate) plan: Plan,
    pub(crate) store: RedbStore,
    pub(crate) metrics: CacheMetrics,
    pub(crate) max_bytes: usize,
    pub(crate) pages: Arc<PageChains>,
}

/// At most this many chains of list pages are pending at once; a new one evicts the oldest.
pub(crate) const MAX_CHAINS: usize = 16;
/// At most this many bytes of items are held by the pending chains together; a chain that
/// alone exceeds it is dropped, otherwise the oldest chains are evicted to make room.
pub(crate) const MAX_CHAIN_BYTES: usize = 32 << 20;
/// A chain whose next page has not arrived within this time is dropped.
pub(crate) const CHAIN_TTL: Duration = Duration::from_secs(60);
/// How long the tee of a page waits for the tee of the previous page to register the chain
/// (the client may ask for the next page before the previous page's tee is done).
const PAGE_WAIT: Duration = Duration::from_secs(3);

/// The pending chains of list pages, shared by the tees of one [`CacheLayer`](super::CacheLayer):
/// the items of the pages seen so far, keyed by the scope and the `continue` token the
/// apiserver returned with the last of them. Only the tee of the page answering that token
/// takes the chain, so a chain is followed by one client, in order; a chain nobody continues
/// expires ([`CHAIN_TTL`]) or is evicted, and never replaces anything.
#[derive(Debug, Default)]
pub(crate) struct PageChains {
    chains: Mutex<HashMap<(ListScopeKey, String), Chain>>,
    changed: Notify,
}

/// The pages of one chain seen so far.
#[derive(Debug)]
struct Chain {
    /// The first page's list metadata (its resourceVersion is the chain's).
    meta: ListMeta,
    items: Vec<Object>,
    bytes: usize,
    since: std::time::Instant,
}

impl PageChains {
    /// Registers a chain awaiting the page for `token` (bounded: see [`MAX_CHAINS`],
    /// [`MAX_CHAIN_BYTES`]); false if it was too large to keep.
    fn put(&self, key: (ListScopeKey, String), chain: Chain) -> bool {
        if chain.bytes > MAX_CHAIN_BYTES {
            return false;
        }
        {
            let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
            chains.retain(|_, c| c.since.elapsed() < CHAIN_TTL);
            while chains.len() >= MAX_CHAINS
                || chains.values().map(|c| c.bytes).sum::<usize>() + chain.bytes > MAX_CHAIN_BYTES
            {
                let Some(oldest) = chains
                    .iter()
                    .min_by_key(|(_, c)| c.since)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                chains.remove(&oldest);
            }
            chains.insert(key, chain);
        }
        self.changed.notify_waiters();
        true
    }

    /// Takes the chain awaiting `key`, if it is there and not expired.
    fn take(&self, key: &(ListScopeKey, String)) -> Option<Chain> {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        chains.retain(|_, c| c.since.elapsed() < CHAIN_TTL);
        chains.remove(key)
    }

    /// [`PageChains::take`], waiting up to [`PAGE_WAIT`] for the chain to be registered.
    async fn wait_take(&self, key: &(ListScopeKey, String)) -> Option<Chain> {
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(chain) = self.take(key) {
                return Some(chain);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Number of pending chains (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.chains.lock().map_or(0, |c| c.len())
    }
}

/// Why a tee gave up (the metric's `reason` label).
#[derive(Debug)]
struct GiveUp(&'static str, String);

impl Tee {
    /// Runs until the body's sender is gone (the body ended or was dropped) and every store
    /// write it started has resolved (each bounded by the store's own timeout).
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Bytes>, signal: Arc<TeeSignal>) {
        let verb = self.plan.label();
        let result = match &self.plan {
            Plan::Object { component, gvr } => self.object(component, gvr, &mut rx, &signal).await,
            Plan::NonResource { key, content_type } => {
                self.document(key, content_type, &mut rx, &signal).await
            }
            Plan::List(scope) => self.list(scope, None, &mut rx, &signal).await,
            Plan::TableList(scope) => self.table_list(scope, &mut rx, &signal).await,
            Plan::ListPage { scope, token } => {
                self.list(scope, Some(token), &mut rx, &signal).await
            }
            Plan::Watch { component, gvr } => self.watch(component, gvr, &mut rx).await,
        };
        if let Err(GiveUp(reason, detail)) = result {
            // Overflow explains any other symptom (a list cut short looks incomplete).
            let reason = if signal.overflow.load(Ordering::Acquire) {
                "overflow"
            } else {
                reason
            };
            if reason == "partial" {
                // A page that cannot join a chain (begun elsewhere, or dropped): no warning.
                tracing::debug!(verb, reason, %detail, "cache tee skipped a response");
            } else {
                tracing::warn!(verb, reason, %detail, "cache tee gave up on a response");
            }
            self.metrics.failed(reason);
        }
    }

    /// The whole (small) body, or why not.
    async fn collect(
        &self,
        rx: &mut mpsc::Receiver<Bytes>,
        signal: &TeeSignal,
    ) -> Result<Bytes, GiveUp> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = rx.recv().await {
            if buf.len() + chunk.len() > self.max_bytes {
                return Err(GiveUp(
                    "decode",
                    format!("body over {} bytes", self.max_bytes),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        complete(signal)?;
        Ok(buf.freeze())
    }

    async fn object(
        &self,
        component: &str,
        gvr: &Gvr,
        rx: &mut mpsc::Receiver<Bytes>,
        signal: &TeeSignal,
    ) -> Result<(), GiveUp> {
        let body = self.collect(rx, signal).await?;
        let Some(object) = storable(gvr, body)? else {
            return Ok(());
        };
        let outcome = self
            .store
            .put(component, gvr, object)
            .await
            .map_err(store_err)?;
        if matches!(outcome, PutOutcome::Created | PutOutcome::Updated) {
            self.metrics.cached("object", 1);
        }
        Ok(())
    }

    async fn document(
        &self,
        key: &str,
        content_type: &str,
        rx: &mut mpsc::Receiver<Bytes>,
        signal: &TeeSignal,
    ) -> Result<(), GiveUp> {
        let body = self.collect(rx, signal).await?;
        let stored = super::document::encode(content_type, body);
        if stored.first() != Some(&0) {
            // Plain JSON: checked, as every JSON the store keeps.
            serde_json::from_slice::<&RawValue>(&stored)
                .map_err(|e| GiveUp("decode", e.to_string()))?;
        }
        self.store
            .put_nonresource(key, stored)
            .await
            .map_err(store_err)?;
        self.metrics.cached("nonresource", 1);
        Ok(())
    }

    /// A Table list with whole objects in its rows: they replace the scope, as a list would
    /// (a paginated Table is not cached).
    async fn table_list(
        &self,
        scope: &ListScope,
        rx: &mut mpsc::Receiver<Bytes>,
        signal: &TeeSignal,
    ) -> Result<(), GiveUp> {
        let body = self.collect(rx, signal).await?;
        let mut table: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| GiveUp("decode", e.to_string()))?;
        let meta = &table["metadata"];
        if meta["continue"].as_str().is_some_and(|c| !c.is_empty()) {
            return Err(GiveUp("partial", "a paginated Table".into()));
        }
        let resource_version = meta["resourceVersion"].as_str().unwrap_or("").to_owned();
        let mut items = Vec::new();
        let mut kind = String::new();
        let rows = match table["rows"].take() {
            serde_json::Value::Array(rows) => rows,
            _ => Vec::new(),
        };
        for mut row in rows {
            let object = row["object"].take();
            if object["metadata"].is_null() || object["kind"] == "PartialObjectMetadata" {
                return Err(GiveUp("decode", "a Table row without its object".into()));
            }
            if kind.is_empty() {
                kind = object["kind"].as_str().unwrap_or("").to_owned();
            }
            let json = Bytes::from(object.to_string());
            if let Some(object) = storable(&scope.gvr, json)? {
                items.push(object);
            }
        }
        let api_version = if scope.gvr.group.is_empty() {
            scope.gvr.version.clone()
        } else {
            format!("{}/{}", scope.gvr.group, scope.gvr.version)
        };
        let meta = ListMeta {
            resource_version,
            kind: if kind.is_empty() {
                String::new()
            } else {
                format!("{kind}List")
            },
            api_version,
            completed_at_ms: unix_ms(),
        };
        self.store
            .replace_list(scope, meta, items)
            .await
            .map_err(store_err)?;
        self.metrics.cached("list", 1);
        Ok(())
    }

    /// A whole list, or one page of a chain: the first page (`token` `None`, an answer with
    /// `metadata.continue`) starts a chain, each later page joins the chain awaiting its
    /// `token`, and the last page (no `continue`) replaces the scope with every page's items
    /// at the first page's resourceVersion.
    async fn list(
        &self,
        scope: &ListScope,
        token: Option<&str>,
        rx: &mut mpsc::Receiver<Bytes>,
        signal: &TeeSignal,
    ) -> Result<(), GiveUp> {
        let mut split = ListStream::new(self.max_bytes);
        let mut items = Vec::new();
        while let Some(chunk) = rx.recv().await {
            for item in split.feed_bytes(&chunk).map_err(decode_err)? {
                if let Some(object) = storable(&scope.gvr, item)? {
                    items.push(object);
                }
            }
        }
        complete(signal)?;
        let head = split.finish().map_err(decode_err)?;
        let metadata: ListMetadata = if head.metadata.is_empty() {
            ListMetadata::default()
        } else {
            serde_json::from_slice(&head.metadata).map_err(|e| GiveUp("decode", e.to_string()))?
        };
        let text = |raw: &Bytes| -> Result<String, GiveUp> {
            if raw.is_empty() {
                return Ok(String::new());
            }
            serde_json::from_slice(raw).map_err(|e| GiveUp("decode", e.to_string()))
        };
        let meta = ListMeta {
            resource_version: metadata.resource_version,
            kind: text(&head.kind)?,
            api_version: text(&head.api_version)?,
            completed_at_ms: unix_ms(),
        };
        let (meta, items) = match token {
            None => (meta, items),
            Some(token) => {
                let key = (scope.key(), token.to_owned());
                let Some(mut chain) = self.pages.wait_take(&key).await else {
                    return Err(GiveUp(
                        "partial",
                        "a page of a list whose earlier pages were not seen".into(),
                    ));
                };
                chain.items.extend(items);
                let meta = ListMeta {
                    completed_at_ms: meta.completed_at_ms,
                    ..chain.meta
                };
                (meta, chain.items)
            }
        };
        if !metadata.continue_token.is_empty() {
            let bytes = items.iter().map(|o| o.json().len()).sum();
            let chain = Chain {
                meta,
                items,
                bytes,
                since: std::time::Instant::now(),
            };
            let key = (scope.key(), metadata.continue_token);
            if self.pages.put(key, chain) {
                return Ok(());
            }
            return Err(GiveUp(
                "partial",
                format!("a paginated list over {MAX_CHAIN_BYTES} bytes"),
            ));
        }
        self.store
            .replace_list(scope, meta, items)
            .await
            .map_err(store_err)?;
        self.metrics.cached("list", 1);
        Ok(())
    }

    async fn watch(
        &self,
        component: &str,
        gvr: &Gvr,
        rx: &mut mpsc::Receiver<Bytes>,
    ) -> Result<(), GiveUp> {
        type Durable = Pin<Box<dyn Future<Output = Result<Vec<EventOutcome>, StoreError>> + Send>>;
        let mut split = ObjectStream::new(self.max_bytes);
        let mut pending: FuturesUnordered<Durable> = FuturesUnordered::new();
        let mut failure = None;
        loop {
            tokio::select! {
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { break };
                    let mut events = Vec::new();
                    for raw in split.feed(&chunk).map_err(decode_err)? {
                        if let Some(event) = watch_event(gvr, &raw)? {
                            events.push(event);
                        }
                    }
                    if events.is_empty() {
                        continue;
                    }
                    let ticket = self
                        .store
                        .submit_watch_events(component, gvr, events)
                        .await
                        .map_err(store_err)?;
                    pending.push(Box::pin(ticket.durable()));
                }
                Some(done) = pending.next(), if !pending.is_empty() => {
                    if let Err(e) = self.settle(done) {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        // The stream is over (or the store failed): the writes already queued still resolve.
        while let Some(done) = pending.next().await {
            if let Err(e) = self.settle(done) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn settle(&self, done: Result<Vec<EventOutcome>, StoreError>) -> Result<(), GiveUp> {
        let outcomes = done.map_err(store_err)?;
        let written = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    EventOutcome::Put(PutOutcome::Created | PutOutcome::Updated)
                        | EventOutcome::Delete(DeleteOutcome::Deleted)
                )
            })
            .count();
        self.metrics.cached("watch", written as u64);
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct ListMetadata {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: String,
}

/// What the tee reads of an object, in one pass: `kind`, `spec.nodeName` and the metadata the
/// store indexes.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    metadata: Option<MetaHead<'a>>,
    #[serde(default)]
    spec: Option<PodSpecHead>,
}

#[derive(Deserialize)]
struct PodSpecHead {
    #[serde(rename = "nodeName", default)]
    node_name: String,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

/// The object to store for a response or list item: `None` for a `Status` (never stored) and
/// for a pod not bound to a node (upstream's rule); an error if the body is not an object.
fn storable(gvr: &Gvr, json: Bytes) -> Result<Option<Object>, GiveUp> {
    let text = std::str::from_utf8(&json).map_err(|e| GiveUp("decode", e.to_string()))?;
    let head: Head<'_> = serde_json::from_str(text).map_err(|e| GiveUp("decode", e.to_string()))?;
    if head.kind.as_deref() == Some("Status") {
        return Ok(None);
    }
    if is_pods(gvr) && head.spec.is_none_or(|s| s.node_name.is_empty()) {
        return Ok(None);
    }
    Object::with_meta(json.clone(), head.metadata)
        .map(Some)
        .map_err(|e| GiveUp("decode", e.to_string()))
}

/// One watch event to store: `None` for BOOKMARK, ERROR, unknown types and unbound pods.
fn watch_event(gvr: &Gvr, raw: &[u8]) -> Result<Option<WatchEvent>, GiveUp> {
    let event: EventHead<'_> =
        serde_json::from_slice(raw).map_err(|e| GiveUp("decode", e.to_string()))?;
    let kind = match event.kind {
        "ADDED" => EventKind::Added,
        "MODIFIED" => EventKind::Modified,
        "DELETED" => EventKind::Deleted,
        "ERROR" => {
            tracing::debug!(status = event.object.get(), "watch ERROR event not cached");
            return Ok(None);
        }
        _ => return Ok(None),
    };
    let json = Bytes::copy_from_slice(event.object.get().as_bytes());
    let object = if kind == EventKind::Deleted {
        Object::from_json(json).map_err(|e| GiveUp("decode", e.to_string()))?
    } else {
        match storable(gvr, json)? {
            Some(o) => o,
            None => return Ok(None),
        }
    };
    Ok(Some(WatchEvent { kind, object }))
}

fn is_pods(gvr: &Gvr) -> bool {
    gvr.group.is_empty() && gvr.resource == "pods"
}

fn complete(signal: &TeeSignal) -> Result<(), GiveUp> {
    if signal.complete.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(GiveUp("incomplete", "the body did not end normally".into()))
    }
}

fn decode_err(e: super::json_stream::SplitError) -> GiveUp {
    GiveUp("decode", e.to_string())
}

fn store_err(e: StoreError) -> GiveUp {
    GiveUp("store", e.to_string())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Gvr {
        Gvr::new("", "v1", "pods")
    }

    fn stores(gvr: &Gvr, json: &'static str) -> bool {
        storable(gvr, Bytes::from_static(json.as_bytes()))
            .ok()
            .flatten()
            .is_some()
    }

    #[test]
    fn status_bodies_and_unbound_pods_are_not_stored() {
        let cms = Gvr::new("", "v1", "configmaps");
        assert!(stores(
            &cms,
            r#"{"kind":"ConfigMap","metadata":{"name":"a"}}"#
        ));
        assert!(!stores(
            &cms,
            r#"{"kind":"Status","metadata":{},"status":"Success"}"#
        ));
        assert!(stores(
            &pods(),
            r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"nodeName":"n"}}"#
        ));
        assert!(!stores(
            &pods(),
            r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{}}"#
        ));
        assert!(!stores(
            &pods(),
            r#"{"kind":"Pod","metadata":{"name":"p"}}"#
        ));
        assert!(storable(&cms, Bytes::from_static(b"[1]")).is_err());
        assert!(storable(&cms, Bytes::from_static(b"{\"metadata\":{}}")).is_err());
    }

    fn chain(bytes: usize) -> Chain {
        chain_since(bytes, std::time::Instant::now())
    }

    fn chain_since(bytes: usize, since: std::time::Instant) -> Chain {
        Chain {
            meta: ListMeta::default(),
            items: Vec::new(),
            bytes,
            since,
        }
    }

    #[test]
    fn page_chains_are_bounded() {
        let pages = PageChains::default();
        let scope = ListScope::parse("kubelet", &pods(), "", "", "")
            .unwrap()
            .key();
        let key = |t: usize| (scope.clone(), t.to_string());
        // Distinct, increasing ages without sleeping.
        let base = std::time::Instant::now();
        for t in 0..MAX_CHAINS + 3 {
            let since = base + Duration::from_millis(t as u64);
            assert!(pages.put(key(t), chain_since(1, since)));
        }
        assert_eq!(pages.len(), MAX_CHAINS, "the oldest were evicted");
        assert!(pages.take(&key(0)).is_none());
        assert!(pages.take(&key(MAX_CHAINS + 2)).is_some());
        assert!(pages.take(&key(MAX_CHAINS + 2)).is_none(), "taken once");
        assert!(
            !pages.put(key(100), chain(MAX_CHAIN_BYTES + 1)),
            "too large alone"
        );
        assert!(pages.put(key(101), chain(MAX_CHAIN_BYTES)));
        assert_eq!(pages.len(), 1, "room made by evicting the rest");
    }

    fn event(json: &str) -> Option<WatchEvent> {
        watch_event(&pods(), json.as_bytes()).ok().flatten()
    }

    #[test]
    fn watch_events_to_store() {
        let bound = r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"p","resourceVersion":"5"},"spec":{"nodeName":"n"}}}"#;
        let e = event(bound).unwrap();
        assert_eq!(e.kind, EventKind::Added);
        assert_eq!(e.object.resource_version(), "5");
        assert_eq!(
            &e.object.json()[..],
            br#"{"kind":"Pod","metadata":{"name":"p","resourceVersion":"5"},"spec":{"nodeName":"n"}}"#,
            "stored as sent"
        );
        let unbound = r#"{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"p"}}}"#;
        assert!(event(unbound).is_none());
        let deleted = r#"{"type":"DELETED","object":{"kind":"Pod","metadata":{"name":"p"}}}"#;
        assert_eq!(event(deleted).unwrap().kind, EventKind::Deleted);
        for skipped in [
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#,
            r#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#,
        ] {
            assert!(watch_event(&pods(), skipped.as_bytes()).unwrap().is_none());
        }
        assert!(watch_event(&pods(), b"{\"type\":\"ADDED\"}").is_err());
    }
}
