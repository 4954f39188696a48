//! Traffic accounting: one record per request (method, path, resolved verb, status, request and
//! response body bytes), and the number of open watches, so tests and benches can measure the
//! upstream traffic a client (the hub, a controller) really causes.
//!
//! Response bytes are counted as the body is sent, so a watch's record grows while it is open
//! and is final once its stream ends ([`RequestRecord::finished`]). Bytes are HTTP body bytes
//! (after TLS decryption, before chunked or h2 framing); headers are not counted.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::Body;

/// One request the test apiserver answered (or is still answering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// URL query (without `?`), possibly empty.
    pub query: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, ...; the lower-cased method for
    /// non-resource paths).
    pub verb: String,
    /// `resource` or `resource/subresource` (empty for non-resource paths).
    pub resource: String,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// HTTP status sent (0 if no response was sent, e.g. the client went away first).
    pub status: u16,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes sent so far.
    pub response_bytes: u64,
    /// Whether this is a watch.
    pub watch: bool,
    /// Whether the response is complete (or abandoned).
    pub finished: bool,
}

/// The live cell behind a [`RequestRecord`].
#[derive(Debug)]
pub(crate) struct RecordCell {
    method: String,
    path: String,
    query: String,
    user_agent: String,
    verb: Mutex<(String, String)>,
    status: AtomicU16,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    watch: AtomicBool,
    finished: AtomicBool,
}

impl RecordCell {
    /// Sets the resolved verb and resource.
    pub(crate) fn set_verb(&self, verb: &str, resource: String) {
        let mut v = self.verb.lock().unwrap_or_else(|e| e.into_inner());
        *v = (verb.to_owned(), resource);
    }

    /// Records the request body size.
    pub(crate) fn set_request_bytes(&self, n: u64) {
        self.request_bytes.store(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RequestRecord {
        let (verb, resource) = self.verb.lock().unwrap_or_else(|e| e.into_inner()).clone();
        RequestRecord {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            verb,
            resource,
            user_agent: self.user_agent.clone(),
            status: self.status.load(Ordering::Relaxed),
            request_bytes: self.request_bytes.load(Ordering::Relaxed),
            response_bytes: self.response_bytes.load(Ordering::Relaxed),
            watch: self.watch.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
        }
    }
}

/// All requests seen since the last reset.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    records: Mutex<Vec<Arc<RecordCell>>>,
    open_watches: Arc<AtomicUsize>,
}

impl Traffic {
    /// Starts a record for a request.
    pub(crate) fn begin(&self, method: &str, uri: &http::Uri, user_agent: &str) -> Arc<RecordCell> {
        let cell = Arc::new(RecordCell {
            method: method.to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            user_agent: user_agent.to_owned(),
            verb: Mutex::new((method.to_ascii_lowercase(), String::new())),
            status: AtomicU16::new(0),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            watch: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cell.clone());
        cell
    }

    /// Wraps a response body so its bytes are counted into `cell`.
    pub(crate) fn count(
        &self,
        cell: Arc<RecordCell>,
        status: u16,
        watch: bool,
        body: Body,
    ) -> CountingBody {
        cell.status.store(status, Ordering::Relaxed);
        cell.watch.store(watch, Ordering::Relaxed);
        if watch {
            self.open_watches.fetch_add(1, Ordering::Relaxed);
        }
        CountingBody {
            inner: body,
            cell,
            open_watches: watch.then(|| self.open_watches.clone()),
            done: false,
        }
    }

    /// A copy of every record.
    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.snapshot())
            .collect()
    }

    /// Forgets every record (open watches keep counting into records no longer listed).
    pub(crate) fn reset(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Watches whose streams are open now.
    pub(crate) fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::Relaxed)
    }
}

/// A response body that counts its bytes and marks its record finished when done or dropped.
pub(crate) struct CountingBody {
    inner: Body,
    cell: Arc<RecordCell>,
    open_watches: Option<Arc<AtomicUsize>>,
    done: bool,
}

impl CountingBody {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.cell.finished.store(true, Ordering::Relaxed);
            if let Some(open) = self.open_watches.take() {
                open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.cell
                        .response_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A list of request records with a few summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficLog {
    /// The records, in arrival order.
    pub records: Vec<RequestRecord>,
}

impl TrafficLog {
    /// Total request body bytes.
    pub fn request_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.request_bytes).sum()
    }

    /// Total response body bytes.
    pub fn response_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.response_bytes).sum()
    }

    /// Records with this verb (`list`, `watch`, `get`, ...).
    pub fn with_verb<'a>(&'a self, verb: &'a str) -> impl Iterator<Item = &'a RequestRecord> + 'a {
        self.records.iter().filter(move |r| r.verb == verb)
    }

    /// Number of records with this verb.
    pub fn count_verb(&self, verb: &str) -> usize {
        self.with_verb(verb).count()
    }

    /// Records whose path starts with `prefix`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a RequestRecord> + 'a {
        self.records
            .iter()
            .filter(move |r| r.path.starts_with(prefix))
    }
}
