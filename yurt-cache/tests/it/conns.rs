//! The hub's listeners bound their connections: a client that never sends its request is
//! closed after the header read timeout (on both ports, counted), and beyond the connection
//! cap a new connection is answered 429 and closed while the open ones keep working.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yurt_cache::health::HealthConfig;
use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
use yurt_cache::server::ServerConfig;
use yurt_testkit::TestApiServer;

use crate::net::{WAIT, hub_client};

const NODE: &str = "edge-1";

async fn hub(api: &TestApiServer, dir: &std::path::Path, server: ServerConfig) -> EdgeHub {
    let upstream = hub_client(api, &format!("system:node:{NODE}"), &["system:nodes"]);
    let url: http::Uri = api.url().parse().unwrap();
    let mut config = EdgeHubConfig::new(NODE, vec![url], dir.join("cache.redb"));
    config.proxy_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.health = HealthConfig::lease(NODE)
        .interval(Duration::from_millis(250))
        .timeout(Duration::from_millis(400))
        .thresholds(1, 1);
    config.kubelet_grace = None;
    config.server = server;
    let hub = EdgeHub::start(config, upstream).await.unwrap();
    let mut health = hub.health();
    tokio::time::timeout(WAIT, health.wait_for(|h| h.any_healthy()))
        .await
        .expect("the apiserver healthy within the wait bound")
        .unwrap();
    hub
}

/// Reads until the server closes the connection (EOF or reset), bounded by [`WAIT`]; returns
/// what was read. A connection the server keeps open fails the test.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open (read so far: {:?})",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// One request on a fresh connection (`Connection: close`), answered as raw text.
async fn request(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    send_request(&mut s, path).await;
    until_closed(&mut s).await
}

async fn send_request(s: &mut TcpStream, path: &str) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kubectl/v1.36.0\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
}

/// The value of the sample `name{listener="<listener>"}` on the management port's `/metrics`.
async fn metric(hub: &EdgeHub, name: &str, listener: &str) -> f64 {
    let text = request(hub.admin_addr(), "/metrics").await;
    let prefix = format!("{name}{{listener=\"{listener}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let ok = tokio::time::timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{what}: not within {WAIT:?}");
}

#[tokio::test]
async fn connections_that_send_nothing_are_closed_on_both_ports_and_counted() {
    let api = TestApiServer::builder().tls().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(
        &api,
        dir.path(),
        ServerConfig::default().header_read_timeout(Duration::from_millis(300)),
    )
    .await;

    // Silent from the start, on both ports.
    let mut silent = TcpStream::connect(hub.proxy_addr()).await.unwrap();
    let mut silent_admin = TcpStream::connect(hub.admin_addr()).await.unwrap();
    // One byte that could start the h2 preface (or `PUT`), then nothing.
    let mut stalled = TcpStream::connect(hub.proxy_addr()).await.unwrap();
    stalled.write_all(b"P").await.unwrap();
    // Half a request head.
    let mut half = TcpStream::connect(hub.proxy_addr()).await.unwrap();
    half.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    assert_eq!(until_closed(&mut silent).await, "");
    assert_eq!(until_closed(&mut silent_admin).await, "");
    assert_eq!(until_closed(&mut stalled).await, "");
    // hyper answers a timed-out head with 408 or just closes; either way it ends.
    let _ = until_closed(&mut half).await;

    // The port still serves whoever talks.
    let answer = request(hub.proxy_addr(), "/version").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let proxy = metric(
        &hub,
        "yurt_cache_server_timed_out_connections_total",
        "proxy",
    )
    .await;
    assert_eq!(proxy, 3.0, "silent, stalled and half");
    let admin = metric(
        &hub,
        "yurt_cache_server_timed_out_connections_total",
        "management",
    )
    .await;
    assert_eq!(admin, 1.0);
    hub.shutdown().await;
}

#[tokio::test]
async fn beyond_the_cap_a_connection_gets_429_while_the_open_ones_work() {
    let api = TestApiServer::builder().tls().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A long header timeout: the held connections must stay open on their own.
    let hub = hub(
        &api,
        dir.path(),
        ServerConfig::default()
            .header_read_timeout(Duration::from_secs(300))
            .max_connections(2),
    )
    .await;

    let mut first = TcpStream::connect(hub.proxy_addr()).await.unwrap();
    let mut second = TcpStream::connect(hub.proxy_addr()).await.unwrap();
    eventually("both connections served", async || {
        metric(&hub, "yurt_cache_server_open_connections", "proxy").await == 2.0
    })
    .await;

    let refused = request(hub.proxy_addr(), "/version").await;
    assert!(
        refused.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{refused}"
    );
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    let body = &refused[refused.find("\r\n\r\n").unwrap() + 4..];
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["code"], 429);
    assert_eq!(
        status["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(
        metric(&hub, "yurt_cache_server_refused_connections_total", "proxy").await,
        1.0
    );

    // The open connections are served as usual.
    send_request(&mut first, "/version").await;
    let answer = until_closed(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The slot `first` held is free again: a new connection gets through.
    eventually("a new connection served once a slot is free", async || {
        request(hub.proxy_addr(), "/version")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    send_request(&mut second, "/version").await;
    let answer = until_closed(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    hub.shutdown().await;
}
