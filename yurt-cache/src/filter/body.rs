//! The response body that filters a list, a watch or one object as it streams.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use serde_json::Value;
use tokio::sync::watch;

use super::seen::{Scope, Seen};
use super::view::ns_name;
use super::{ClusterView, FilterConfig, FilterContext, FilterName, run_chain};
use crate::body::{Body, BoxError};
use crate::cache::json_stream::{ListStream, ObjectStream};

/// How the response is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One object (get, patch).
    Object,
    /// A list.
    List,
    /// A watch event stream.
    Watch,
}

/// What one response filters with.
pub(crate) struct Setup {
    pub(crate) chain: Vec<FilterName>,
    pub(crate) config: Arc<FilterConfig>,
    pub(crate) view: watch::Receiver<Arc<ClusterView>>,
    pub(crate) max_bytes: usize,
    pub(crate) max_tracked: usize,
    /// The request's `apiVersion` (`group/version`, or `version` for the core group).
    pub(crate) api_version: String,
    /// The request's resource.
    pub(crate) resource: String,
    /// The shared copies of view-dependent objects (when the chain depends on the view).
    pub(crate) seen: Option<Seen>,
    /// The watch's namespace and selectors (seeding it from `seen`).
    pub(crate) scope: Option<Scope>,
}

/// An object a watch has sent, kept to re-filter it when the view changes.
struct Tracked {
    /// The object as the apiserver sent it.
    raw: Arc<Value>,
    /// Hash of what the client was last sent; `None` when it was dropped (sent as DELETED).
    sent: Option<u64>,
}

type Changed = BoxFuture<'static, (watch::Receiver<Arc<ClusterView>>, bool)>;

enum State {
    Object(BytesMut),
    /// An object above the size limit: the rest passes unchanged.
    Passthrough,
    List {
        split: ListStream,
        /// Items written so far (for the separating commas).
        written: usize,
    },
    Watch {
        split: ObjectStream,
        tracked: HashMap<(String, String), Tracked>,
        /// Resolves when the view changes (only when the chain depends on it).
        changed: Option<Changed>,
    },
}

/// Filters the inner body; see the [module docs](super).
pub(crate) struct FilterBody {
    inner: Body,
    chain: Vec<FilterName>,
    config: Arc<FilterConfig>,
    view: Arc<ClusterView>,
    max_bytes: usize,
    max_tracked: usize,
    api_version: String,
    resource: String,
    seen: Option<Seen>,
    state: State,
    done: bool,
}

