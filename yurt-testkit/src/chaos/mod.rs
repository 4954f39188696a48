//! A fault-injecting TCP link between the edge and the cloud.
//!
//! [`ChaosLink`] listens on a loopback port and relays every connection to a target address,
//! the way the WAN between an edge node and its apiserver would carry it. Tests point a hub,
//! tunnel agent or client at [`ChaosLink::local_addr`] and then break the link on purpose:
//! [`cut`](ChaosLink::cut) resets every connection and refuses new ones (a link going down),
//! [`blackhole`](ChaosLink::blackhole) silently stops all traffic while sockets stay open (a
//! NAT or firewall dropping packets), [`latency`](ChaosLink::latency) and
//! [`bandwidth`](ChaosLink::bandwidth) shape what flows, and [`heal`](ChaosLink::heal) restores
//! it. Byte counters tell how much actually crossed the link.
//!
//! The link's state lives in a `tokio::sync::watch` channel, so relays react at once: a
//! blackholed relay parks until the mode changes, a cut relay closes its sockets with RST. The
//! link owns its accept loop, which owns every relay task; dropping the link stops them all.

mod bucket;
mod relay;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use self::bucket::{Bucket, Grant};

/// How long [`ChaosLink::shutdown`] waits for its tasks before aborting them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the link currently does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Blackhole,
    Cut,
}

/// Everything relays watch.
#[derive(Debug, Clone, Copy)]
struct LinkState {
    mode: Mode,
    /// Bumped by every `cut()`: a connection accepted under an older epoch is reset, even if the
    /// link was healed before its relay noticed the cut.
    cut_epoch: u64,
    latency: Duration,
    /// Bumped by every `bandwidth()`, so throttled relays stop waiting on a stale reservation.
    bandwidth_epoch: u64,
}

/// Per-direction accounting and rate limit.
#[derive(Debug)]
struct Direction {
    bytes: AtomicU64,
    bucket: Mutex<Bucket>,
}

impl Direction {
    fn new() -> Self {
        Direction {
            bytes: AtomicU64::new(0),
            bucket: Mutex::new(Bucket::new()),
        }
    }

    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        // The bucket is plain arithmetic; a panic while holding it cannot leave it inconsistent.
        self.bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reserve(&self, want: usize) -> Grant {
        self.bucket().reserve(want, tokio::time::Instant::now())
    }
}

/// State shared by the handle, the accept loop and the relays.
#[derive(Debug)]
struct Shared {
    state: watch::Sender<LinkState>,
    target: SocketAddr,
    /// Client -> target.
    up: Direction,
    /// Target -> client.
    down: Direction,
    open: AtomicUsize,
}

/// Counts a connection as open from accept until its relay ends.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(shared.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP relay on 127.0.0.1 that simulates the cloud-edge link, with fault controls.
///
/// Dropping it aborts the accept loop and every relay, closing all relayed connections;
/// [`shutdown`](Self::shutdown) does the same and waits for it.
pub struct ChaosLink {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for ChaosLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = *self.shared.state.borrow();
        f.debug_struct("ChaosLink")
            .field("local_addr", &self.local_addr)
            .field("target", &self.shared.target)
            .field("mode", &state.mode)
            .field("latency", &state.latency)
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl ChaosLink {
    /// Starts relaying from a fresh port on 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<ChaosLink> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let (state, _) = watch::channel(LinkState {
            mode: Mode::Normal,
            cut_epoch: 0,
            latency: Duration::ZERO,
            bandwidth_epoch: 0,
        });
        let shared = Arc::new(Shared {
            state,
            target,
            up: Direction::new(),
            down: Direction::new(),
            open: AtomicUsize::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(ChaosLink {
            shared,
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The address clients connect to instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Takes the link down: resets (RST) every open connection and resets new ones right after
    /// accepting them, until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.shared.state.send_modify(|state| {
            state.mode = Mode::Cut;
            state.cut_epoch += 1;
        });
    }

    /// Silently drops traffic: nothing is forwarded in either direction, but sockets stay open
    /// and new connections are accepted (and not connected onwards), until [`heal`](Self::heal).
    pub fn blackhole(&self) {
        self.shared
            .state
            .send_modify(|state| state.mode = Mode::Blackhole);
    }

    /// Restores normal forwarding; blackholed connections deliver what was buffered meanwhile.
    pub fn heal(&self) {
        self.shared
            .state
            .send_modify(|state| state.mode = Mode::Normal);
    }

    /// Delays every chunk by `d` in each direction (one-way), keeping order. Applies to data
    /// read from now on; `Duration::ZERO` removes the delay.
    pub fn latency(&self, d: Duration) {
        self.shared.state.send_modify(|state| state.latency = d);
    }

    /// Limits each direction of the whole link to `bytes_per_sec` (a token bucket shared by all
    /// its connections); `None` removes the limit, `Some(0)` stops traffic.
    pub fn bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.shared.up.bucket().set_rate(bytes_per_sec);
        self.shared.down.bucket().set_rate(bytes_per_sec);
        self.shared
            .state
            .send_modify(|state| state.bandwidth_epoch += 1);
    }

    /// Bytes delivered from clients to the target since start or the last reset.
    pub fn bytes_up(&self) -> u64 {
        self.shared.up.bytes.load(Ordering::Relaxed)
    }

    /// Bytes delivered from the target to clients since start or the last reset.
    pub fn bytes_down(&self) -> u64 {
        self.shared.down.bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted and not yet closed.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Sets both byte counters to zero.
    pub fn reset_counters(&self) {
        self.shared.up.bytes.store(0, Ordering::Relaxed);
        self.shared.down.bytes.store(0, Ordering::Relaxed);
    }

    /// Stops accepting, closes every relayed connection and waits for all tasks to end.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut task)
                .await
                .is_err()
        {
            tracing::warn!("chaos link did not shut down in time; aborting it");
            task.abort();
        }
    }
}

impl Drop for ChaosLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the accept loop drops its JoinSet, which aborts every relay.
            task.abort();
        }
    }
}

/// Accepts connections and owns their relays until told to stop.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            // (The async block keeps the non-Send watch guard out of select's output.)
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
            Some(done) = relays.join_next(), if !relays.is_empty() => {
                if let Err(err) = done
                    && err.is_panic()
                {
                    tracing::error!(%err, "chaos link relay panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let state = *shared.state.borrow();
                    if state.mode == Mode::Cut {
                        tracing::debug!(%peer, "chaos link is cut; resetting new connection");
                        reset(stream);
                        continue;
                    }
                    let guard = OpenGuard::new(&shared);
                    relays.spawn(relay::run(shared.clone(), stream, state.cut_epoch, guard));
                }
                Err(err) => {
                    tracing::warn!(%err, "chaos link accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    relays.shutdown().await;
}

/// Closes `stream` abortively: SO_LINGER 0, so the kernel sends RST instead of FIN.
fn reset(stream: TcpStream) {
    // A zero linger never blocks the thread on drop (unlike a non-zero one).
    let linger = stream.set_zero_linger();
    if let Err(err) = linger {
        tracing::debug!(%err, "chaos link could not set SO_LINGER 0");
    }
    drop(stream);
}
