//! A feed: the one upstream list+watch of a multiplexed resource, sent through the layers
//! below the multiplexer as `multiplexer-proxy-<node>`, and the [`WatchCache`] it fills.
//!
//! The loop: list (bounded by the list timeout), install it, then watch from the cache's
//! resourceVersion with bookmarks and a jittered `timeoutSeconds`; a watch that ends is
//! re-opened from where it stopped, a 410 Gone (HTTP or ERROR event) re-lists, and any error
//! backs off exponentially before the next attempt. The task runs until it is aborted by its
//! owner (the layer's feed registry).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};
use yurt_core::{Component, RequestInfo, Status};

use super::metrics::{MultiplexMetrics, ResourceLabels};
use super::state::{EventType, Obj, WatchCache, bookmark_object, parse_rv};
use crate::body::{Body, BoxError};
use crate::cache::json_stream::{ListStream, ObjectStream};
use crate::store::Gvr;

/// The inner service a feed sends its requests through.
pub(crate) type Inner = BoxCloneService<Request<Body>, Response<Body>, BoxError>;

/// Largest object or event a feed decodes.
const MAX_OBJECT_BYTES: usize = 16 << 20;

/// Settings of a feed.
#[derive(Debug, Clone)]
pub(crate) struct FeedConfig {
    pub(crate) user_agent: String,
    pub(crate) list_timeout: Duration,
    /// Upstream watches last a random time in `[watch_timeout, 2 * watch_timeout)`.
    pub(crate) watch_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

/// One resource's shared state: the cache and a channel publishing its resourceVersion (so
/// clients asking for a newer one can wait for it).
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) gvr: Gvr,
    pub(crate) labels: ResourceLabels,
    cache: Mutex<WatchCache>,
    version: watch::Sender<u64>,
}

impl Feed {
    pub(crate) fn new(gvr: Gvr, cache: WatchCache) -> Feed {
        let labels = ResourceLabels {
            resource: format!("{}/{}/{}", gvr.group, gvr.version, gvr.resource),
        };
        Feed {
            gvr,
            labels,
            cache: Mutex::new(cache),
            version: watch::Sender::new(0),
        }
    }

    /// The cache, locked (never held across an await).
    pub(crate) fn cache(&self) -> MutexGuard<'_, WatchCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `bound` until the cache is synced at `rv` or later.
    pub(crate) async fn wait_for_rv(&self, rv: u64, bound: Duration) -> bool {
        let mut rx = self.version.subscribe();
        tokio::time::timeout(bound, rx.wait_for(|v| *v >= rv))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn publish(&self, rv: u64) {
        self.version.send_replace(rv);
    }

    /// The collection path (`/api/v1/services`, `/apis/g/v/r`).
    fn path(&self) -> String {
        if self.gvr.group.is_empty() {
            format!("/api/{}/{}", self.gvr.version, self.gvr.resource)
        } else {
            format!(
                "/apis/{}/{}/{}",
                self.gvr.group, self.gvr.version, self.gvr.resource
            )
        }
    }
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("410 Gone: the resourceVersion is too old")]
    Gone,
    #[error("{0}")]
    Other(String),
}

impl From<BoxError> for FeedError {
    fn from(e: BoxError) -> Self {
        FeedError::Other(e.to_string())
    }
}

/// Exponential backoff between `min` and `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    /// Whether the failures have lasted long enough for the backoff to reach its cap: the point
    /// where a retried failure is worth a warning rather than an info line.
    fn at_cap(&self) -> bool {
        self.next >= self.max
    }

    async fn wait(&mut self) {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(d).await;
    }
}

/// A random duration in `[base, 2 * base)`.
pub(crate) fn jitter(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = (r % 1000) as u32;
    base + base * frac / 1000
}

/// Runs `feed` forever (until aborted), fetching through `inner`.
pub(crate) async fn run(
    feed: Arc<Feed>,
    mut inner: Inner,
    config: FeedConfig,
    metrics: MultiplexMetrics,
) {
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    // A failure is expected for a while (the hub's first list races its first health probe; a
    // cut link ends watches): info until the backoff reaches its cap, then a warning.
    let mut synced = false;
    loop {
        metrics.lists.get_or_create(&feed.labels).inc();
        let failure =
            match tokio::time::timeout(config.list_timeout, list(&feed, &mut inner, &config)).await
            {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("timed out".to_owned()),
            };
        if let Some(error) = failure {
            let resource = &feed.labels.resource;
            if backoff.at_cap() {
                tracing::warn!(%resource, %error, "multiplexer list keeps failing; retrying");
            } else if !synced {
                tracing::info!(%resource, %error, "multiplexer: first list not served yet; retrying");
            } else {
                tracing::info!(%resource, %error, "multiplexer list failed; retrying");
            }
            backoff.wait().await;
            continue;
        }
        synced = true;
        backoff.reset();
        loop {
            let timeout = jitter(config.watch_timeout);
            let bound = timeout + Duration::from_secs(30);
            let outcome =
                tokio::time::timeout(bound, watch(&feed, &mut inner, &config, timeout, &metrics))
                    .await;
            match outcome {
                Ok(Ok(events)) if events > 0 => backoff.reset(),
                // Ended at once with nothing (an offline answer, a closed stream): back off.
                Ok(Ok(_)) => backoff.wait().await,
                Ok(Err(FeedError::Gone)) => {
                    tracing::info!(resource = %feed.labels.resource, "multiplexer watch expired; re-listing");
                    break;
                }
                Ok(Err(FeedError::Other(e))) => {
                    if backoff.at_cap() {
                        tracing::warn!(resource = %feed.labels.resource, error = %e, "multiplexer watch keeps failing; retrying");
                    } else {
                        tracing::info!(resource = %feed.labels.resource, error = %e, "multiplexer watch ended; re-watching");
                    }
                    backoff.wait().await;
                }
                Err(_) => {}
            }
        }
    }
}

