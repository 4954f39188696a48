//! Limits and leaks: bounded pending dials, dial deadlines, and 10,000 dials returning open
//! file descriptors and RSS to baseline (issue items 4 and 10; the ANP leak class).

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_dials_are_bounded_and_time_out() {
    let mut rig = Rig::builder()
        .echo()
        .server(|c| {
            c.max_pending_dials = 2;
            c.dial_timeout = Duration::from_millis(1500);
            // Slow pings, and no ping on a slow dial: only the dial deadline may end these dials
            // (the link's latency would otherwise make the on-demand ping time out first).
            c.session.keepalive_interval = Duration::from_secs(60);
            c.dial_ping_after = Duration::from_secs(60);
        })
        .through_link()
        // Keep the session alive through the stall so only the dial deadline acts.
        .agent(|c| c.session.keepalive_interval = Duration::from_secs(30))
        .start()
        .await;

    // Slow the link: each dial takes a 1.4 s round trip, so the first two stay pending while the
    // third arrives.
    rig.link().latency(Duration::from_millis(700));
    let authority = rig.authority();
    let server = rig.cloud.server.clone();
    let a1 = tokio::spawn({
        let (s, t) = (server.clone(), authority.clone());
        async move { s.dial(&t).await.map(|_| ()) }
    });
    let a2 = tokio::spawn({
        let (s, t) = (server.clone(), authority.clone());
        async move { s.dial(&t).await.map(|_| ()) }
    });
    tokio::time::timeout(WAIT, async {
        while rig.cloud.server.pending_dials(NODE) != Some(2) {
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
    rig.link().blackhole();
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
    rig.link.take().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dials_leave_no_fds_or_memory_behind() {
    // Process-wide measurements: no other test may run meanwhile.
    let rig = Rig::builder().exclusive().echo().start().await;
    let (cloud, agent) = (&rig.cloud, &rig.agent);
    let authority = rig.authority();

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
