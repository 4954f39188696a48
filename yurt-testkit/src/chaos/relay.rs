//! One relayed connection of a [`ChaosLink`](super::ChaosLink).
//!
//! A relay task owns both sockets. Each direction is a reader and a writer joined by a small
//! bounded queue: the reader stamps every chunk with its due time (now + latency), the writer
//! waits for that time, for the token bucket and for the link to be flowing, then delivers and
//! counts the bytes. The whole connection races a cut signal; on a cut or an error both sockets
//! are closed with RST, while an orderly end in both directions closes them with FIN.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Direction, Grant, LinkState, Mode, OpenGuard, Shared, reset};

/// How long a relay tries to reach the target before giving up (and resetting the client).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest chunk read at once.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks a direction reads ahead of its writer; beyond this, TCP flow control takes over.
const QUEUE_CHUNKS: usize = 16;

/// Data read in one direction, or its end (`None`), due for delivery at `due`.
struct Chunk {
    data: Option<Bytes>,
    due: Instant,
}

/// How a relayed connection ended.
enum Outcome {
    /// Both directions ended with EOF, and both were shut down.
    Closed,
    /// A socket failed.
    Failed(io::Error),
    /// The link was cut.
    Cut,
}

/// Relays `client` to the link's target until either side closes or the link is cut.
/// `epoch` is the link's cut epoch when the client was accepted.
pub(super) async fn run(shared: Arc<Shared>, client: TcpStream, epoch: u64, _open: OpenGuard) {
    let mut state = shared.state.subscribe();

    // A connection accepted while the link is blackholed goes nowhere until it heals, like a
    // SYN that never reaches the target.
    let cut = match state
        .wait_for(|s| s.cut_epoch != epoch || s.mode != Mode::Blackhole)
        .await
    {
        Ok(s) => s.cut_epoch != epoch,
        Err(_) => true,
    };
    if cut {
        reset(client);
        return;
    }

    let target = shared.target;
    let upstream = tokio::select! {
        connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => {
            match connected {
                Ok(Ok(upstream)) => upstream,
                Ok(Err(err)) => {
                    tracing::debug!(%err, %target, "chaos link could not reach its target");
                    reset(client);
                    return;
                }
                Err(_) => {
                    tracing::debug!(%target, "chaos link timed out reaching its target");
                    reset(client);
                    return;
                }
            }
        }
        () = cut_signal(&mut state, epoch) => {
            reset(client);
            return;
        }
    };
    // Relay chunks as they come; Nagle would add delays the test did not ask for.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let (mut client, mut upstream) = (client, upstream);
    let outcome = {
        let (client_rd, client_wr) = client.split();
        let (upstream_rd, upstream_wr) = upstream.split();
        let up = pipe(&shared, &shared.up, client_rd, upstream_wr);
        let down = pipe(&shared, &shared.down, upstream_rd, client_wr);
        tokio::select! {
            result = async { tokio::try_join!(up, down) } => match result {
                Ok(_) => Outcome::Closed,
                Err(err) => Outcome::Failed(err),
            },
            () = cut_signal(&mut state, epoch) => Outcome::Cut,
        }
    };
    match outcome {
        Outcome::Closed => {}
        Outcome::Failed(err) => {
            tracing::debug!(%err, "chaos link relay failed; resetting both sides");
            reset(client);
            reset(upstream);
        }
        Outcome::Cut => {
            reset(client);
            reset(upstream);
        }
    }
}

/// Copies one direction, applying latency, bandwidth and blackholing, until EOF (propagated as
/// a write shutdown) or an error.
async fn pipe(
    shared: &Shared,
    dir: &Direction,
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let reader = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(READ_CHUNK);
            let n = from.read_buf(&mut buf).await?;
            let latency = shared.state.borrow().latency;
            let chunk = Chunk {
                data: (n > 0).then(|| buf.split().freeze()),
                due: Instant::now() + latency,
            };
            let eof = chunk.data.is_none();
            if tx.send(chunk).await.is_err() || eof {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let writer = async move {
        let mut state = shared.state.subscribe();
        while let Some(Chunk { data, due }) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let Some(mut data) = data else {
                flowing(&mut state).await;
                to.shutdown().await?;
                return Ok(());
            };
            while !data.is_empty() {
                let len = throttle(dir, &mut state, data.len()).await;
                flowing(&mut state).await;
                to.write_all(&data.split_to(len)).await?;
                dir.bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

/// Waits until the link forwards traffic (parks while blackholed or cut).
async fn flowing(state: &mut watch::Receiver<LinkState>) {
    if state.wait_for(|s| s.mode == Mode::Normal).await.is_err() {
        // The link is gone; its owner is about to abort this task.
        std::future::pending::<()>().await;
    }
}

/// Waits for the bandwidth limit to allow sending, returning how many of `want` bytes may go.
/// A change of the limit ends the wait early.
async fn throttle(dir: &Direction, state: &mut watch::Receiver<LinkState>, want: usize) -> usize {
    loop {
        let epoch = state.borrow().bandwidth_epoch;
        let changed = |s: &LinkState| s.bandwidth_epoch != epoch;
        match dir.reserve(want) {
            Grant::After { len, wait } => {
                if !wait.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = async { let _ = state.wait_for(changed).await; } => {}
                    }
                }
                return len;
            }
            Grant::Blocked => {
                if state.wait_for(changed).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Completes when the link is cut after the connection was accepted under `epoch`.
async fn cut_signal(state: &mut watch::Receiver<LinkState>, epoch: u64) {
    // An error means the link itself is gone: treat it as a cut.
    let _ = state.wait_for(|s| s.cut_epoch != epoch).await;
}
