//! Limits and leaks: bounded pending dials, dial deadlines, and 10,000 dials returning open
//! file descriptors and RSS to baseline (issue items 4 and 10; the ANP leak class).

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yurt_testkit::chaos::ChaosLink;
use yurt_tunnel::ServerConfig;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_dials_are_bounded_and_time_out() {
    let _gate = shared().await;
    let pki = Pki::new();
    let (echo, _e) = echo_server().await;
    let mut config = ServerConfig {
        max_pending_dials: 2,
        dial_timeout: Duration::from_millis(1500),
        ..server_config()
    };
    // Slow pings: only the dial deadline may end these dials.
    config.session.keepalive_interval = Duration::from_secs(60);
    let cloud = Cloud::start(&pki, config).await;
    let link = ChaosLink::start(cloud.agent_addr).await.unwrap();
    let mut agent_cfg = agent_config(vec![link.local_addr().to_string()], &[echo.port()]);
    // Keep the session alive through the stall so only the dial deadline acts.
    agent_cfg.session.keepalive_interval = Duration::from_secs(30);
    let transport = std::sync::Arc::new(yurt_tunnel::TlsTransport::new(
        pki.client("system:node:edge-1"),
    ));
    let agent = yurt_tunnel::Agent::new(agent_cfg, transport).unwrap();
    let a = agent.clone();
    let _bg = Bg::spawn(async move { a.run().await });
    cloud.wait_node(NODE).await;

    // Slow the link: each dial takes a 1.4 s round trip, so the first two stay pending while the
    // third arrives.
    link.latency(Duration::from_millis(700));
    let authority = format!("{NODE}:{}", echo.port());
    let server = cloud.server.clone();
    let a1 = tokio::spawn({
        let (s, t) = (server.clone(), authority.clone());
        async move { s.dial(&t).await.map(|_| ()) }
    });
    let a2 = tokio::spawn({
        let (s, t) = (server.clone(), authority.clone());
        async move { s.dial(&t).await.map(|_| ()) }
    });
    tokio::time::timeout(WAIT, async {
        while cloud.server.pending_dials(NODE) != Some(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("dials were not pending");
    let start = Instant::now();
    let third = server.dial(&authority).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "overload answer was not immediate"
    );
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        third.message,
        format!("too many pending dials to node {NODE} (limit 2)")
    );
    // The two pending dials either complete (latency < deadline) or time out; neither hangs.
    for h in [a1, a2] {
        let r = tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
        if let Err(e) = r {
            assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
        }
    }
    // Blackholed: a dial fails at its deadline (1.5 s), not later.
    link.blackhole();
    let start = Instant::now();
    let err = server.dial(&authority).await.unwrap_err();
    let took = start.elapsed();
    eprintln!("blackholed dial failed after {took:?}: {err}");
    assert_eq!(err.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        err.message.contains("timed out after 1.5s"),
        "{}",
        err.message
    );
    // Bounded by the deadline (generous guard for a loaded machine).
    assert!(took < Duration::from_secs(5));
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dials_leave_no_fds_or_memory_behind() {
    let _gate = exclusive().await;
    let pki = Pki::new();
    let (echo, _e) = echo_server().await;
    let cloud = Cloud::start(&pki, server_config()).await;
    let (agent, _a) = start_agent(
        &pki,
        "system:node:edge-1",
        agent_config(vec![cloud.agent_addr.to_string()], &[echo.port()]),
    );
    cloud.wait_node(NODE).await;
    let authority = format!("{NODE}:{}", echo.port());

    let run = |n: usize| {
        let server = cloud.server.clone();
        let authority = authority.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                if set.len() >= 64 {
                    set.join_next().await.unwrap().unwrap();
                }
                let server = server.clone();
                let authority = authority.clone();
                set.spawn(async move {
                    let mut s = server.dial(&authority).await.unwrap();
                    s.write_all(&(i as u32).to_be_bytes()).await.unwrap();
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).await.unwrap();
                    assert_eq!(u32::from_be_bytes(b), i as u32);
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        }
    };
    let settle = || async {
        tokio::time::timeout(WAIT, async {
            while cloud.server.metrics().open_streams() != 0 || agent.metrics().open_streams() != 0
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("streams not released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Warm up (allocator arenas, h2 tables), then take the baseline.
    tokio::time::timeout(Duration::from_secs(30), run(1000))
        .await
        .expect("warm-up hung");
    settle().await;
    let (fds0, rss0) = (open_fds(), rss_kib());
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(45), run(10_000))
        .await
        .expect("10k dials hung");
    let took = start.elapsed();
    settle().await;
    let (fds1, rss1) = (open_fds(), rss_kib());
    eprintln!(
        "10000 dials in {took:?} ({:.0}/s); fds {fds0} -> {fds1}; RSS {rss0} KiB -> {rss1} KiB",
        10_000.0 / took.as_secs_f64()
    );
    assert!(fds1 <= fds0 + 4, "fd leak: {fds0} -> {fds1}");
    assert!(
        rss1 <= rss0 + 16 * 1024,
        "RSS grew: {rss0} KiB -> {rss1} KiB"
    );
}