fn changed(mut rx: watch::Receiver<Arc<ClusterView>>) -> Changed {
    Box::pin(async move {
        let ok = rx.changed().await.is_ok();
        (rx, ok)
    })
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// The hash of an object's serialization (what [`event`] sends of it).
fn hash(v: &Value) -> u64 {
    hash_bytes(&serde_json::to_vec(v).unwrap_or_default())
}

/// Writes a watch event line (`ty` is ADDED, MODIFIED or DELETED); returns the object's hash.
fn event(out: &mut Vec<u8>, ty: &str, object: &Value) -> u64 {
    let obj = serde_json::to_vec(object).unwrap_or_default();
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(&obj);
    out.extend_from_slice(b"}\n");
    hash_bytes(&obj)
}

fn malformed(e: impl std::fmt::Display) -> BoxError {
    format!("filter: malformed response body: {e}").into()
}

impl FilterBody {
    pub(crate) fn new(inner: Body, mode: Mode, setup: Setup) -> Self {
        let mut view_rx = setup.view;
        let view = view_rx.borrow_and_update().clone();
        let uses_view = setup.chain.iter().any(|f| f.uses_view());
        let seen = setup.seen.filter(|_| uses_view);
        let state = match mode {
            Mode::Object => State::Object(BytesMut::new()),
            Mode::List => State::List {
                split: ListStream::new(setup.max_bytes),
                written: 0,
            },
            Mode::Watch => State::Watch {
                split: ObjectStream::new(setup.max_bytes),
                tracked: HashMap::new(),
                changed: uses_view.then(|| changed(view_rx)),
            },
        };
        let mut body = FilterBody {
            inner,
            chain: setup.chain,
            config: setup.config,
            view,
            max_bytes: setup.max_bytes,
            max_tracked: setup.max_tracked,
            api_version: setup.api_version,
            resource: setup.resource,
            seen,
            state,
            done: false,
        };
        body.seed(setup.scope);
        body
    }

    /// Starts a watch knowing the objects earlier lists and watches sent within its scope,
    /// as filtered by the current view.
    fn seed(&mut self, scope: Option<Scope>) {
        let (Some(seen), Some(scope)) = (&self.seen, scope) else {
            return;
        };
        if !matches!(
            self.state,
            State::Watch {
                changed: Some(_),
                ..
            }
        ) {
            return;
        }
        let objs = seen.matching(&self.api_version, &self.resource, &scope, self.max_tracked);
        let seeded: HashMap<_, _> = objs
            .into_iter()
            .map(|raw| {
                let sent = self.filter(Value::clone(&raw)).as_ref().map(hash);
                (ns_name(&raw), Tracked { raw, sent })
            })
            .collect();
        if let State::Watch { tracked, .. } = &mut self.state {
            *tracked = seeded;
        }
    }

    fn context(&self) -> FilterContext<'_> {
        FilterContext::new(&self.config, &self.view).for_resource(&self.api_version, &self.resource)
    }

    fn filter(&self, obj: Value) -> Option<Value> {
        run_chain(&self.chain, obj, &self.context())
    }

    /// Processes one data chunk; returns the bytes to send (maybe empty).
    fn data(&mut self, chunk: &[u8]) -> Result<Vec<u8>, BoxError> {
        let mut out = Vec::new();
        match &mut self.state {
            State::Passthrough => out.extend_from_slice(chunk),
            State::Object(buf) => {
                if buf.len() + chunk.len() > self.max_bytes {
                    out.extend_from_slice(buf);
                    out.extend_from_slice(chunk);
                    self.state = State::Passthrough;
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            State::List { split, .. } => {
                let items = split.feed(chunk).map_err(malformed)?;
                for raw in items {
                    let item: Value = serde_json::from_slice(&raw).map_err(malformed)?;
                    if let Some(seen) = &self.seen {
                        seen.record(&self.api_version, &self.resource, Arc::new(item.clone()));
                    }
                    if let Some(kept) = self.filter(item) {
                        let State::List { written, .. } = &mut self.state else {
                            unreachable!("state checked above");
                        };
                        out.extend_from_slice(if *written == 0 { b"{\"items\":[" } else { b"," });
                        *written += 1;
                        serde_json::to_writer(&mut out, &kept).map_err(malformed)?;
                    }
                }
            }
            State::Watch { split, .. } => {
                let events = split.feed(chunk).map_err(malformed)?;
                for raw in events {
                    self.watch_event(&raw, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    fn watch_event(&mut self, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), BoxError> {
        let mut ev: Value = serde_json::from_slice(raw).map_err(malformed)?;
        let ty = ev["type"].as_str().unwrap_or("").to_owned();
        if !matches!(ty.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
            out.extend_from_slice(raw);
            out.push(b'\n');
            return Ok(());
        }
        let obj = ev["object"].take();
        let track = matches!(
            &self.state,
            State::Watch {
                changed: Some(_),
                ..
            }
        );
        let filtered = self.filter(obj.clone());
        let sent = match (&filtered, ty.as_str()) {
            (Some(o), "ADDED" | "MODIFIED") => Some(event(out, &ty, o)),
            (Some(o), _) => {
                event(out, "DELETED", o);
                None
            }
            (None, _) => {
                event(out, "DELETED", &obj);
                None
            }
        };
        let obj = Arc::new(obj);
        if let Some(seen) = &self.seen {
            if ty == "DELETED" {
                seen.forget(&self.api_version, &self.resource, &obj);
            } else {
                seen.record(&self.api_version, &self.resource, obj.clone());
            }
        }
        if track {
            let max = self.max_tracked;
            let State::Watch { tracked, .. } = &mut self.state else {
                return Ok(());
            };
            let key = ns_name(&obj);
            if ty == "DELETED" {
                tracked.remove(&key);
            } else if tracked.len() < max || tracked.contains_key(&key) {
                tracked.insert(key, Tracked { raw: obj, sent });
            }
        }
        Ok(())
    }

    /// Re-filters the tracked objects after a view change; returns the events to send.
    fn refilter(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let State::Watch { tracked, .. } = &mut self.state else {
            return out;
        };
        let cx = FilterContext::new(&self.config, &self.view)
            .for_resource(&self.api_version, &self.resource);
        let mut keys: Vec<_> = tracked.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(t) = tracked.get_mut(&key) else {
                continue;
            };
            let filtered = run_chain(&self.chain, Value::clone(&t.raw), &cx);
            let now = filtered.as_ref().map(hash);
            if now == t.sent {
                continue;
            }
            match (&filtered, t.sent) {
                (Some(o), Some(_)) => event(&mut out, "MODIFIED", o),
                (Some(o), None) => event(&mut out, "ADDED", o),
                (None, _) => event(&mut out, "DELETED", &t.raw),
            };
            t.sent = now;
        }
        out
    }

    /// The inner body ended: the bytes that close the response.
    fn finish(&mut self) -> Result<Vec<u8>, BoxError> {
        match std::mem::replace(&mut self.state, State::Passthrough) {
            State::Passthrough => Ok(Vec::new()),
            State::Object(buf) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(buf.to_vec());
                }
                let obj: Value = serde_json::from_slice(&buf).map_err(malformed)?;
                // These filters never drop a single object; keep it if one would.
                match self.filter(obj) {
                    Some(o) => serde_json::to_vec(&o).map_err(malformed),
                    None => Ok(buf.to_vec()),
                }
            }
            State::List { split, written } => {
                let head = split.finish().map_err(malformed)?;
                let mut out = Vec::new();
                out.extend_from_slice(if written == 0 { b"{\"items\":[" } else { b"" });
                out.push(b']');
                for (key, raw) in [
                    ("kind", &head.kind),
                    ("apiVersion", &head.api_version),
                    ("metadata", &head.metadata),
                ] {
                    if !raw.is_empty() {
                        out.extend_from_slice(format!(",\"{key}\":").as_bytes());
                        out.extend_from_slice(raw);
                    }
                }
                out.push(b'}');
                Ok(out)
            }
            State::Watch { split, .. } => {
                split.finish().map_err(malformed)?;
                Ok(Vec::new())
            }
        }
    }

    /// Polls the view-change future; returns events to send when the view changed.
    fn poll_view(&mut self, cx: &mut Context<'_>) -> Vec<u8> {
        let mut refilter = false;
        // Poll until the (re-armed) future is pending, so its waker is always registered.
        while let State::Watch { changed: slot, .. } = &mut self.state {
            let Some(fut) = slot.as_mut() else {
                break;
            };
            let Poll::Ready((mut rx, ok)) = fut.as_mut().poll(cx) else {
                break;
            };
            if !ok {
                // The publisher is gone: the view is final; keep filtering with it.
                *slot = None;
                break;
            }
            self.view = rx.borrow_and_update().clone();
            *slot = Some(changed(rx));
            refilter = true;
        }
        if refilter {
            self.refilter()
        } else {
            Vec::new()
        }
    }
}

impl http_body::Body for FilterBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let out = this.poll_view(cx);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match this.data(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    },
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    this.done = true;
                    return match this.finish() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};
    use serde_json::json;

    use super::*;
    use crate::filter::tests::cx;

    fn setup(
        chain: Vec<FilterName>,
        view: ClusterView,
    ) -> (Setup, watch::Sender<Arc<ClusterView>>) {
        let (tx, rx) = watch::channel(Arc::new(view));
        let (config, _) = cx();
        (
            Setup {
                chain,
                config: Arc::new(config),
                view: rx,
                max_bytes: 1 << 20,
                max_tracked: 16,
                api_version: String::new(),
                resource: String::new(),
                seen: Some(Seen::new(16)),
                scope: Scope::new("", None, None),
            },
            tx,
        )
    }

    fn chunked(text: &str, size: usize) -> Body {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(StreamBody::new(futures::stream::iter(chunks)))
    }

    async fn collect(body: FilterBody) -> Value {
        let bytes = body.collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn topology_view() -> ClusterView {
        let (_, mut view) = cx();
        view.set_service(&json!({"metadata": {"namespace": "d", "name": "web",
            "annotations": {"openyurt.io/topologyKeys": "openyurt.io/nodepool"}}}));
        view
    }

    fn slice(name: &str, nodes: &[&str]) -> Value {
        let eps: Vec<Value> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"addresses": [format!("10.0.0.{i}")], "nodeName": n}))
            .collect();
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "d", "resourceVersion": "5",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": eps})
    }

    #[tokio::test]
    async fn list_is_rewritten_item_by_item_at_any_chunking() {
        let list = json!({"kind": "ServiceList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "12"},
            "items": [
                {"metadata": {"name": "a", "namespace": "d"}, "spec": {"type": "ClusterIP"}},
                {"metadata": {"name": "x-tunnel-server-internal-svc", "namespace": "kube-system"}, "spec": {}},
                {"metadata": {"name": "b", "namespace": "d", "annotations": {"svc.openyurt.io/discard": "true"}}, "spec": {"type": "LoadBalancer"}},
                {"metadata": {"name": "c", "namespace": "d"}, "spec": {"type": "NodePort"}}]});
        let text = list.to_string();
        for size in [1, 3, 17, text.len()] {
            let (s, _tx) = setup(vec![FilterName::DiscardCloudService], ClusterView::new());
            let out = collect(FilterBody::new(chunked(&text, size), Mode::List, s)).await;
            let names: Vec<&str> = out["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["a", "c"], "chunk {size}");
            assert_eq!(out["kind"], "ServiceList");
            assert_eq!(out["apiVersion"], "v1");
            assert_eq!(out["metadata"]["resourceVersion"], "12");
        }
        // Everything dropped, or nothing there: an empty list.
        let (s, _tx) = setup(vec![FilterName::DiscardCloudService], ClusterView::new());
        let body = r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{},"items":null}"#;
        let out = collect(FilterBody::new(chunked(body, 4), Mode::List, s)).await;
        assert_eq!(out["items"], json!([]));
    }

    #[tokio::test]
    async fn malformed_list_ends_with_an_error() {
        let (s, _tx) = setup(vec![FilterName::DiscardCloudService], ClusterView::new());
        let body = FilterBody::new(chunked(r#"{"items":[{"a":1}"#, 4), Mode::List, s);
        assert!(body.collect().await.is_err());
    }

    #[tokio::test]
    async fn watch_drops_become_deleted_and_bookmarks_pass() {
        let events = [
            json!({"type": "ADDED", "object": {"metadata": {"name": "a", "namespace": "d"}, "spec": {"type": "ClusterIP"}}}),
            json!({"type": "ADDED", "object": {"metadata": {"name": "b", "namespace": "d", "annotations": {"svc.openyurt.io/discard": "true"}}, "spec": {"type": "LoadBalancer"}}}),
            json!({"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "20"}}}),
            json!({"type": "ERROR", "object": {"kind": "Status", "code": 410}}),
        ];
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        let (s, _tx) = setup(vec![FilterName::DiscardCloudService], ClusterView::new());
        let bytes = FilterBody::new(chunked(&text, 7), Mode::Watch, s)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let out: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(out[0], events[0]);
        assert_eq!(out[1]["type"], "DELETED");
        assert_eq!(out[1]["object"], events[1]["object"]);
        assert_eq!(out[2], events[2]);
        assert_eq!(out[3], events[3]);
    }

    async fn next_event(body: &mut FilterBody) -> Value {
        let f = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        let data = f.into_data().unwrap();
        serde_json::from_slice::<Value>(data.strip_suffix(b"\n").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn view_change_refilters_an_open_watch() {
        let (s, tx) = setup(vec![FilterName::ServiceTopology], topology_view());
        let (mut feed_tx, feed_rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let mut body = FilterBody::new(Body::new(StreamBody::new(feed_rx)), Mode::Watch, s);
        let ev =
            json!({"type": "ADDED", "object": slice("web-1", &["edge-1", "edge-2", "cloud-1"])});
        use futures::SinkExt;
        feed_tx
            .send(Ok(Frame::data(Bytes::from(format!("{ev}\n")))))
            .await
            .unwrap();
        let first = next_event(&mut body).await;
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["endpoints"].as_array().unwrap().len(), 2);
        // edge-2 leaves the pool: the slice is re-sent narrowed.
        let mut view = topology_view();
        view.set_nodepool(
            &json!({"metadata": {"name": "hangzhou"}, "status": {"nodes": ["edge-1"]}}),
        );
        tx.send_replace(Arc::new(view));
        let second = next_event(&mut body).await;
        assert_eq!(second["type"], "MODIFIED");
        assert_eq!(second["object"]["metadata"]["resourceVersion"], "5");
        let eps = second["object"]["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0]["nodeName"], "edge-1");
        // The annotation goes away: everything is visible again.
        let mut view = ClusterView::new();
        view.set_nodepool(
            &json!({"metadata": {"name": "hangzhou"}, "status": {"nodes": ["edge-1"]}}),
        );
        tx.send_replace(Arc::new(view));
        let third = next_event(&mut body).await;
        assert_eq!(third["object"]["endpoints"].as_array().unwrap().len(), 3);
        drop(feed_tx);
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_watch_opened_after_a_list_is_refiltered() {
        let (list_setup, tx) = setup(vec![FilterName::ServiceTopology], topology_view());
        let seen = list_setup.seen.clone();
        let list = json!({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": "9"},
            "items": [slice("web-1", &["edge-1", "edge-2", "cloud-1"])]});
        let out = collect(FilterBody::new(
            chunked(&list.to_string(), 11),
            Mode::List,
            list_setup,
        ))
        .await;
        assert_eq!(out["items"][0]["endpoints"].as_array().unwrap().len(), 2);

        // The watch from the list's resourceVersion has sent nothing yet.
        let (mut watch_setup, _) = setup(vec![FilterName::ServiceTopology], topology_view());
        watch_setup.view = tx.subscribe();
        watch_setup.seen = seen;
        let (_feed_tx, feed_rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let mut body = FilterBody::new(
            Body::new(StreamBody::new(feed_rx)),
            Mode::Watch,
            watch_setup,
        );
        let mut view = topology_view();
        view.set_nodepool(
            &json!({"metadata": {"name": "hangzhou"}, "status": {"nodes": ["edge-1"]}}),
        );
        tx.send_replace(Arc::new(view));
        let ev = next_event(&mut body).await;
        assert_eq!(ev["type"], "MODIFIED");
        assert_eq!(ev["object"]["endpoints"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn single_object_is_filtered_and_large_ones_pass() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"}]}]}});
        let (s, _tx) = setup(vec![FilterName::ServiceEnvUpdater], ClusterView::new());
        let out = collect(FilterBody::new(
            chunked(&pod.to_string(), 5),
            Mode::Object,
            s,
        ))
        .await;
        assert_eq!(
            out["spec"]["containers"][0]["env"][0]["value"],
            "169.254.2.1"
        );
        let (mut s, _tx) = setup(vec![FilterName::ServiceEnvUpdater], ClusterView::new());
        s.max_bytes = 10;
        let out = collect(FilterBody::new(
            chunked(&pod.to_string(), 5),
            Mode::Object,
            s,
        ))
        .await;
        assert_eq!(out, pod);
    }
}
