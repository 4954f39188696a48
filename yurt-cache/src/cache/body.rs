//! The response body wrapper that hands a copy of each data frame to the tee task.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::body::{Body, BoxError};

/// What the body tells the tee beyond the chunks: whether the stream ended normally, or the
/// channel overflowed. Read by the tee after its channel closed (the close orders the reads
/// after the writes).
#[derive(Debug, Default)]
pub(crate) struct TeeSignal {
    /// The upstream body ended normally (every chunk was sent).
    pub(crate) complete: AtomicBool,
    /// A chunk found the channel full; the tee was cut off.
    pub(crate) overflow: AtomicBool,
}

/// A [`Body`] passing every frame to the client unchanged and a copy of each data chunk to the
/// tee with `try_send`: it never waits for the tee. When the channel is full the tee is cut off
/// (the sender is dropped and `overflow` set); when the tee is gone, sending simply stops.
pub(crate) struct TeeBody {
    inner: Body,
    tx: Option<mpsc::Sender<Bytes>>,
    signal: Arc<TeeSignal>,
}

impl TeeBody {
    pub(crate) fn new(inner: Body, tx: mpsc::Sender<Bytes>, signal: Arc<TeeSignal>) -> Self {
        TeeBody {
            inner,
            tx: Some(tx),
            signal,
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tx)) = (frame.data_ref(), &this.tx) {
                    match tx.try_send(data.clone()) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            this.signal.overflow.store(true, Ordering::Release);
                            this.tx = None;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => this.tx = None,
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.tx = None,
            Poll::Ready(None) => {
                if this.tx.is_some() {
                    this.signal.complete.store(true, Ordering::Release);
                }
                this.tx = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        // hyper may stop polling once this says so: the stream is complete then.
        if end && self.tx.is_some() {
            self.signal.complete.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
