use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};
use yurt_core::request::Verb;
use yurt_core::selector::{FieldSelector, LabelSelector};
use yurt_core::{Component, RequestInfo, Status};

use super::MultiplexLayer;
use super::feed::{self, Feed, FeedConfig};
use super::state::{
    Event, Selection, Start, WatchCache, WatchFrom, bookmark_object, error_line, event_line,
    parse_rv,
};
use crate::admin::RequestLabels;
use crate::body::{Body, BoxError};
use crate::cache::policy::{self, Accept};
use crate::multiplex::PoolScopeResources;
use crate::store::Gvr;

/// How long a request for a resourceVersion newer than the cache waits for it (as
/// kube-apiserver's watch cache does).
const WAIT_FOR_RV: Duration = Duration::from_secs(3);
/// Items per chunk of a list body.
const LIST_CHUNK: usize = 64;
/// Events per chunk of a watch body when several are ready at once.
const WATCH_BATCH: usize = 64;

/// Each running feed, its task and its count in the `feeds` gauge.
type Feeds = HashMap<Gvr, (Arc<Feed>, AbortHandle, Running)>;

/// The feeds of one layer, created lazily per resource; dropping the last handle (the layer
/// and every service it made) aborts the feed tasks and ends their clients' watches.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) config: MultiplexLayer,
    /// The multiplexed resources now (the layer's, until [`Registry::set_resources`]).
    resources: std::sync::RwLock<PoolScopeResources>,
    /// `None` once shut down.
    feeds: Mutex<Option<Feeds>>,
}

impl Registry {
    pub(crate) fn new(config: MultiplexLayer) -> Registry {
        Registry {
            resources: std::sync::RwLock::new(config.resources.clone()),
            config,
            feeds: Mutex::new(Some(HashMap::new())),
        }
    }

