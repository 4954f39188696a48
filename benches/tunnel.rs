//! yurt-tunnel benches: throughput through the tunnel vs direct loopback TCP (plain and TLS) in
//! the same run, dial latency (criterion mean plus p50/p99 printed from 2,000 samples), and
//! concurrent-stream scaling. Targets: tunnel throughput >= 0.5x direct TCP+TLS; dial p99 <= 5 ms.
//!
//! Printed first, what an operator meets when an agent breaks (default session settings):
//! the time from an agent freeze (its link silently drops everything) to a clear 503 for a new
//! request, and from an agent restart to the first successful stream. Target: freeze <= 3 s.
//!
//! The tunnel hop is TLS (agent <-> server, mutual TLS); the target is a loopback "source"
//! that answers an 8-byte length with that many bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use yurt::tunnel::{
    Acceptor, Agent, AgentConfig, ServerConfig, TlsAcceptor, TlsTransport, Transport, TunnelServer,
    tls,
};
use yurt_testkit::chaos::ChaosLink;
use yurt_testkit::pki::TestCa;

const CHUNK: usize = 64 * 1024;

async fn serve_source(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let buf = vec![0x5au8; CHUNK];
    loop {
        let Ok(n) = s.read_u64().await else { return };
        let mut left = n as usize;
        while left > 0 {
            let k = left.min(CHUNK);
            if s.write_all(&buf[..k]).await.is_err() {
                return;
            }
            left -= k;
        }
        if s.flush().await.is_err() {
            return;
        }
    }
}

async fn pull(s: &mut (impl AsyncRead + AsyncWrite + Unpin), n: u64, buf: &mut [u8]) {
    s.write_u64(n).await.unwrap();
    s.flush().await.unwrap();
    let mut left = n as usize;
    while left > 0 {
        let k = s.read(buf).await.unwrap();
        assert!(k > 0, "source closed early");
        left -= k;
    }
}

struct Setup {
    _tasks: Vec<tokio::task::JoinHandle<()>>,
    source: SocketAddr,
    source_tls: SocketAddr,
    tls_client: TlsTransport,
    server: TunnelServer,
    authority: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for t in &self._tasks {
            t.abort();
        }
    }
}

