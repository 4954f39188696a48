//! Liveness and HA: restarts, cut links, several servers, refusals (issue items 3, 5, 6, 10).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yurt_testkit::chaos::ChaosLink;

use yurt_tunnel::metrics::refusal;

use crate::support::*;

async fn echo_once(cloud: &Cloud, authority: &str) -> Result<(), (StatusCode, String)> {
    let mut s = uds_connect(&cloud.uds, authority).await?;
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");
    Ok(())
}

/// The agent's backoff is deterministic here (jitter 0, 50 ms doubling to a 200 ms cap), so the
/// time from "server is back" to "dial works" is bounded by one capped backoff plus a TLS
/// handshake; we assert the 2 s bound and log the measured time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_agent_reregisters_within_two_seconds() {
    let rig = Rig::with_echo().await;
    let addr = rig.cloud.agent_addr;
    let authority = rig.authority();
    echo_once(&rig.cloud, &authority).await.unwrap();

    rig.cloud.stop().await;
    // Down for a while, so the agent has backed off to its cap.
    tokio::time::timeout(WAIT, async {
        while rig.agent.connected() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("agent did not notice the server going away");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let cloud = Cloud::start_on(&rig.pki, server_config(), addr).await;
    let back = Instant::now();
    let mut attempts = 0;
    tokio::time::timeout(WAIT, async {
        loop {
            attempts += 1;
            if echo_once(&cloud, &authority).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dials never worked again");
    let took = back.elapsed();
    eprintln!("re-registered and dialed {took:?} after the restart ({attempts} attempts)");
    assert!(took <= Duration::from_secs(2), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_mid_stream_fails_cleanly_before_deadline() {
    let _gate = shared().await;
    let pki = Pki::new();
    let (kubelet, _k) =
        stub_kubelet(Some(pki.serving(&["127.0.0.1", "localhost", NODE], false))).await;
    let cloud = Cloud::start(&pki, server_config()).await;
    for blackhole in [false, true] {
        let link = ChaosLink::start(cloud.agent_addr).await.unwrap();
        let mut config = agent_config(vec![link.local_addr().to_string()], &[kubelet.port()]);
        config.session.keepalive_timeout = Duration::from_millis(1000);
        let (_agent, bg) =
            start_agent_with_tls_name(&pki, "system:node:edge-1", config, "127.0.0.1");
        cloud.wait_node(NODE).await;

        let stream = uds_connect(&cloud.uds, &format!("{NODE}:{}", kubelet.port()))
            .await
            .unwrap();
        let mut send = kubelet_client(&pki, stream).await;
        // A slow, long log stream: 64 KiB every 20 ms, 64 MiB in all (~20 s if never cut).
        let req = Request::get(
            "/containerLogs/default/web/app?follow=true&limitBytes=67108864&slowMs=20",
        )
        .header("host", format!("{NODE}:{}", kubelet.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let mut body = resp.into_body();
        let mut got = 0usize;
        while got < 512 * 1024 {
            got += body
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .map(|d| d.len())
                .unwrap_or(0);
        }
        let cut_at = Instant::now();
        if blackhole {
            link.blackhole();
        } else {
            link.cut();
        }
        // The stream must end with an error well before its natural end; the deadline here is
        // only a guard against hanging.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match body.frame().await {
                    None => return Ok(got),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(f)) => got += f.into_data().map(|d| d.len()).unwrap_or(0),
                }
            }
        })
        .await
        .expect("stream hung after the link went down");
        assert!(
            ended.is_err() || ended.unwrap() < 64 * 1024 * 1024,
            "stream completed despite the cut"
        );
        eprintln!(
            "blackhole={blackhole}: stream failed {:?} after the link went down",
            cut_at.elapsed()
        );
        // The server drops the dead session: new dials get an immediate 503.
        tokio::time::timeout(WAIT, async {
            while !cloud.server.nodes().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("dead session stayed registered");
        let err = uds_connect(&cloud.uds, &format!("{NODE}:{}", kubelet.port()))
            .await
            .unwrap_err();
        assert_eq!(err.0, StatusCode::SERVICE_UNAVAILABLE);
        bg.stop().await;
        link.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_every_server_it_is_given() {
    let _gate = shared().await;
    let pki = Pki::new();
    let (echo, _e) = echo_server().await;
    let a = Cloud::start(&pki, server_config()).await;
    let b = Cloud::start(&pki, server_config()).await;
    let (agent, _bg) = start_agent(
        &pki,
        "system:node:edge-1",
        agent_config(
            vec![a.agent_addr.to_string(), b.agent_addr.to_string()],
            &[echo.port()],
        ),
    );
    a.wait_node(NODE).await;
    b.wait_node(NODE).await;
    // The server registers a session a moment before the agent counts it.
    tokio::time::timeout(WAIT, async {
        while agent.connected() != 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("agent does not report both sessions");
    let authority = format!("{NODE}:{}", echo.port());
    echo_once(&a, &authority).await.unwrap();
    echo_once(&b, &authority).await.unwrap();
    // One server going away leaves the other routing.
    a.stop().await;
    echo_once(&b, &authority).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_means_immediate_503() {
    let _gate = shared().await;
    let pki = Pki::new();
    let cloud = Cloud::start(&pki, server_config()).await;
    let start = Instant::now();
    let err = uds_connect(&cloud.uds, "edge-7:10250").await.unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no tunnel for node edge-7\n".to_string()
        )
    );
    let err = uds_connect(&cloud.uds, "10.1.2.3:10250").await.unwrap_err();
    assert_eq!(err.0, StatusCode::SERVICE_UNAVAILABLE);
    let err = uds_connect(&cloud.uds, "edge-7").await.unwrap_err();
    assert_eq!(err.0, StatusCode::BAD_REQUEST);
    eprintln!("three refusals in {:?}", start.elapsed());
    assert_eq!(
        cloud
            .server
            .metrics()
            .dial_failures(yurt_tunnel::metrics::reason::NO_TUNNEL),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_targets_outside_its_allowlist() {
    let rig = Rig::with_echo().await;
    let (cloud, echo) = (&rig.cloud, rig.target());
    // Not in the agent's allowlist.
    let (other, _o) = echo_server().await;
    echo_once(cloud, &rig.authority()).await.unwrap();
    let (status, msg) = uds_connect(&cloud.uds, &format!("{NODE}:{}", other.port()))
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(msg.contains("not allowed by the agent allowlist"), "{msg}");
    // An address this node did not report routes nowhere (no open relay).
    let (status, _) = uds_connect(&cloud.uds, &format!("127.0.0.2:{}", echo.port()))
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_must_present_their_node_identity() {
    let _gate = shared().await;
    let pki = Pki::new();
    let cloud = Cloud::start(&pki, server_config()).await;
    // A certificate for another node.
    let (_agent, _bg) = start_agent(
        &pki,
        "system:node:edge-2",
        agent_config(vec![cloud.agent_addr.to_string()], &[10250]),
    );
    // A certificate from another CA.
    let rogue = Pki::new();
    let (_agent2, _bg2) = start_agent(
        &rogue,
        "system:node:edge-1",
        agent_config(vec![cloud.agent_addr.to_string()], &[10250]),
    );
    tokio::time::timeout(WAIT, async {
        loop {
            // Each refusal is counted under its reason: the other node's certificate is an
            // identity refusal, the other CA's fails the TLS handshake.
            let m = cloud.server.metrics();
            if m.registrations_rejected(refusal::IDENTITY) >= 2
                && m.registrations_rejected(refusal::TRANSPORT) >= 2
            {
                let text = m.encode();
                assert!(
                    text.contains("yurt_tunnel_registrations_rejected_total{reason=\"identity\"}"),
                    "{text}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("registrations were not rejected");
    assert!(cloud.server.nodes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_session_replaces_a_stale_one() {
    // The first agent reaches the cloud through a chaos link.
    let mut rig = Rig::builder()
        .echo()
        .server(|c| {
            // Slow pings: the server must not rely on them to drop the stale session.
            c.session.keepalive_interval = Duration::from_secs(60);
            // Dials routed to the stale session before the replacement fail at this deadline.
            c.dial_timeout = Duration::from_secs(1);
        })
        .through_link()
        .agent(|c| c.session.keepalive_interval = Duration::from_secs(60))
        .tls_name("127.0.0.1")
        .start()
        .await;
    let cloud = &rig.cloud;
    let (second_target, _e2) = echo_server().await;
    echo_once(cloud, &rig.authority()).await.unwrap();

    // The first agent's path goes silent (NAT rebinding): its session looks alive to the server.
    rig.link().blackhole();
    let (_second, _bg) = start_agent(
        &rig.pki,
        "system:node:edge-1",
        agent_config(vec![cloud.agent_addr.to_string()], &[second_target.port()]),
    );
    let start = Instant::now();
    tokio::time::timeout(WAIT, async {
        while echo_once(cloud, &format!("{NODE}:{}", second_target.port()))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the newer session never served dials");
    eprintln!(
        "newer session served dials {:?} after the old path went silent",
        start.elapsed()
    );
    assert_eq!(cloud.server.nodes(), vec![NODE.to_string()]);
    assert_eq!(cloud.server.metrics().sessions(), 1);
    rig.link.take().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connect_door_requires_the_apiserver_client_certificate() {
    let rig = Rig::with_echo().await;
    let pki = &rig.pki;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = rig.cloud.server.clone();
    let door_tls = pki.serving(&["127.0.0.1"], true);
    let _door = Bg::spawn(async move {
        let _ = s
            .serve_connect(yurt_tunnel::Listener::Tls(listener, door_tls))
            .await;
    });
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // With the apiserver's client certificate: CONNECT works.
    let tls = tokio_rustls::TlsConnector::from(pki.client("kube-apiserver-kubelet-client"))
        .connect(name.clone(), tcp(addr).await)
        .await
        .unwrap();
    let mut s = http_connect(tls, &rig.authority()).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");
    // Without one: the TLS handshake fails (or the connection closes before any response).
    let no_cert = yurt_tunnel::tls::client_config(&pki.ca_der, None).unwrap();
    let attempt = async {
        let mut tls = tokio_rustls::TlsConnector::from(no_cert)
            .connect(name, tcp(addr).await)
            .await?;
        tls.write_all(b"CONNECT edge-1:10250 HTTP/1.1\r\nHost: edge-1:10250\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let r = tokio::time::timeout(WAIT, attempt).await.unwrap();
    assert!(
        r.is_err() || r.unwrap().is_empty(),
        "CONNECT door served a client without certificate"
    );
}
