//! What an operator sees when the tunnel breaks, exercised the way kube-apiserver's egress
//! dialer does it: the reason in the CONNECT status line, a frozen agent answered with a clear
//! 503 instead of a hang, and the whole HTTPConnect -> TLS (kubelet client certificate) -> exec
//! upgrade / log stream path.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use yurt_tunnel::{Listener, SessionConfig};

use crate::support::*;

/// What kube-apiserver's HTTPConnect dialer reads of a CONNECT answer: the status line (it
/// reports `code <n>: <status line>` on failure) and, here, the body too.
struct Answer {
    status: u16,
    status_line: String,
    body: String,
}

/// Writes `CONNECT authority` as the apiserver's dialer does and reads the answer's status
/// line, headers and (Content-Length) body byte by byte, never past the head on success.
async fn raw_connect<I: AsyncRead + AsyncWrite + Unpin>(io: &mut I, authority: &str) -> Answer {
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            let b = io.read_u8().await.unwrap();
            head.push(b);
        }
    })
    .await
    .expect("no CONNECT answer");
    let head = String::from_utf8(head).unwrap();
    let status_line = head.lines().next().unwrap().to_owned();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; if status == 200 { 0 } else { len }];
    tokio::time::timeout(WAIT, io.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    Answer {
        status,
        status_line,
        body: String::from_utf8(body).unwrap(),
    }
}