async fn setup() -> Setup {
    let ca = TestCa::new().unwrap();
    let ca_der = vec![ca.ca_der()];
    let server_cert = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
    let server_tls = tls::server_config(
        vec![server_cert.cert_der().unwrap()],
        server_cert.key_der().unwrap(),
        Some(&ca_der),
    )
    .unwrap();
    let agent_cert = ca
        .issue_client_cert("system:node:edge-1", &["system:nodes"])
        .unwrap();
    let agent_tls = tls::client_config(
        &ca_der,
        Some((
            vec![agent_cert.cert_der().unwrap()],
            agent_cert.key_der().unwrap(),
        )),
    )
    .unwrap();
    let mut tasks = Vec::new();

    // Plain source.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = l.local_addr().unwrap();
    tasks.push(tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(serve_source(s));
        }
    }));
    // TLS source (same TLS stack as the tunnel hop).
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source_tls = l.local_addr().unwrap();
    let acceptor = TlsAcceptor::new(l, server_tls.clone());
    tasks.push(tokio::spawn(async move {
        while let Ok(connecting) = acceptor.accept().await {
            tokio::spawn(async move {
                if let Ok(a) = connecting.await {
                    serve_source(a.io).await;
                }
            });
        }
    }));
    // Tunnel server + agent.
    let server = TunnelServer::new(ServerConfig {
        max_pending_dials: 1024,
        ..ServerConfig::default()
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_port = l.local_addr().unwrap();
    let s = server.clone();
    let st = server_tls.clone();
    tasks.push(tokio::spawn(async move {
        let _ = s.serve_agents(TlsAcceptor::new(l, st)).await;
    }));
    let mut config = AgentConfig::new(
        "edge-1",
        vec!["127.0.0.1".parse().unwrap()],
        vec![agent_port.to_string()],
    );
    config.node_ports = vec![source.port()];
    let tls_client = TlsTransport::new(agent_tls.clone());
    let agent = Agent::new(config, Arc::new(TlsTransport::new(agent_tls))).unwrap();
    tasks.push(tokio::spawn(async move { agent.run().await }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.nodes().is_empty() {
        assert!(Instant::now() < deadline, "agent did not register");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Setup {
        _tasks: tasks,
        source,
        source_tls,
        tls_client,
        server,
        authority: format!("edge-1:{}", source.port()),
    }
}

fn throughput(c: &mut Criterion, rt: &Runtime, s: &Setup) {
    const BYTES: u64 = 32 * 1024 * 1024;
    let mut g = c.benchmark_group("tunnel_throughput");
    g.throughput(Throughput::Bytes(BYTES))
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    g.bench_function("direct_tcp", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = TcpStream::connect(s.source).await.unwrap();
                conn.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; CHUNK];
                let start = Instant::now();
                for _ in 0..iters {
                    pull(&mut conn, BYTES, &mut buf).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("direct_tcp_tls", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = s
                    .tls_client
                    .connect(&s.source_tls.to_string())
                    .await
                    .unwrap();
                let mut buf = vec![0u8; CHUNK];
                let start = Instant::now();
                for _ in 0..iters {
                    pull(&mut conn, BYTES, &mut buf).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("tunnel", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = s.server.dial(&s.authority).await.unwrap();
                let mut buf = vec![0u8; CHUNK];
                let start = Instant::now();
                for _ in 0..iters {
                    pull(&mut conn, BYTES, &mut buf).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn dial_latency(c: &mut Criterion, rt: &Runtime, s: &Setup) {
    // Percentiles first (criterion reports means).
    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::with_capacity(2000);
        let mut buf = [0u8; 16];
        for _ in 0..2000 {
            let start = Instant::now();
            let mut conn = s.server.dial(&s.authority).await.unwrap();
            pull(&mut conn, 1, &mut buf).await;
            v.push(start.elapsed());
        }
        v
    });
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "tunnel dial+first byte over {} samples: p50 {:?}, p99 {:?}, max {:?} (target p99 <= 5 ms)",
        samples.len(),
        p(0.50),
        p(0.99),
        samples[samples.len() - 1]
    );
    let mut g = c.benchmark_group("tunnel_dial");
    g.bench_function("dial_and_first_byte", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut buf = [0u8; 16];
                let start = Instant::now();
                for _ in 0..iters {
                    let mut conn = s.server.dial(&s.authority).await.unwrap();
                    pull(&mut conn, 1, &mut buf).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn concurrency(c: &mut Criterion, rt: &Runtime, s: &Setup) {
    const PER_STREAM: u64 = 1024 * 1024;
    let mut g = c.benchmark_group("tunnel_concurrent_streams");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for streams in [1usize, 16, 128, 512] {
        g.throughput(Throughput::Bytes(PER_STREAM * streams as u64));
        g.bench_with_input(BenchmarkId::from_parameter(streams), &streams, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut conns = Vec::with_capacity(n);
                    for _ in 0..n {
                        conns.push(s.server.dial(&s.authority).await.unwrap());
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut set = tokio::task::JoinSet::new();
                        for mut conn in conns.drain(..) {
                            set.spawn(async move {
                                let mut buf = vec![0u8; CHUNK];
                                pull(&mut conn, PER_STREAM, &mut buf).await;
                                conn
                            });
                        }
                        while let Some(conn) = set.join_next().await {
                            conns.push(conn.unwrap());
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// Polls `f` every millisecond until it is true; panics after 30 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label} over {} runs: p50 {:?}, max {:?}",
        v.len(),
        v[v.len() / 2],
        v[v.len() - 1]
    );
}

/// Freeze -> 503 and restart -> first stream, with the default session settings.
async fn operator_timings() {
    let ca = TestCa::new().unwrap();
    let ca_der = vec![ca.ca_der()];
    let cert = ca.issue_server_cert(&["127.0.0.1"]).unwrap();
    let server_tls = tls::server_config(
        vec![cert.cert_der().unwrap()],
        cert.key_der().unwrap(),
        Some(&ca_der),
    )
    .unwrap();
    let agent_cert = ca
        .issue_client_cert("system:node:edge-1", &["system:nodes"])
        .unwrap();
    let agent_tls = tls::client_config(
        &ca_der,
        Some((
            vec![agent_cert.cert_der().unwrap()],
            agent_cert.key_der().unwrap(),
        )),
    )
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = l.local_addr().unwrap();
    let source_task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_source(s));
        }
    });
    let server = TunnelServer::new(ServerConfig::default());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = ChaosLink::start(l.local_addr().unwrap()).await.unwrap();
    let s = server.clone();
    let server_task = tokio::spawn(async move {
        let _ = s.serve_agents(TlsAcceptor::new(l, server_tls)).await;
    });
    let authority = format!("edge-1:{}", source.port());
    let start_agent = || {
        let mut config = AgentConfig::new(
            "edge-1",
            vec!["127.0.0.1".parse().unwrap()],
            vec![link.local_addr().to_string()],
        );
        config.node_ports = vec![source.port()];
        let transport = TlsTransport::new(agent_tls.clone())
            .with_server_name("127.0.0.1")
            .unwrap();
        let agent = Agent::new(config, Arc::new(transport)).unwrap();
        tokio::spawn(async move { agent.run().await })
    };
    let stream_ok = |server: TunnelServer, authority: String| async move {
        let Ok(mut conn) = server.dial(&authority).await else {
            return false;
        };
        let mut buf = [0u8; 16];
        pull(&mut conn, 1, &mut buf).await;
        true
    };

    // Restart: the agent process goes away and a new one starts.
    let mut restarts = Vec::new();
    let mut agent = start_agent();
    for _ in 0..10 {
        until("registration", || !server.nodes().is_empty()).await;
        agent.abort();
        let _ = agent.await;
        until("the old session to end", || server.nodes().is_empty()).await;
        let t0 = Instant::now();
        agent = start_agent();
        let deadline = t0 + Duration::from_secs(30);
        while !stream_ok(server.clone(), authority.clone()).await {
            assert!(Instant::now() < deadline, "no stream after a restart");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        restarts.push(t0.elapsed());
    }

    // Freeze: the agent stops answering (its link drops everything); a new request arrives
    // right after, at a different point of the keepalive cycle each run.
    let mut first_503 = Vec::new();
    let mut dropped = Vec::new();
    for round in 0..8u64 {
        link.heal();
        until("registration", || !server.nodes().is_empty()).await;
        assert!(stream_ok(server.clone(), authority.clone()).await);
        tokio::time::sleep(Duration::from_millis(round * 200)).await;
        link.blackhole();
        let t0 = Instant::now();
        match server.dial(&authority).await {
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => first_503.push(t0.elapsed()),
            Err(e) => panic!("a frozen agent answered {}: {}", e.status, e.message),
            Ok(_) => panic!("a dial through a frozen agent succeeded"),
        }
        until("the frozen session to be dropped", || {
            server.nodes().is_empty()
        })
        .await;
        dropped.push(t0.elapsed());
    }
    link.heal();
    agent.abort();
    server_task.abort();
    source_task.abort();
    link.shutdown().await;

    summary(
        "operator: agent freeze -> 503 for a request sent at the freeze (target <= 3 s)",
        first_503,
    );
    summary(
        "operator: agent freeze -> session dropped (later requests get 503 at once)",
        dropped,
    );
    summary(
        "operator: agent restart -> first successful stream",
        restarts,
    );
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(operator_timings());
    let s = rt.block_on(setup());
    throughput(c, &rt, &s);
    dial_latency(c, &rt, &s);
    concurrency(c, &rt, &s);
    drop(s);
}

criterion_group!(tunnel, benches);
criterion_main!(tunnel);
