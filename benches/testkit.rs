//! The test apiserver's capacity, so it never bottlenecks the hub benchmarks: write throughput
//! (ConfigMap creates through kube-rs over HTTP, 32 in flight) while 1,000 watches are open, and
//! the fan-out of one write to those 1,000 watches (time until every watcher has the event).
//!
//! Client and server share the machine's 2 cores and one Tokio runtime, so the numbers are a
//! lower bound of the server alone. Besides criterion's report, a summary prints the measured
//! writes/s and fan-out figures against the targets (>= 5,000 writes/s, 1,000 watches).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tokio::sync::Notify;
use yurt_testkit::TestApiServer;

/// Concurrent watches held open.
const WATCHES: usize = 1_000;
/// Writes in one measured batch.
const BATCH: u64 = 500;
/// Writes in flight.
const CONCURRENCY: u64 = 32;
/// Namespace the watches look at (fan-out target); writes for throughput go to `default`.
const WATCHED: &str = "watched";

/// A server with 1,000 open watches on `watched` configmaps, counting delivered events.
struct Rig {
    rt: tokio::runtime::Runtime,
    server: TestApiServer,
    client: kube::Client,
    delivered: Arc<AtomicU64>,
    notify: Arc<Notify>,
    next: AtomicU64,
}

impl Rig {
    fn new() -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt
            .block_on(TestApiServer::builder().history_limit(1_000).start())
            .expect("server");
        let client = rt.block_on(async { server.client() });
        let delivered = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        rt.block_on(async {
            server
                .create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": WATCHED}}))
                .await
                .expect("namespace");
            let rv = server.resource_version();
            for _ in 0..WATCHES {
                let req = http::Request::get(format!(
                    "/api/v1/namespaces/{WATCHED}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=3600"
                ))
                .body(Vec::new())
                .expect("request");
                let stream = client.request_stream(req).await.expect("watch");
                let (delivered, notify) = (delivered.clone(), notify.clone());
                tokio::spawn(async move {
                    let mut lines = stream.lines();
                    while let Some(Ok(line)) = lines.next().await {
                        if !line.contains("\"BOOKMARK\"") {
                            delivered.fetch_add(1, Ordering::Relaxed);
                            notify.notify_waiters();
                        }
                    }
                });
            }
            tokio::time::timeout(Duration::from_secs(60), async {
                while server.open_watches() < WATCHES {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("watches open");
        });
        Rig {
            rt,
            server,
            client,
            delivered,
            notify,
            next: AtomicU64::new(0),
        }
    }

    /// Creates `n` configmaps in `ns`, `CONCURRENCY` at a time.
    async fn writes(&self, ns: &str, n: u64) {
        let base = self.next.fetch_add(n, Ordering::Relaxed);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let per = n.div_ceil(CONCURRENCY);
        let mut tasks = Vec::new();
        for w in 0..CONCURRENCY {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w * per)..((w + 1) * per).min(n) {
                    let mut cm = ConfigMap::default();
                    cm.metadata.name = Some(format!("cm-{}", base + i));
                    cm.data = Some([("k".to_owned(), "v".to_owned())].into());
                    api.create(&PostParams::default(), &cm)
                        .await
                        .expect("create");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    }

    /// One write to the watched namespace; returns when every watcher has its event.
    async fn fan_out_one(&self) -> Duration {
        let target = self.delivered.load(Ordering::Relaxed) + WATCHES as u64;
        let start = Instant::now();
        self.writes(WATCHED, 1).await;
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.notify.notified();
                if self.delivered.load(Ordering::Relaxed) >= target {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("fan-out completes");
        start.elapsed()
    }
}

fn benches(c: &mut Criterion, rig: &Rig) {
    let mut group = c.benchmark_group("testkit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("writes_with_1000_watches_open", |b| {
        b.iter_custom(|iters| {
            rig.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    rig.writes("default", BATCH).await;
                }
                start.elapsed()
            })
        })
    });
    group.throughput(Throughput::Elements(WATCHES as u64));
    group.bench_function("fan_out_one_write_to_1000_watches", |b| {
        b.iter_custom(|iters| {
            rig.rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rig.fan_out_one().await;
                }
                total
            })
        })
    });
    group.finish();
}

/// Measures and prints the headline numbers.
fn summary(rig: &Rig) {
    let writes = 5_000;
    let elapsed = rig.rt.block_on(async {
        let start = Instant::now();
        rig.writes("default", writes).await;
        start.elapsed()
    });
    let per_sec = writes as f64 / elapsed.as_secs_f64();
    let mut fan: Vec<Duration> = rig.rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(rig.fan_out_one().await);
        }
        v
    });
    fan.sort();
    let p50 = fan[fan.len() / 2];
    let max = fan[fan.len() - 1];
    let events_per_sec = WATCHES as f64 / p50.as_secs_f64();
    println!(
        "testkit summary: {per_sec:.0} writes/s ({writes} creates, {CONCURRENCY} in flight) with {} watches open; target >= 5000: {}",
        rig.server.open_watches(),
        if per_sec >= 5_000.0 { "met" } else { "NOT MET" }
    );
    println!(
        "testkit summary: one write fanned out to {WATCHES} watches in p50 {:.2} ms, max {:.2} ms ({events_per_sec:.0} events/s delivered)",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    let rig = Rig::new();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rig);
    c.final_summary();
    summary(&rig);
}