    /// The multiplexed resources now.
    pub(crate) fn resources(&self) -> PoolScopeResources {
        self.resources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the multiplexed resources; the feeds of resources no longer in the set stop
    /// and their watches end (their clients re-request and pass through).
    pub(crate) fn set_resources(&self, resources: PoolScopeResources) {
        let mut guard = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        *self.resources.write().unwrap_or_else(|e| e.into_inner()) = resources.clone();
        if let Some(feeds) = guard.as_mut() {
            feeds.retain(|gvr, (f, task, _)| {
                let keep = resources.contains(&gvr.group, &gvr.version, &gvr.resource);
                if !keep {
                    tracing::info!(resource = %f.labels.resource, "multiplexer feed removed");
                    task.abort();
                    f.cache().close();
                }
                keep
            });
        }
    }

    /// The feed of `gvr`, spawning it through `inner` if it does not run yet; `None` once
    /// shut down.
    fn feed(&self, gvr: Gvr, inner: impl FnOnce() -> feed::Inner) -> Option<Arc<Feed>> {
        let mut guard = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let feeds = guard.as_mut()?;
        if let Some((f, _, _)) = feeds.get(&gvr) {
            return Some(f.clone());
        }
        let c = &self.config;
        let f = Arc::new(Feed::new(
            gvr.clone(),
            WatchCache::new(c.history, c.fanout_buffer),
        ));
        let config = FeedConfig {
            user_agent: c.user_agent(),
            list_timeout: c.list_timeout,
            watch_timeout: c.upstream_watch_timeout,
            backoff_min: c.backoff_min,
            backoff_max: c.backoff_max,
        };
        let metrics = c.metrics.clone();
        let running = Running::new(metrics.feeds.clone());
        tracing::info!(resource = %f.labels.resource, "multiplexer feed started");
        let task = tokio::spawn(feed::run(f.clone(), inner(), config, metrics));
        feeds.insert(gvr, (f.clone(), task.abort_handle(), running));
        Some(f)
    }

    /// Aborts every feed and ends every multiplexed watch; later requests get 503.
    pub(crate) fn shutdown(&self) {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner()).take();
        for (_, (f, task, _running)) in feeds.into_iter().flatten() {
            task.abort();
            f.cache().close();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counts a running feed (or an in-flight request) in a gauge until dropped.
#[derive(Debug)]
struct Running(Gauge);

impl Running {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The multiplexer's service; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct MultiplexService<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S> MultiplexService<S> {
    pub(crate) fn new(inner: S, registry: Arc<Registry>) -> Self {
        MultiplexService { inner, registry }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Request<Body>> for MultiplexService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let target = {
            let info = req.extensions().get::<RequestInfo>();
            let component = req.extensions().get::<Component>();
            match (info, component) {
                (Some(info), Some(component)) if self.multiplexed(&req, info, component) => {
                    Some((info.clone(), component.as_str().to_owned()))
                }
                _ => None,
            }
        };
        let Some((info, component)) = target else {
            return Box::pin(self.inner.call(req));
        };
        let gvr = Gvr::new(&info.api_group, &info.api_version, &info.resource);
        let inner = self.inner.clone();
        let feed = self.registry.feed(gvr, move || {
            BoxCloneService::new(inner.map_err(Into::<BoxError>::into))
        });
        let Some(feed) = feed else {
            let st = Status::service_unavailable("the multiplexer is shutting down");
            return Box::pin(futures::future::ready(Ok(status_response(&st))));
        };
        let config = self.registry.config.clone();
        Box::pin(async move { Ok(serve(&config, feed, info, component).await) })
    }
}

impl<S> MultiplexService<S> {
    fn multiplexed(&self, req: &Request<Body>, info: &RequestInfo, component: &Component) -> bool {
        let c = &self.registry.config;
        info.is_resource_request
            && matches!(info.verb, Verb::List | Verb::Watch)
            && info.subresource.is_empty()
            && info.is_collection()
            && info.options.continue_token.is_none()
            && self
                .registry
                .resources
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&info.api_group, &info.api_version, &info.resource)
            && component.as_str() != c.user_agent()
            && policy::accept(req.headers()) == Accept::Json
    }
}

/// A Status response (with `Retry-After` when it carries one).
fn status_response(status: &Status) -> Response<Body> {
    let mut resp: Response<Body> = status.to_response();
    if let Some(s) = status.details.retry_after_seconds {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// Reads the client's selection, refusing selectors the apiserver refuses.
fn selection(info: &RequestInfo) -> Result<Selection, Box<Status>> {
    let opts = &info.options;
    let labels = LabelSelector::parse(opts.label_selector.as_deref().unwrap_or(""))
        .map_err(|e| Box::new(Status::bad_request(e.to_string())))?;
    let fields = FieldSelector::parse(opts.field_selector.as_deref().unwrap_or(""))
        .map_err(|e| Box::new(Status::bad_request(e.to_string())))?;
    for req in fields.requirements() {
        let supported = matches!(req.field.as_str(), "metadata.name" | "metadata.namespace")
            || (info.api_group.is_empty()
                && info.resource == "services"
                && matches!(req.field.as_str(), "spec.clusterIP" | "spec.type"));
        if !supported {
            return Err(Box::new(Status::bad_request(format!(
                "field label not supported: {}",
                req.field
            ))));
        }
    }
    Ok(Selection {
        namespace: info.namespace.clone(),
        labels,
        fields,
    })
}

/// Answers one multiplexed list or watch.
async fn serve(
    config: &MultiplexLayer,
    feed: Arc<Feed>,
    info: RequestInfo,
    component: String,
) -> Response<Body> {
    let sel = match selection(&info) {
        Ok(s) => s,
        Err(st) => return status_response(&st),
    };
    if !feed.cache().synced() {
        config.metrics.not_synced.get_or_create(&feed.labels).inc();
        return status_response(&Status::too_many_requests(
            format!(
                "the multiplexer's cache of {} is not synced yet",
                feed.labels.resource
            ),
            1,
        ));
    }
    let labels = RequestLabels {
        verb: info.verb.as_str().to_owned(),
        resource: info.resource.clone(),
        component,
    };
    let guard = Running::new(config.metrics.in_flight.get_or_create(&labels).clone());
    let opts = &info.options;
    let requested = opts.resource_version.as_deref().unwrap_or("");
    let rv = match requested {
        "" | "0" => None,
        s => match parse_rv(Some(s)) {
            Some(rv) => Some(rv),
            None => {
                // As kube-apiserver refuses it for this verb (list 400, watch 422).
                let st = yurt_core::request::resource_version_status(
                    info.verb.as_str(),
                    &info.api_group,
                    &info.resource,
                    &info.name,
                    s,
                )
                .unwrap_or_else(|| Status::bad_request(format!("invalid resource version: {s:?}")));
                return status_response(&st);
            }
        },
    };
    if let Some(rv) = rv
        && !feed.wait_for_rv(rv, WAIT_FOR_RV).await
    {
        let st = Status::timeout(format!(
            "Too large resource version: {rv}, current: {}",
            feed.cache().rv()
        ))
        .with_cause("ResourceVersionTooLarge", "", "Too large resource version")
        .with_retry_after(1);
        if info.verb == Verb::Watch {
            return watch_error(st);
        }
        return status_response(&st);
    }
    if info.verb == Verb::Watch {
        watch(config, &feed, &info, sel, rv, guard)
    } else {
        if opts.resource_version_match.as_deref() == Some("Exact")
            && let Some(rv) = rv
            && rv != feed.cache().rv()
        {
            return status_response(&Status::expired(format!(
                "too old resource version: {rv} ({})",
                feed.cache().rv()
            )));
        }
        list(&feed, &sel, guard)
    }
}

/// A JSON response streaming `chunks`.
fn streamed<St>(chunks: St) -> Response<Body>
where
    St: futures::Stream<Item = Bytes> + Send + 'static,
{
    let body = StreamBody::new(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(Body::new(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The list, encoded item by item as the body is read.
fn list(feed: &Feed, sel: &Selection, guard: Running) -> Response<Body> {
    let (snapshot, kind, api_version) = {
        let cache = feed.cache();
        let (k, v) = cache.kind();
        (cache.list(sel), k.to_owned(), v.to_owned())
    };
    let head = Bytes::from(format!(
        r#"{{"kind":{},"apiVersion":{},"metadata":{{"resourceVersion":"{}"}},"items":["#,
        serde_json::Value::from(format!("{kind}List")),
        serde_json::Value::from(api_version),
        snapshot.rv
    ));
    let items = Arc::new(snapshot.items);
    let chunks = items.len().div_ceil(LIST_CHUNK);
    let body = futures::stream::iter(0..chunks).map(move |i| {
        let mut b = BytesMut::new();
        let start = i * LIST_CHUNK;
        for (j, o) in items[start..(start + LIST_CHUNK).min(items.len())]
            .iter()
            .enumerate()
        {
            if start + j > 0 {
                b.extend_from_slice(b",");
            }
            b.extend_from_slice(&o.raw);
        }
        b.freeze()
    });
    let tail = futures::stream::once(async move {
        drop(guard);
        Bytes::from_static(b"]}")
    });
    streamed(
        futures::stream::once(async { head })
            .chain(body)
            .chain(tail),
    )
}

/// A 200 watch carrying one ERROR event, as kube-apiserver's watch cache answers a watch it
/// cannot start.
fn watch_error(status: Status) -> Response<Body> {
    let line = error_line(&status);
    streamed(futures::stream::once(async move { line }))
}

/// State of one client's watch stream.
struct ClientWatch {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Event>>,
    sel: Selection,
    bookmarks: bool,
    deadline: Instant,
    fanned: Counter,
    _guard: Running,
}

impl ClientWatch {
    /// The next chunk: pending initial lines first, then live events (several per chunk when
    /// they are ready together) until the deadline, a lag or the end of the feed.
    async fn next(mut self) -> Option<(Bytes, ClientWatch)> {
        if let Some(b) = self.pending.pop_front() {
            return Some((b, self));
        }
        let mut out = BytesMut::new();
        let mut n = 0u64;
        loop {
            let ev = if n == 0 {
                match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => return None,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(ev) => Ok(ev),
                    Err(_) => break,
                }
            };
            match ev {
                Ok(ev) => {
                    if let Some(line) = self.sel.event_line(&ev, self.bookmarks) {
                        out.extend_from_slice(&line);
                        n += 1;
                        if n as usize >= WATCH_BATCH {
                            break;
                        }
                    }
                }
                // Lagged: the client fell behind the fan-out buffer; it resumes from the last
                // resourceVersion it saw (the history covers it) or re-lists.
                Err(_) if n == 0 => return None,
                Err(_) => break,
            }
        }
        self.fanned.inc_by(n);
        Some((out.freeze(), self))
    }
}

/// Starts a client's watch.
fn watch(
    config: &MultiplexLayer,
    feed: &Feed,
    info: &RequestInfo,
    sel: Selection,
    rv: Option<u64>,
    guard: Running,
) -> Response<Body> {
    let opts = &info.options;
    let bookmarks = opts.allow_watch_bookmarks;
    let plan = match crate::local::WatchPlan::of(opts) {
        Ok(plan) => plan,
        Err(status) => return status_response(&status),
    };
    let initial = plan.initial;
    let timeout = match opts.timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => feed::jitter(config.min_request_timeout),
    };
    let cache = feed.cache();
    let from = if initial {
        None
    } else {
        Some(rv.unwrap_or(cache.rv()))
    };
    let started = cache.subscribe(&sel, from);
    let (kind, api_version) = {
        let (k, v) = cache.kind();
        (k.to_owned(), v.to_owned())
    };
    drop(cache);
    let (start, rx) = match started {
        None => {
            return status_response(&Status::service_unavailable(
                "the multiplexer is shutting down",
            ));
        }
        Some(Err(WatchFrom::TooOld { oldest })) => {
            return watch_error(Status::expired(format!(
                "too old resource version: {} ({oldest})",
                rv.unwrap_or(0)
            )));
        }
        Some(Ok(s)) => s,
    };
    let fanned = config
        .metrics
        .events_fanned_out
        .get_or_create(&feed.labels)
        .clone();
    let mut pending = VecDeque::new();
    match start {
        Start::Initial(snapshot) => {
            let mut b = BytesMut::new();
            for (i, o) in snapshot.items.iter().enumerate() {
                b.extend_from_slice(&event_line("ADDED", &o.raw));
                if (i + 1) % WATCH_BATCH == 0 {
                    pending.push_back(b.split().freeze());
                }
            }
            fanned.inc_by(snapshot.items.len() as u64);
            if plan.end_bookmark {
                let obj = bookmark_object(&kind, &api_version, snapshot.rv, true);
                b.extend_from_slice(&event_line("BOOKMARK", &obj));
            }
            if !b.is_empty() {
                pending.push_back(b.freeze());
            }
        }
        Start::History(events) => {
            let mut b = BytesMut::new();
            for ev in events {
                if let Some(line) = sel.event_line(&ev, bookmarks) {
                    b.extend_from_slice(&line);
                    fanned.inc();
                }
            }
            if !b.is_empty() {
                pending.push_back(b.freeze());
            }
        }
    }
    let state = ClientWatch {
        pending,
        rx,
        sel,
        bookmarks,
        deadline: Instant::now() + timeout,
        fanned,
        _guard: guard,
    };
    streamed(futures::stream::unfold(state, ClientWatch::next))
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;
    use http_body_util::BodyExt;
    use tower::ServiceBuilder;

    use super::*;
    use crate::request_info::RequestInfoLayer;

    const WAIT: Duration = Duration::from_secs(10);

    fn event(name: &str, rv: u64) -> Bytes {
        Bytes::from(format!(
            "{{\"type\":\"ADDED\",\"object\":{{\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"d\",\"resourceVersion\":\"{rv}\"}}}}}}\n"
        ))
    }

    /// The layer over a scripted upstream (no sockets): the feed's watch body is fed by the
    /// test. A client that reads nothing while more events than the fan-out buffer arrive has
    /// its watch ended (it resumes from its last version), and the others are not held up; a
    /// resource taken out of the set stops its feed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_client_and_a_resource_leaving_the_set_end_their_watches() {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let upstream = tower::service_fn(move |req: Request<Body>| {
            let watch = req.uri().query().unwrap_or("").contains("watch=true");
            let rx = if watch {
                rx.lock().unwrap().take()
            } else {
                None
            };
            async move {
                let body = match (watch, rx) {
                    (false, _) => Body::from(
                        r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#,
                    ),
                    (true, Some(rx)) => Body::new(StreamBody::new(
                        rx.map(|b| Ok::<_, Infallible>(Frame::data(b))),
                    )),
                    (true, None) => Body::new(StreamBody::new(futures::stream::pending::<
                        Result<Frame<Bytes>, Infallible>,
                    >())),
                };
                Ok::<_, BoxError>(Response::new(body))
            }
        });
        let layer = MultiplexLayer::new("n", PoolScopeResources::default()).fanout_buffer(2);
        let svc = ServiceBuilder::new()
            .layer(RequestInfoLayer::new())
            .layer(layer.clone())
            .service(upstream);
        let get = |uri: &str| {
            let svc = svc.clone();
            let req = Request::get(uri).body(Body::empty()).unwrap();
            async move {
                tokio::time::timeout(WAIT, svc.oneshot(req))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        tokio::time::timeout(WAIT, async {
            while get("/api/v1/services").await.status() == StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();

        let slow = get("/api/v1/services?watch=1&resourceVersion=1").await;
        let fast = get("/api/v1/services?watch=1&resourceVersion=1").await;
        let mut fast = fast.into_body();
        let mut fast_events = 0;
        for rv in 2..12 {
            tx.unbounded_send(event(&format!("o{rv}"), rv)).unwrap();
            // The fast client takes each event as it comes.
            while fast_events < rv - 1 {
                let frame = tokio::time::timeout(WAIT, fast.frame())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                let data = frame.into_data().unwrap();
                fast_events += data.iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        assert_eq!(fast_events, 10);
        // The slow one lagged: its stream ends instead of growing without bound.
        let body = tokio::time::timeout(WAIT, slow.into_body().collect())
            .await
            .expect("the lagging watch ends")
            .unwrap()
            .to_bytes();
        let slow_events = body.iter().filter(|b| **b == b'\n').count();
        assert!(slow_events < 10, "{slow_events}");

        // Services leave the set: their feed stops, open watches end, and requests pass
        // through to the upstream.
        let open = get("/api/v1/services?watch=1").await;
        layer.set_resources(
            PoolScopeResources::parse("discovery.k8s.io/v1/endpointslices").unwrap(),
        );
        tokio::time::timeout(WAIT, open.into_body().collect())
            .await
            .expect("the watch ends")
            .unwrap();
        assert_eq!(layer.metrics().feeds.get(), 0);
        let resp = get("/api/v1/services").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(layer.metrics().feeds.get(), 0, "not multiplexed any more");
        layer.shutdown();
    }
}
