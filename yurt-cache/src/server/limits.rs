//! What bounds a listener's connections: the connection cap, the deadline for a client's first
//! bytes, and their counters.
//!
//! Every connection holds a slot of the listener's cap ([`ServerConfig::max_connections`]) for
//! as long as the server serves it. When every slot is taken, a new connection is answered
//! with a `429 TooManyRequests` Status (`Retry-After: 1`, the apiserver's max-in-flight
//! wording, which client-go retries) and closed, so the connections already open keep
//! working and the process cannot be made to hold unbounded file descriptors.
//!
//! A client must send the start of its request (the bytes that tell HTTP/1.1 from the h2
//! preface) within [`ServerConfig::header_read_timeout`]; hyper then bounds the rest of the
//! request head, and the wait for the next request on a kept-alive HTTP/1.1 connection, by
//! the same timeout. A connection that never sends a byte is closed and counted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

#[cfg(doc)]
use super::ServerConfig;

/// The h2 connection preface; a client that starts with anything else speaks HTTP/1.x.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The label of a listener's metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// The listener's name (`proxy`, `management`).
    pub listener: String,
}

/// Connection counters of several listeners, by name; register once, then hand each
/// listener its [`ListenerMetrics`] through [`ServerConfig::metrics`].
#[derive(Clone, Debug, Default)]
pub struct ServerMetrics {
    open: Family<ListenerLabels, Gauge>,
    refused: Family<ListenerLabels, Counter>,
    timed_out: Family<ListenerLabels, Counter>,
}

impl ServerMetrics {
    /// Registers the metrics under the prefix `yurt_cache_server`:
    /// `open_connections`, `refused_connections_total`, `timed_out_connections_total`, each
    /// labelled with `listener`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("yurt_cache_server");
        r.register(
            "open_connections",
            "Connections being served",
            self.open.clone(),
        );
        r.register(
            "refused_connections",
            "Connections refused with 429 because the listener's connection cap was reached",
            self.refused.clone(),
        );
        r.register(
            "timed_out_connections",
            "Connections closed because the client did not send its request (head) in time",
            self.timed_out.clone(),
        );
    }

    /// The counters of the listener called `name`.
    pub fn listener(&self, name: &str) -> ListenerMetrics {
        let labels = ListenerLabels {
            listener: name.to_owned(),
        };
        ListenerMetrics {
            open: self.open.get_or_create(&labels).clone(),
            refused: self.refused.get_or_create(&labels).clone(),
            timed_out: self.timed_out.get_or_create(&labels).clone(),
        }
    }
}

/// Connection counters of one listener (clones share them).
#[derive(Clone, Debug, Default)]
pub struct ListenerMetrics {
    /// Connections being served now.
    pub open: Gauge,
    /// Connections refused because the cap was reached.
    pub refused: Counter,
    /// Connections closed because the client did not send its request (head) in time.
    pub timed_out: Counter,
}

/// A connection's slot: holds the cap's permit and counts the connection as open.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Slot {
    pub(super) fn new(permit: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Reads the first bytes of a connection, until they tell HTTP/1.x from h2 (or the peer
/// closes). The caller bounds the wait.
pub(super) async fn read_preface(stream: &TcpStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::with_capacity(H2_PREFACE.len());
    let mut buf = [0u8; 24];
    while got.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&got) {
        stream.readable().await?;
        match stream.try_read(&mut buf[..H2_PREFACE.len() - got.len()]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The connection with the bytes [`read_preface`] took put back in front, for hyper.
#[derive(Debug)]
pub(super) struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Rewind {
    pub(super) fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Refusals being answered at once, at most; beyond that a refused connection is just closed.
pub(super) const MAX_REFUSING: usize = 64;
/// How long a refused client gets to read the answer before the socket is closed.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// The answer to a connection beyond the cap: the apiserver's max-in-flight Status.
fn refusal() -> Vec<u8> {
    let body =
        yurt_core::Status::too_many_requests("Too many requests, please try again later.", 1)
            .to_json();
    let mut out = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers a connection beyond the cap with a 429 and closes it: write the answer, close the
/// sending side, and let the client read it (until it closes, at most [`REFUSE_LINGER`]).
pub(super) async fn refuse(stream: TcpStream) {
    let answer = refusal();
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        let mut sent = 0;
        while sent < answer.len() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(&answer[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
        // Half-close, then drain what the client sent until it closes, so closing does not
        // reset the connection before the client has read the answer.
        let mut stream = stream;
        if std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx))
            .await
            .is_err()
        {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    })
    .await;
}