/// Sends `GET path?query` through `inner` as the multiplexer.
async fn send(
    inner: &mut Inner,
    config: &FeedConfig,
    path: &str,
    query: &str,
) -> Result<Response<Body>, FeedError> {
    let mut req = Request::get(format!("{path}?{query}"))
        .header(header::ACCEPT, HeaderValue::from_static("application/json"))
        .header(header::USER_AGENT, config.user_agent.as_str())
        .body(Body::empty())
        .map_err(|e| FeedError::Other(e.to_string()))?;
    let info = RequestInfo::from_request(&req).map_err(|e| FeedError::Other(e.to_string()))?;
    let component = Component::from_request(&req);
    req.extensions_mut().insert(info);
    req.extensions_mut().insert(component);
    let resp = inner.ready().await?.call(req).await?;
    let status = resp.status();
    if status == http::StatusCode::GONE {
        return Err(FeedError::Gone);
    }
    if !status.is_success() {
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = Status::from_json(&body)
            .map(|s| s.message)
            .unwrap_or_default();
        return Err(FeedError::Other(format!("HTTP {status}: {message}")));
    }
    Ok(resp)
}

/// Lists the resource and installs the list in the cache.
async fn list(feed: &Feed, inner: &mut Inner, config: &FeedConfig) -> Result<(), FeedError> {
    let resp = send(inner, config, &feed.path(), "").await?;
    let mut body = resp.into_body();
    let mut split = ListStream::new(MAX_OBJECT_BYTES);
    let mut values = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            for item in split
                .feed(data)
                .map_err(|e| FeedError::Other(e.to_string()))?
            {
                let v: Value =
                    serde_json::from_slice(&item).map_err(|e| FeedError::Other(e.to_string()))?;
                values.push(v);
            }
        }
    }
    let head = split
        .finish()
        .map_err(|e| FeedError::Other(e.to_string()))?;
    let list_kind: String = serde_json::from_slice(&head.kind).unwrap_or_default();
    let api_version: String = serde_json::from_slice(&head.api_version).unwrap_or_default();
    let meta: Value = serde_json::from_slice(&head.metadata).unwrap_or_default();
    let rv = parse_rv(meta.get("resourceVersion").and_then(Value::as_str))
        .ok_or_else(|| FeedError::Other("list without a numeric resourceVersion".into()))?;
    let kind = list_kind
        .strip_suffix("List")
        .unwrap_or(&list_kind)
        .to_owned();
    let items: Vec<Obj> = values
        .into_iter()
        .filter_map(|v| Obj::from_value(v, &kind, &api_version))
        .collect();
    tracing::debug!(resource = %feed.labels.resource, items = items.len(), rv, "multiplexer listed");
    if feed.cache().replace(items, rv, &kind, &api_version) {
        feed.publish(rv);
    } else {
        tracing::info!(resource = %feed.labels.resource, rv, "multiplexer ignored a list older than its cache");
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    object: &'a RawValue,
}

/// Watches from the cache's resourceVersion, applying events until the stream ends; returns
/// how many events it applied.
async fn watch(
    feed: &Feed,
    inner: &mut Inner,
    config: &FeedConfig,
    timeout: Duration,
    metrics: &MultiplexMetrics,
) -> Result<u64, FeedError> {
    let rv = feed.cache().rv();
    let query = format!(
        "watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={}",
        timeout.as_secs().max(1)
    );
    let resp = send(inner, config, &feed.path(), &query).await?;
    let mut body = resp.into_body();
    let mut split = ObjectStream::new(MAX_OBJECT_BYTES);
    let mut applied = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for raw in split
            .feed(data)
            .map_err(|e| FeedError::Other(e.to_string()))?
        {
            apply(feed, &raw, metrics)?;
            applied += 1;
        }
    }
    Ok(applied)
}

