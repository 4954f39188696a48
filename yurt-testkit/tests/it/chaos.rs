//! ChaosLink over 127.0.0.1 against a small echo server: forwarding and exact byte counts, cut,
//! blackhole, heal, latency, bandwidth, and closing on drop and shutdown.
//!
//! Timeouts here are failure guards, except where a test asserts that nothing arrives while the
//! link is blackholed (a read that must not complete within a short window).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use yurt_testkit::chaos::ChaosLink;

/// Failure guard for waits that must complete.
const GUARD: Duration = Duration::from_secs(10);
/// How long a read must stay silent while the link is blackholed.
const SILENCE: Duration = Duration::from_millis(300);

/// How an echo connection ended, as the echo server saw it.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Eof,
    Error,
}

/// An echo server on 127.0.0.1 that reports how each connection ended. Dropping it aborts its
/// accept loop and, with it, every connection task.
struct Echo {
    addr: SocketAddr,
    ended: mpsc::UnboundedReceiver<Ended>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, ended) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    accepted = listener.accept() => {
                        let Ok((mut stream, _)) = accepted else { continue };
                        let tx = tx.clone();
                        conns.spawn(async move {
                            let mut buf = vec![0u8; 8192];
                            let ended = loop {
                                match stream.read(&mut buf).await {
                                    Ok(0) => break Ended::Eof,
                                    Ok(n) => {
                                        if stream.write_all(&buf[..n]).await.is_err() {
                                            break Ended::Error;
                                        }
                                    }
                                    Err(_) => break Ended::Error,
                                }
                            };
                            let _ = tx.send(ended);
                        });
                    }
                }
            }
        });
        Echo { addr, ended, task }
    }

    /// The next connection end, within the guard.
    async fn next_end(&mut self) -> Ended {
        timeout(GUARD, self.ended.recv())
            .await
            .expect("echo server saw no connection end")
            .expect("echo server stopped")
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `len` bytes that differ at every position modulo 251, so reordering or loss shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

async fn connect(link: &ChaosLink) -> TcpStream {
    timeout(GUARD, TcpStream::connect(link.local_addr()))
        .await
        .expect("connect hung")
        .expect("connect failed")
}

/// Writes `data` and reads the same number of bytes back, concurrently.
async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = stream.split();
    let mut back = vec![0u8; data.len()];
    let (written, read) = timeout(GUARD, async {
        tokio::join!(wr.write_all(data), rd.read_exact(&mut back))
    })
    .await
    .expect("round trip hung");
    written.unwrap();
    read.unwrap();
    back
}

/// Polls `cond` until it holds; panics after the guard.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the connection is dead: a read ends with EOF or an error (within the guard).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        timeout(GUARD, stream.read(&mut buf))
            .await
            .expect("read hung"),
        Ok(0) | Err(_)
    )
}

// Also on the multi-threaded runtime, as hubs and tunnels run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_bytes_and_counts_them_exactly() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    assert_eq!((link.bytes_up(), link.bytes_down()), (0, 0));

    let mut client = connect(&link).await;
    let data = pattern(100_000, 1);
    assert_eq!(round_trip(&mut client, &data).await, data);
    eventually("counters reach 100000", || {
        link.bytes_up() == 100_000 && link.bytes_down() == 100_000
    })
    .await;
    assert_eq!(link.open_connections(), 1);

    link.reset_counters();
    assert_eq!((link.bytes_up(), link.bytes_down()), (0, 0));
    let data = pattern(1234, 2);
    assert_eq!(round_trip(&mut client, &data).await, data);
    eventually("counters reach 1234", || {
        link.bytes_up() == 1234 && link.bytes_down() == 1234
    })
    .await;

    drop(client);
    eventually("connection closed", || link.open_connections() == 0).await;
    assert_eq!((link.bytes_up(), link.bytes_down()), (1234, 1234));
}

#[tokio::test]
async fn half_close_propagates_as_eof() {
    let mut echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    let data = pattern(5000, 3);
    client.write_all(&data).await.unwrap();
    client.shutdown().await.unwrap();
    // The echo server sees our FIN, echoes everything and closes; we read all of it, then EOF.
    let mut back = Vec::new();
    timeout(GUARD, client.read_to_end(&mut back))
        .await
        .expect("read hung")
        .unwrap();
    assert_eq!(back, data);
    assert_eq!(echo.next_end().await, Ended::Eof);
    eventually("connection closed", || link.open_connections() == 0).await;
}

// Also on the multi-threaded runtime, as hubs and tunnels run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_resets_open_connections_and_refuses_new_ones_until_heal() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"before").await, b"before");

    // A read in flight when the link is cut ends (error or EOF) instead of hanging.
    let mut buf = [0u8; 16];
    let (read, ()) = tokio::join!(timeout(GUARD, client.read(&mut buf)), async { link.cut() });
    match read.expect("in-flight read did not end after cut()") {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes after cut()"),
    }
    eventually("cut connection closed", || link.open_connections() == 0).await;

    // New connections fail, or are accepted by the kernel and then reset: nothing is echoed.
    for _ in 0..3 {
        let connected = timeout(GUARD, TcpStream::connect(link.local_addr()))
            .await
            .expect("connect hung");
        if let Ok(mut refused) = connected {
            let _ = refused.write_all(b"hello?").await;
            assert!(is_closed(&mut refused).await);
        }
    }
    assert_eq!(link.bytes_up(), 6);

    link.heal();
    let mut again = connect(&link).await;
    assert_eq!(round_trip(&mut again, b"after").await, b"after");
}

