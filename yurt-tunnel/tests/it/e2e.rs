//! End-to-end paths: the egress-selector CONNECT door (logs, exec, port-forward, many streams),
//! the 10263/10264 doors and the admin endpoints (issue items 2, 3, 7, 10).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yurt_tunnel::{HttpDoor, Listener};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stream_of_100_mb_arrives_intact() {
    let rig = Rig::with_kubelet().await;

    let len: u64 = 100 * 1024 * 1024;
    let stream = uds_connect(&rig.cloud.uds, &rig.authority()).await.unwrap();
    let mut send = kubelet_client(&rig.pki, stream).await;
    let req = Request::get(format!(
        "/containerLogs/default/web/app?follow=true&limitBytes={len}"
    ))
    .header("host", rig.authority())
    .body(Empty::<Bytes>::new())
    .unwrap();
    let start = Instant::now();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut hash = Fnv::new();
    let mut got = 0u64;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got += data.len() as u64;
                hash.update(&data);
            }
        }
    })
    .await
    .expect("log stream did not finish");
    let took = start.elapsed();
    assert_eq!(got, len);
    assert_eq!(hash.0, expected_log_hash(len));
    eprintln!(
        "100 MiB log stream through TLS+tunnel+TLS in {took:?} ({:.0} MiB/s, debug build)",
        100.0 / took.as_secs_f64()
    );
    let metrics = rig.cloud.server.metrics().encode();
    assert!(metrics.contains("yurt_tunnel_sessions 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_port_forward_echo_both_ways_over_upgrades() {
    let rig = Rig::with_kubelet().await;

    for (path, proto) in [
        (
            "/exec/default/web/app?command=sh&stdin=1&stdout=1",
            "websocket",
        ),
        ("/portForward/default/web", "SPDY/3.1"),
    ] {
        // The apiserver addresses the node by IP here (InternalIP preferred).
        let stream = uds_connect(&rig.cloud.uds, &rig.target().to_string())
            .await
            .unwrap();
        let mut send = kubelet_client(&rig.pki, stream).await;
        let req = Request::get(path)
            .header("host", rig.authority())
            .header("connection", "Upgrade")
            .header("upgrade", proto)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        for round in 0..20u32 {
            let msg = format!(
                "{proto} round {round}: {}",
                "x".repeat(round as usize * 100)
            );
            io.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            tokio::time::timeout(WAIT, io.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, io.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams() {
    let rig = Rig::with_echo().await;
    let (cloud, agent) = (&rig.cloud, &rig.agent);

    let n = 1000;
    let start = Instant::now();
    // Open all streams first, then exchange data on all of them at once.
    let mut streams = Vec::with_capacity(n);
    // Like an apiserver, open with bounded concurrency (the server admits 64 pending dials per
    // node by default); every stream stays open until all are open.
    let mut opens = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..n {
        let uds = cloud.uds.clone();
        let authority = rig.authority();
        let permits = permits.clone();
        opens.spawn(async move {
            let _p = permits.acquire().await.unwrap();
            uds_connect(&uds, &authority).await.unwrap()
        });
    }
    while let Some(s) = opens.join_next().await {
        streams.push(s.unwrap());
    }
    assert_eq!(cloud.server.metrics().open_streams(), n as i64);
    assert_eq!(agent.metrics().open_streams(), n as i64);
    let mut rounds = tokio::task::JoinSet::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        rounds.spawn(async move {
            let msg = format!("stream {i} says hello").repeat(50);
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes());
        });
    }
    tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(r) = rounds.join_next().await {
            r.unwrap();
        }
    })
    .await
    .expect("streams did not finish");
    eprintln!(
        "{n} concurrent streams opened and echoed in {:?}",
        start.elapsed()
    );
    tokio::time::timeout(WAIT, async {
        while cloud.server.metrics().open_streams() != 0 || agent.metrics().open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("streams were not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_http_front_doors_route_by_host_and_node_name() {
    let rig = Rig::builder().kubelet().plain_kubelet().start().await;
    let (pki, cloud) = (&rig.pki, &rig.cloud);
    let (kubelet, plain) = (rig.targets[0], rig.targets[1]);

    // 10263: HTTPS, apiserver client certificate required.
    let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure_addr = secure.local_addr().unwrap();
    let s = cloud.server.clone();
    let door_tls = pki.serving(&["127.0.0.1"], true);
    let kubelet_tls = yurt_tunnel::tls::client_config(&pki.ca_der, None).unwrap();
    let _secure = Bg::spawn(async move {
        let _ = s
            .serve_http(
                Listener::Tls(secure, door_tls),
                HttpDoor::secure(kubelet_tls),
            )
            .await;
    });
    // 10264: plain HTTP.
    let insecure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let insecure_addr = insecure.local_addr().unwrap();
    let s = cloud.server.clone();
    let _insecure = Bg::spawn(async move {
        let _ = s
            .serve_http(Listener::Tcp(insecure), HttpDoor::insecure())
            .await;
    });
    // Admin.
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let s = cloud.server.clone();
    let _admin = Bg::spawn(async move {
        let _ = s.serve_admin(admin).await;
    });

    // HTTPS door: Host routes; logs and an exec upgrade pass through.
    let apiserver_tls = pki.client("kube-apiserver-kubelet-client");
    let stream = tcp(secure_addr).await;
    let tls = tokio_rustls::TlsConnector::from(apiserver_tls)
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            stream,
        )
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .unwrap();
    let _c = Bg::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = Request::get("/containerLogs/default/web/app?limitBytes=300000")
        .header("host", format!("{NODE}:{}", kubelet.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let mut h = Fnv::new();
    h.update(&body);
    assert_eq!(h.0, expected_log_hash(300000));
    let req = Request::get("/exec/default/web/app")
        .header("host", format!("{NODE}:{}", kubelet.port()))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    io.write_all(b"ls -l\n").await.unwrap();
    let mut back = [0u8; 6];
    tokio::time::timeout(WAIT, io.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ls -l\n");

    // HTTPS door without a client certificate: refused at TLS.
    let no_cert = yurt_tunnel::tls::client_config(&pki.ca_der, None).unwrap();
    let tcp2 = tcp(secure_addr).await;
    let attempt = async {
        let mut tls = tokio_rustls::TlsConnector::from(no_cert)
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp2,
            )
            .await?;
        tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: edge-1:10250\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let r = tokio::time::timeout(WAIT, attempt).await.unwrap();
    assert!(
        r.is_err() || r.unwrap().is_empty(),
        "door served a client without certificate"
    );

    // HTTP door: a metrics scraper hitting the proxy's own address with ?nodeName=.
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(
        tcp(insecure_addr).await,
    ))
    .await
    .unwrap();
    let _c2 = Bg::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("/metrics?nodeName={NODE}"))
        .header("host", format!("10.96.0.10:{}", plain.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"kubelet_up 1"), "{body:?}");
    // Unknown node: 503 with a clear message.
    let req = Request::get("/metrics")
        .header("host", "edge-9:10255")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"no tunnel for node edge-9\n");

    // Admin endpoints.
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(
        tcp(admin_addr).await,
    ))
    .await
    .unwrap();
    let _c3 = Bg::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap();
    let resp = send
        .send_request(Request::get("/healthz").body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    send.ready().await.unwrap();
    let resp = send
        .send_request(Request::get("/metrics").body(Empty::new()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for needle in [
        "yurt_tunnel_sessions 1",
        "yurt_tunnel_dial_failures_total{reason=\"no_tunnel\"} 1",
        "yurt_tunnel_dial_latency_seconds_count",
        "yurt_tunnel_bytes_total{direction=\"from_edge\"}",
        "yurt_tunnel_bytes_total{direction=\"to_edge\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}
