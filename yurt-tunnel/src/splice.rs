//! Moving bytes between the two halves of a tunneled stream, and owning the tasks that do it.
//!
//! [`splice`] copies both directions with bounded buffers, propagates half-close (EOF on one side
//! shuts down the write side of the other), counts bytes and ends the stream when neither side
//! moved a byte for the idle timeout. [`Tasks`] is a set of spawned tasks owned by a session or
//! a listener: dropping it aborts them all, so nothing outlives its owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Per-direction copy buffer.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// How a spliced stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    /// Bytes copied from `a` to `b`.
    pub a_to_b: u64,
    /// Bytes copied from `b` to `a`.
    pub b_to_a: u64,
    /// True if the idle timeout ended it.
    pub idle_timeout: bool,
}

/// Called with `(a_to_b, n)` each time `n` bytes were copied, for live byte metrics.
pub type OnBytes<'a> = &'a (dyn Fn(bool, u64) + Sync);

async fn one_way<R, W>(
    mut r: R,
    mut w: W,
    count: &AtomicU64,
    last: &AtomicU64,
    start: Instant,
    (a_to_b, on_bytes): (bool, OnBytes<'_>),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        on_bytes(a_to_b, n as u64);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Copies `a <-> b` until both directions end, one fails, or nothing moves for `idle`;
/// `on_bytes` sees every copied chunk.
pub async fn splice<A, B>(
    a: A,
    b: B,
    idle: Duration,
    on_bytes: OnBytes<'_>,
) -> (Spliced, std::io::Result<()>)
where
    A: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let copy = async {
        // The first error ends both directions (a dead tunnel must not wait for an idle peer).
        tokio::try_join!(
            one_way(ar, bw, &up, &last, start, (true, on_bytes)),
            one_way(br, aw, &down, &last, start, (false, on_bytes))
        )
        .map(|_| ())
    };
    let watchdog = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let (result, idle_timeout) = tokio::select! {
        r = copy => (r, false),
        () = watchdog => (Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "stream idle timeout")), true),
    };
    (
        Spliced {
            a_to_b: up.load(Ordering::Relaxed),
            b_to_a: down.load(Ordering::Relaxed),
            idle_timeout,
        },
        result,
    )
}

type Set = std::sync::Mutex<JoinSet<()>>;

/// Spawned tasks owned by one component; dropping the set aborts them.
#[derive(Debug, Default)]
pub struct Tasks {
    set: Arc<Set>,
}

/// A weak handle that spawns into a [`Tasks`] set without keeping it alive (so a task may hold
/// one without creating an ownership cycle). Spawning after the owner dropped does nothing.
#[derive(Debug, Clone)]
pub struct Spawner {
    set: std::sync::Weak<Set>,
}

fn spawn_into<F>(set: &Set, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
    while set.try_join_next().is_some() {}
    set.spawn(fut);
}

impl Spawner {
    /// Spawns `fut` into the owner's set, if the owner is still alive.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(set) = self.set.upgrade() {
            spawn_into(&set, fut);
        }
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` into the set, reaping finished tasks first.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        spawn_into(&self.set, fut);
    }

    /// A weak spawner for children.
    pub fn spawner(&self) -> Spawner {
        Spawner {
            set: Arc::downgrade(&self.set),
        }
    }

    /// Tasks still tracked (finished ones are reaped lazily).
    pub fn len(&self) -> usize {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.len()
    }

    /// True when no task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Aborts every task now.
    pub fn abort_all(&self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(a, b, Duration::from_secs(5), &|_, _| {}));
        a_peer.write_all(b"hello").await.unwrap();
        a_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        b_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        b_peer.write_all(b"world!").await.unwrap();
        b_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        a_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"world!");
        let (s, r) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        r.unwrap();
        assert_eq!((s.a_to_b, s.b_to_a, s.idle_timeout), (5, 6, false));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_end() {
        let (a, _a_peer) = tokio::io::duplex(1024);
        let (b, _b_peer) = tokio::io::duplex(1024);
        let (s, r) = splice(a, b, Duration::from_secs(30), &|_, _| {}).await;
        assert!(s.idle_timeout);
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn dropping_tasks_aborts() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        assert_eq!(tasks.len(), 1);
        drop(tasks);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .unwrap()
                .is_err()
        );
    }
}