#[tokio::test]
async fn cut_then_immediate_heal_still_resets_existing_connections() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"x").await, b"x");
    link.cut();
    link.heal();
    assert!(is_closed(&mut client).await);
    let mut fresh = connect(&link).await;
    assert_eq!(round_trip(&mut fresh, b"y").await, b"y");
}

// Also on the multi-threaded runtime, as hubs and tunnels run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_delivers_nothing_until_heal_then_flushes() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"warm-up").await, b"warm-up");
    eventually("warm-up counted", || link.bytes_down() == 7).await;
    link.reset_counters();

    link.blackhole();
    let data = pattern(20_000, 4);
    client.write_all(&data).await.unwrap();
    // A connection opened during the blackhole is accepted but goes nowhere.
    let mut late = connect(&link).await;
    late.write_all(b"late").await.unwrap();

    let mut buf = [0u8; 1];
    assert!(
        timeout(SILENCE, client.read(&mut buf)).await.is_err(),
        "bytes arrived through a blackhole"
    );
    assert!(
        timeout(SILENCE, late.read(&mut buf)).await.is_err(),
        "bytes arrived through a blackhole"
    );
    assert_eq!((link.bytes_up(), link.bytes_down()), (0, 0));
    eventually("late connection accepted", || link.open_connections() == 2).await;

    link.heal();
    let mut back = vec![0u8; data.len()];
    timeout(GUARD, client.read_exact(&mut back))
        .await
        .expect("buffered bytes not delivered after heal")
        .unwrap();
    assert_eq!(back, data);
    let mut back = [0u8; 4];
    timeout(GUARD, late.read_exact(&mut back))
        .await
        .expect("late connection not relayed after heal")
        .unwrap();
    assert_eq!(&back, b"late");
    eventually("counted after heal", || {
        link.bytes_up() == 20_004 && link.bytes_down() == 20_004
    })
    .await;
}

#[tokio::test]
async fn cut_during_blackhole_resets_parked_connections() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"a").await, b"a");
    link.blackhole();
    client.write_all(b"parked").await.unwrap();
    link.cut();
    assert!(is_closed(&mut client).await);
    eventually("parked connection closed", || link.open_connections() == 0).await;
}

#[tokio::test]
async fn latency_keeps_data_intact_and_ordered() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    link.latency(Duration::from_millis(200));
    let mut client = connect(&link).await;
    let (mut rd, mut wr) = client.split();
    let messages: Vec<Vec<u8>> = (0..50).map(|i| pattern(1000 + i, i as u8)).collect();
    let expected: Vec<u8> = messages.concat();
    let mut back = vec![0u8; expected.len()];
    let writes = async {
        for message in &messages {
            wr.write_all(message).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (written, read) = timeout(GUARD, async {
        tokio::join!(writes, rd.read_exact(&mut back))
    })
    .await
    .expect("delayed data never arrived");
    written.unwrap();
    read.unwrap();
    assert_eq!(back, expected);

    link.latency(Duration::ZERO);
    assert_eq!(round_trip(&mut client, b"fast again").await, b"fast again");
}

// Also on the multi-threaded runtime, as hubs and tunnels run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_delivers_everything_intact() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    link.bandwidth(Some(32 * 1024));
    let mut client = connect(&link).await;
    let data = pattern(64 * 1024, 5);
    let started = std::time::Instant::now();
    assert_eq!(round_trip(&mut client, &data).await, data);
    eprintln!("64 KiB echoed at 32 KiB/s in {:?}", started.elapsed());
    eventually("throttled bytes counted", || {
        link.bytes_up() == 64 * 1024 && link.bytes_down() == 64 * 1024
    })
    .await;

    link.bandwidth(None);
    let data = pattern(256 * 1024, 6);
    assert_eq!(round_trip(&mut client, &data).await, data);
}

#[tokio::test]
async fn zero_bandwidth_stops_traffic_until_lifted() {
    let echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    link.bandwidth(Some(0));
    client.write_all(b"stuck").await.unwrap();
    let mut buf = [0u8; 5];
    assert!(
        timeout(SILENCE, client.read(&mut buf)).await.is_err(),
        "bytes flowed at zero bandwidth"
    );
    link.bandwidth(None);
    timeout(GUARD, client.read_exact(&mut buf))
        .await
        .expect("bytes not delivered after lifting the limit")
        .unwrap();
    assert_eq!(&buf, b"stuck");
}

#[tokio::test]
async fn unreachable_target_resets_the_client() {
    // Bind and drop a listener to get a loopback port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let link = ChaosLink::start(dead).await.unwrap();
    let mut client = connect(&link).await;
    assert!(is_closed(&mut client).await);
    eventually("connection closed", || link.open_connections() == 0).await;
}

#[tokio::test]
async fn dropping_the_link_closes_relayed_connections() {
    let mut echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
    drop(link);
    assert_eq!(echo.next_end().await, Ended::Eof);
    assert!(is_closed(&mut client).await);
}

#[tokio::test]
async fn shutdown_closes_everything_and_stops_accepting() {
    let mut echo = Echo::start().await;
    let link = ChaosLink::start(echo.addr).await.unwrap();
    let addr = link.local_addr();
    let mut client = connect(&link).await;
    assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
    timeout(GUARD, link.shutdown())
        .await
        .expect("shutdown hung");
    assert_eq!(echo.next_end().await, Ended::Eof);
    assert!(is_closed(&mut client).await);
    // The listener is gone: connecting is refused.
    assert!(TcpStream::connect(addr).await.is_err());
}
