//! Node-level traffic reuse: N = 1, 3, 10 local clients each list and watch 1,000 services and
//! 1,000 endpointslices through the hub, with and without the multiplexer, while the apiserver
//! sees churn (updates of both). Measured against one test apiserver over loopback:
//!
//! - **upstream bytes**: the apiserver's own response-byte counters of the hub's lists and
//!   watches over the whole scenario (the clients' lists and watches, then 200 updates of each
//!   resource), per N and mode, and the ratio without/with (it approaches N);
//! - **fan-out latency**: from the write on the apiserver until each client's watch delivers
//!   the event, p50 and p99 over every (event, client) pair of the churn, printed in the summary;
//!   criterion times one update reaching all N service watchers.
//!
//! Clients identify as kube-proxy (a cached component), so without the multiplexer each
//! client's list and watch is also teed into the redb cache, as on a real node; with it, the
//! feed (`multiplexer-proxy-<node>`) is. Clients, hub and apiserver share the machine's cores
//! and one Tokio runtime.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::net::TcpListener;
use yurt::cache::admin::ProxyMetrics;
use yurt::cache::balancer::{Balancer, Strategy};
use yurt::cache::cache::{CacheAgents, CacheLayer};
use yurt::cache::health::{HealthChecker, HealthConfig};
use yurt::cache::multiplex::{MultiplexLayer, PoolScopeResources};
use yurt::cache::server::{ProxyStack, Server, ServerConfig};
use yurt::cache::store::{RedbStore, StoreConfig};
use yurt::cache::upstream::{UpstreamClient, UpstreamConfig};
use yurt_testkit::TestApiServer;

const OBJECTS: usize = 1_000;
const CHURN: usize = 200;
const NS: &str = "bench";
const BOUND: Duration = Duration::from_secs(120);
const NODE: &str = "edge-1";
const SVC_PATH: &str = "/api/v1/services";
const SLICE_PATH: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// Annotation carrying the write time (nanoseconds since the bench's epoch).
const STAMP: &str = "bench/t";
/// The stamp objects are created with (same width as a real one; not a latency sample).
const UNSTAMPED: &str = "-0000000000000000000";

fn client(url: &str, user_agent: &'static str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(user_agent),
    ));
    kube::Client::try_from(config).expect("client")
}

/// One client's watch: events counted, latencies recorded.
#[derive(Default)]
struct Seen {
    events: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

/// A hub (with or without the multiplexer) and its clients' watches.
struct Hub {
    proxy: Server,
    checker: HealthChecker,
    store: RedbStore,
    multiplex: Option<MultiplexLayer>,
    _dir: tempfile::TempDir,
    url: String,
}

async fn start_hub(api: &TestApiServer, multiplexed: bool) -> Hub {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_async(StoreConfig::new(dir.path().join("cache.redb")))
        .await
        .expect("store");
    let upstream = UpstreamClient::new(UpstreamConfig::new(Vec::new())).expect("client");
    let checker = HealthChecker::spawn(
        upstream.clone(),
        vec![api.url().parse().expect("uri")],
        HealthConfig::readyz().interval(Duration::from_secs(3600)),
    );
    tokio::time::timeout(BOUND, checker.subscribe().wait_for(|s| s.any_healthy()))
        .await
        .expect("healthy in time")
        .expect("checker");
    let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults(NODE));
    let cache = CacheLayer::new(store.clone(), agents);
    let balancer = Balancer::new(upstream, checker.subscribe(), Strategy::RoundRobin);
    let multiplex = multiplexed.then(|| MultiplexLayer::new(NODE, PoolScopeResources::default()));
    let stack = ProxyStack::with_multiplexer(
        balancer,
        multiplex.clone(),
        None,
        Some(cache),
        ProxyMetrics::new(),
    );
    let proxy = Server::spawn(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        stack,
        ServerConfig::default(),
    )
    .expect("serve");
    Hub {
        url: format!("http://{}", proxy.local_addr()),
        proxy,
        checker,
        store,
        multiplex,
        _dir: dir,
    }
}

