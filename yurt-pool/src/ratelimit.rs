//! Client-side request rate limiting for the manager's API client, as client-go's token bucket
//! (`--rest-config-qps`, `--rest-config-burst`): up to `burst` requests at once, refilled at `qps`
//! per second. Every request counts, watches included. A tower layer for
//! `kube::client::ClientBuilder::with_layer`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    qps: f64,
    last: Instant,
}

impl Bucket {
    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// Layer limiting requests to `qps` per second with bursts of `burst` (see the module docs).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    /// A bucket of `burst` tokens (at least 1) refilled at `qps` (positive) per second.
    pub fn new(qps: f32, burst: u32) -> RateLimitLayer {
        let burst = f64::from(burst.max(1));
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                burst,
                qps: f64::from(qps).max(f64::MIN_POSITIVE),
                last: Instant::now(),
            })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            wait: None,
            reserved: false,
        }
    }
}

/// The rate-limited service (see [`RateLimitLayer`]).
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
    wait: Option<Pin<Box<Sleep>>>,
    reserved: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.reserved {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let taken = self
                .bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(Instant::now());
            match taken {
                Ok(()) => self.reserved = true,
                Err(delay) => self.wait = Some(Box::pin(tokio::time::sleep(delay))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.reserved = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[derive(Clone)]
    struct Echo;
    impl Service<u32> for Echo {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, r: u32) -> Self::Future {
            std::future::ready(Ok(r))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_are_paced_at_qps() {
        let layer = RateLimitLayer::new(10.0, 3);
        let start = Instant::now();
        let mut times = Vec::new();
        for i in 0..5 {
            let svc = layer.layer(Echo);
            assert_eq!(svc.oneshot(i).await.unwrap(), i);
            times.push(start.elapsed());
        }
        // Three at once (the burst), then one every 100 ms (10 qps), on tokio's paused clock.
        let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 100, 200]);
    }
}