/// Applies one encoded watch event.
fn apply(feed: &Feed, raw: &Bytes, metrics: &MultiplexMetrics) -> Result<(), FeedError> {
    let ev: RawEvent<'_> =
        serde_json::from_slice(raw).map_err(|e| FeedError::Other(e.to_string()))?;
    if ev.kind == "ERROR" {
        let status = Status::from_json(ev.object.get().as_bytes());
        return Err(match status {
            Some(s) if s.code == 410 => FeedError::Gone,
            Some(s) => FeedError::Other(format!("watch ERROR event: {s}")),
            None => FeedError::Other("watch ERROR event".into()),
        });
    }
    let Some(kind) = EventType::parse(&ev.kind) else {
        return Err(FeedError::Other(format!(
            "unknown watch event {:?}",
            ev.kind
        )));
    };
    let value: Value =
        serde_json::from_str(ev.object.get()).map_err(|e| FeedError::Other(e.to_string()))?;
    let mut cache = feed.cache();
    let obj = if kind == EventType::Bookmark {
        let rv = parse_rv(
            value
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        )
        .ok_or_else(|| FeedError::Other("bookmark without resourceVersion".into()))?;
        let (k, v) = cache.kind();
        let raw = bookmark_object(k, v, rv, false);
        Obj::with_raw(
            serde_json::json!({"metadata": {"name": "", "resourceVersion": rv.to_string()}}),
            raw,
        )
    } else {
        Obj::with_raw(value, Bytes::copy_from_slice(ev.object.get().as_bytes()))
    };
    let Some(obj) = obj else {
        return Err(FeedError::Other("watch event object without a name".into()));
    };
    metrics.events_received.get_or_create(&feed.labels).inc();
    if cache.apply(kind, obj) {
        let rv = cache.rv();
        drop(cache);
        feed.publish(rv);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;
    use crate::multiplex::state::{Selection, Start};

    fn svc(name: &str, rv: u64) -> String {
        format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"default","resourceVersion":"{rv}"}}}}"#
        )
    }

    fn list(rv: u64, items: &[String]) -> String {
        format!(
            r#"{{"kind":"ServiceList","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"}},"items":[{}]}}"#,
            items.join(",")
        )
    }

    /// The feed against a scripted upstream (a `service_fn`, no sockets): an error, a list, a
    /// watch ending in a 410 ERROR event, a re-list, and a watch that stays open.
    #[tokio::test(start_paused = true)]
    async fn backs_off_lists_watches_and_relists_after_410() {
        let calls = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let seen = calls.clone();
        let upstream = tower::service_fn(move |req: Request<Body>| {
            let mut calls = seen.lock().unwrap();
            let ua = req.headers()[header::USER_AGENT]
                .to_str()
                .unwrap()
                .to_owned();
            calls.push((req.uri().query().unwrap_or("").to_owned(), ua));
            let n = calls.len();
            async move {
                let resp = match n {
                    1 => Status::internal("boom").to_response(),
                    2 => Response::new(Body::from(list(10, &[svc("a", 5), svc("b", 8)]))),
                    3 => Response::new(Body::from(format!(
                        "{{\"type\":\"ADDED\",\"object\":{}}}\n{{\"type\":\"ERROR\",\"object\":{}}}\n",
                        svc("c", 11),
                        String::from_utf8(Status::expired("too old").to_json()).unwrap()
                    ))),
                    4 => Response::new(Body::from(list(20, &[svc("a", 5), svc("c", 15)]))),
                    _ => Response::new(Body::new(StreamBody::new(futures::stream::pending::<
                        Result<Frame<Bytes>, Infallible>,
                    >()))),
                };
                Ok::<_, BoxError>(resp)
            }
        });
        let feed = Arc::new(Feed::new(
            Gvr::new("", "v1", "services"),
            WatchCache::new(100, 100),
        ));
        let config = FeedConfig {
            user_agent: "multiplexer-proxy-n".into(),
            list_timeout: Duration::from_secs(5),
            watch_timeout: Duration::from_secs(300),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        };
        let metrics = MultiplexMetrics::default();
        let task = tokio::spawn(run(
            feed.clone(),
            BoxCloneService::new(upstream),
            config,
            metrics.clone(),
        ));
        assert!(feed.wait_for_rv(20, Duration::from_secs(60)).await);
        tokio::time::timeout(Duration::from_secs(60), async {
            while calls.lock().unwrap().len() < 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();

        let calls = calls.lock().unwrap().clone();
        let queries: Vec<&str> = calls.iter().map(|(q, _)| q.as_str()).collect();
        assert_eq!(&queries[..2], ["", ""], "the failed list is retried");
        assert!(
            queries[2].starts_with(
                "watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds="
            )
        );
        assert_eq!(queries[3], "", "a 410 re-lists");
        assert!(queries[4].starts_with("watch=true&resourceVersion=20&"));
        assert!(calls.iter().all(|(_, ua)| ua == "multiplexer-proxy-n"));

        // The re-list became the events between the two states.
        let cache = feed.cache();
        let Some(Ok((Start::History(h), _))) = cache.subscribe(&Selection::default(), Some(10))
        else {
            panic!("history from 10")
        };
        let got: Vec<(String, u64)> = h
            .iter()
            .map(|e| (format!("{:?} {}", e.kind, e.obj.name), e.rv))
            .collect();
        assert_eq!(
            got,
            [
                ("Added c".to_owned(), 11),
                ("Modified c".to_owned(), 15),
                ("Deleted b".to_owned(), 20)
            ]
        );
        drop(cache);
        let labels = feed.labels.clone();
        assert_eq!(metrics.lists.get_or_create(&labels).get(), 3);
        task.abort();
    }
}