impl Hub {
    async fn shutdown(self) {
        self.proxy.shutdown().await;
        if let Some(m) = &self.multiplex {
            m.shutdown();
        }
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Lists `path` through `client` (retrying while the multiplexer answers 429), returning the
/// list's resourceVersion.
async fn list_rv(client: &kube::Client, path: &str) -> String {
    let deadline = Instant::now() + BOUND;
    loop {
        let result = if path == SVC_PATH {
            Api::<Service>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| l.metadata.resource_version.unwrap_or_default())
        } else {
            Api::<EndpointSlice>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| l.metadata.resource_version.unwrap_or_default())
        };
        match result {
            Ok(rv) => return rv,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("list {path}: {e}"),
        }
    }
}

/// Starts a client's list+watch of `path`; the watch runs in a task reading events into `seen`.
async fn start_watcher(
    client: kube::Client,
    path: &'static str,
    epoch: Instant,
    seen: Arc<Seen>,
) -> tokio::task::JoinHandle<()> {
    let rv = list_rv(&client, path).await;
    let req = http::Request::get(format!(
        "{path}?watch=1&resourceVersion={rv}&timeoutSeconds=3600"
    ))
    .body(Vec::new())
    .expect("request");
    let stream = client.request_stream(req).await.expect("watch");
    let boxed: Box<dyn futures::AsyncBufRead + Send + Unpin> = Box::new(stream);
    let mut lines = boxed.lines();
    tokio::spawn(async move {
        while let Some(Ok(line)) = lines.next().await {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let stamp = ev["object"]["metadata"]["annotations"][STAMP]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(t) = stamp {
                let now = epoch.elapsed();
                let latency = now.saturating_sub(Duration::from_nanos(t));
                seen.latencies.lock().expect("lock").push(latency);
            }
            seen.events.fetch_add(1, Ordering::Release);
        }
    })
}

/// Updates object `i` of `path` on the apiserver, stamping the write time.
async fn touch(api: &kube::Client, path: &str, i: usize, epoch: Instant) {
    // Fixed width, so objects keep their size whatever the stamp (lists compare fairly).
    let stamp = format!("{:020}", epoch.elapsed().as_nanos());
    let patch = serde_json::json!({"metadata": {"annotations": {STAMP: stamp}}});
    let name = format!("o-{i}");
    if path == SVC_PATH {
        Api::<Service>::namespaced(api.clone(), NS)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch service");
    } else {
        Api::<EndpointSlice>::namespaced(api.clone(), NS)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch endpointslice");
    }
}