async fn uds_raw(cloud: &Cloud, authority: &str) -> Answer {
    let mut io = UnixStream::connect(&cloud.uds).await.unwrap();
    raw_connect(&mut io, authority).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reason_is_in_the_connect_status_line() {
    let rig = Rig::with_echo().await;

    let a = uds_raw(&rig.cloud, "edge-9:10250").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.status_line, "HTTP/1.1 503 no tunnel for node edge-9");
    assert_eq!(a.body, "no tunnel for node edge-9\n", "the body is kept");

    // A port the agent does not allowlist.
    let a = uds_raw(&rig.cloud, "edge-1:1").await;
    assert_eq!(a.status, 403, "{}", a.status_line);
    assert!(
        a.status_line.starts_with("HTTP/1.1 403 agent on edge-1: "),
        "{}",
        a.status_line
    );
    assert!(a.status_line.contains("not allowed"), "{}", a.status_line);
    assert_eq!(a.body.trim_end(), &a.status_line["HTTP/1.1 403 ".len()..]);

    let a = uds_raw(&rig.cloud, "edge-1:99999").await;
    assert_eq!(a.status, 400);
    assert!(
        a.status_line.contains("invalid target"),
        "{}",
        a.status_line
    );

    // Over the TLS front door, as the selector's `tcp` transport does.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let door = l.local_addr().unwrap();
    let tls = rig.pki.serving(&["127.0.0.1"], true);
    let s = rig.cloud.server.clone();
    let _door = Bg::spawn(async move {
        let _ = s.serve_connect(Listener::Tls(l, tls)).await;
    });
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut io = tokio_rustls::TlsConnector::from(rig.pki.client("kube-apiserver-kubelet-client"))
        .connect(name, tcp(door).await)
        .await
        .unwrap();
    let a = raw_connect(&mut io, "edge-7:10250").await;
    assert_eq!(a.status_line, "HTTP/1.1 503 no tunnel for node edge-7");

    // And a success still answers a plain 200 and carries bytes.
    let mut io = UnixStream::connect(&rig.cloud.uds).await.unwrap();
    let a = raw_connect(&mut io, &rig.authority()).await;
    assert_eq!(a.status, 200, "{}", a.status_line);
    io.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    tokio::time::timeout(WAIT, io.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");
}

/// A frozen agent (its link silently drops everything) with the default session settings:
/// the next request gets a clear 503, not a hang until the dial timeout, and so do the ones
/// after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_gets_a_clear_503() {
    let rig = Rig::builder()
        .echo()
        .through_link()
        .tls_name("127.0.0.1")
        .server(|c| {
            c.session = SessionConfig::default();
            c.dial_timeout = Duration::from_secs(30);
        })
        .agent(|c| c.session = SessionConfig::default())
        .start()
        .await;
    let authority = rig.authority();
    let a = uds_raw(&rig.cloud, &authority).await;
    assert_eq!(a.status, 200);
    rig.link().blackhole();

    let a = uds_raw(&rig.cloud, &authority).await;
    assert_eq!(a.status, 503, "{}", a.status_line);
    assert!(
        a.status_line.contains("no tunnel for node edge-1"),
        "{}",
        a.status_line
    );
    // The session is gone: later requests are answered at once.
    tokio::time::timeout(WAIT, async {
        while !rig.cloud.server.nodes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the frozen agent's session stayed registered");
    let a = uds_raw(&rig.cloud, &authority).await;
    assert_eq!(a.status_line, "HTTP/1.1 503 no tunnel for node edge-1");
}

/// The ping on demand alone: keepalive pings are far apart, so only the ping sent with the
/// dial can find the frozen agent before the (long) dial timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_pings_a_silent_agent() {
    let slow_keepalive = SessionConfig {
        keepalive_interval: Duration::from_secs(300),
        keepalive_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let rig = Rig::builder()
        .echo()
        .through_link()
        .tls_name("127.0.0.1")
        .server(move |c| {
            c.session = slow_keepalive;
            c.dial_timeout = Duration::from_secs(300);
            c.dial_ping_after = Duration::ZERO;
        })
        .agent(move |c| c.session = slow_keepalive)
        .start()
        .await;
    let authority = rig.authority();
    assert_eq!(uds_raw(&rig.cloud, &authority).await.status, 200);
    rig.link().blackhole();
    let a = uds_raw(&rig.cloud, &authority).await;
    assert_eq!(a.status, 503, "{}", a.status_line);
    assert!(
        a.status_line.contains("agent unresponsive"),
        "{}",
        a.status_line
    );
    assert_eq!(
        rig.cloud
            .server
            .metrics()
            .dial_failures(yurt_tunnel::metrics::reason::UNRESPONSIVE),
        1
    );
}

/// kube-apiserver's egress path exactly: HTTPConnect over the Unix socket, TLS to the kubelet
/// inside the tunnel with the apiserver's kubelet client certificate (the kubelet requires
/// one), then an exec upgrade (SPDY, as `kubectl exec` through the apiserver) and a followed
/// log stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_egress_path_end_to_end() {
    let rig = Rig::builder().kubelet_mtls().start().await;
    let authority = rig.authority();

    // Without the client certificate the kubelet refuses the TLS handshake.
    let stream = uds_connect(&rig.cloud.uds, &authority).await.unwrap();
    let cfg = yurt_tunnel::tls::client_config(&rig.pki.ca_der, None).unwrap();
    let name = rustls::pki_types::ServerName::try_from(NODE).unwrap();
    let refused = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await
    };
    assert!(
        tokio::time::timeout(WAIT, refused).await.unwrap().is_err(),
        "the kubelet must require a client certificate"
    );

    // exec: SPDY upgrade, echo both ways.
    let mut io = UnixStream::connect(&rig.cloud.uds).await.unwrap();
    assert_eq!(raw_connect(&mut io, &authority).await.status, 200);
    let mut send = kubelet_client_as(&rig.pki, io, Some("kube-apiserver-kubelet-client")).await;
    let req = Request::post("/exec/default/web/app?command=cat&input=1&output=1&error=1")
        .header("host", &authority)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
    let mut up = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    for round in 0..10u32 {
        let msg = format!("stdin {round}: {}", "y".repeat(round as usize * 1000));
        up.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, up.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    drop(up);

    // logs -f: a streamed body, intact.
    let stream = uds_connect(&rig.cloud.uds, &authority).await.unwrap();
    let mut send = kubelet_client_as(&rig.pki, stream, Some("kube-apiserver-kubelet-client")).await;
    let len = 4 * 1024 * 1024u64;
    let req = Request::get(format!(
        "/containerLogs/default/web/app?follow=true&limitBytes={len}"
    ))
    .header("host", &authority)
    .body(Empty::<Bytes>::new())
    .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut hash = Fnv::new();
    let mut got = 0u64;
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            got += data.len() as u64;
            hash.update(&data);
        }
    }
    assert_eq!(got, len);
    assert_eq!(hash.0, expected_log_hash(len));
}