/// Waits until every watcher has seen at least `want` events.
async fn wait_all(seen: &[Arc<Seen>], want: &[u64]) {
    tokio::time::timeout(BOUND, async {
        while seen
            .iter()
            .zip(want)
            .any(|(s, w)| s.events.load(Ordering::Acquire) < *w)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("every watcher got the events in time");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

struct Row {
    mode: &'static str,
    n: usize,
    upstream_bytes: u64,
    upstream_watches: usize,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let epoch = Instant::now();
    let api = rt.block_on(async {
        let api = TestApiServer::builder()
            .bookmark_interval(Duration::from_secs(3600))
            .history_limit(100_000)
            .start()
            .await
            .expect("apiserver");
        api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS}}))
            .await
            .expect("namespace");
        for i in 0..OBJECTS {
            api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("o-{i}"), "namespace": NS, "labels": {"app": format!("a{i}")},
                    "annotations": {STAMP: UNSTAMPED}},
                "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": format!("a{i}")}}}))
                .await
                .expect("service");
            api.create_object(serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("o-{i}"), "namespace": NS,
                    "labels": {"kubernetes.io/service-name": format!("o-{i}")},
                    "annotations": {STAMP: UNSTAMPED}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [format!("10.{}.{}.1", i / 250, i % 250)], "conditions": {"ready": true}}],
                "ports": [{"port": 80, "protocol": "TCP"}]}))
                .await
                .expect("endpointslice");
        }
        api
    });
    // kube clients spawn their buffer task: made on the runtime.
    let direct = rt.block_on(async { client(&api.url(), "bench-writer") });

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut rows = Vec::new();
    for multiplexed in [false, true] {
        let mode = if multiplexed {
            "multiplexer"
        } else {
            "proxy only"
        };
        for n in [1usize, 3, 10] {
            let (hub, tasks, seen) = rt.block_on(async {
                let hub = start_hub(&api, multiplexed).await;
                api.reset_traffic();
                let mut tasks = Vec::new();
                let mut seen = Vec::new();
                for path in [SVC_PATH, SLICE_PATH] {
                    for _ in 0..n {
                        let s = Arc::new(Seen::default());
                        tasks.push(
                            start_watcher(
                                client(&hub.url, "kube-proxy/v1.36.0"),
                                path,
                                epoch,
                                s.clone(),
                            )
                            .await,
                        );
                        seen.push(s);
                    }
                }
                (hub, tasks, seen)
            });
            // Churn: CHURN updates of each resource, each reaching all 2N watchers.
            rt.block_on(async {
                let base: Vec<u64> = seen
                    .iter()
                    .map(|s| s.events.load(Ordering::Acquire))
                    .collect();
                for i in 0..CHURN {
                    touch(&direct, SVC_PATH, i, epoch).await;
                    touch(&direct, SLICE_PATH, i, epoch).await;
                }
                let want: Vec<u64> = base.iter().map(|b| b + CHURN as u64).collect();
                wait_all(&seen, &want).await;
            });
            let traffic = api.traffic();
            // The hub's lists and watches (not the bench's own writes).
            let upstream_bytes = traffic
                .records
                .iter()
                .filter(|r| r.verb == "list" || r.verb == "watch")
                .map(|r| r.response_bytes)
                .sum();
            let upstream_watches = traffic.count_verb("watch");
            let mut lat: Vec<Duration> = seen
                .iter()
                .flat_map(|s| s.latencies.lock().expect("lock").clone())
                .collect();
            lat.sort();
            rows.push(Row {
                mode,
                n,
                upstream_bytes,
                upstream_watches,
                p50: percentile(&lat, 0.5),
                p99: percentile(&lat, 0.99),
            });

            // Criterion: one service update until all N service watchers have it.
            let svc_seen: Vec<Arc<Seen>> = seen[..n].to_vec();
            let mut next = CHURN;
            criterion.bench_function(&format!("fanout/{mode}/N={n}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let want: Vec<u64> = svc_seen
                                .iter()
                                .map(|s| s.events.load(Ordering::Acquire) + 1)
                                .collect();
                            touch(&direct, SVC_PATH, next % OBJECTS, epoch).await;
                            next += 1;
                            wait_all(&svc_seen, &want).await;
                        }
                        start.elapsed()
                    })
                })
            });
            rt.block_on(async {
                for t in tasks {
                    t.abort();
                }
                hub.shutdown().await;
            });
        }
    }
    criterion.final_summary();

    println!();
    println!(
        "traffic_reuse: {OBJECTS} services + {OBJECTS} endpointslices, N clients list+watch both, {CHURN} updates of each"
    );
    println!(
        "{:<12} {:>3} {:>16} {:>9} {:>14} {:>12} {:>12}",
        "mode", "N", "upstream bytes", "watches", "without/with", "fanout p50", "fanout p99"
    );
    for r in &rows {
        let ratio = if r.mode == "multiplexer" {
            rows.iter()
                .find(|o| o.mode != "multiplexer" && o.n == r.n)
                .map(|o| {
                    format!(
                        "{:.2}x",
                        o.upstream_bytes as f64 / r.upstream_bytes.max(1) as f64
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        println!(
            "{:<12} {:>3} {:>16} {:>9} {:>14} {:>12?} {:>12?}",
            r.mode, r.n, r.upstream_bytes, r.upstream_watches, ratio, r.p50, r.p99
        );
    }
    drop(api);
}
