//! What the hub adds to a client's requests: GET of one object, LIST of 1,000 and 10,000
//! ConfigMaps (unchanged between iterations, and with one ConfigMap modified before each
//! iteration, `_changing`), and watch-event latency (a write made directly on the apiserver until the event
//! reaches a client's open watch), each direct to a test apiserver and through the hub in the
//! same process (listener, request info, metrics, cache layer, balancer, upstream client).
//!
//! The hub client identifies as kubelet, a cached component, so every LIST through the hub is
//! also teed into the redb cache and every watch event written to it: this is the hub's real
//! work, not a pass-through. GET and the unchanged LISTs are also measured through the hub as
//! a component it does not cache (`hub_uncached`): the proxy alone, the floor of the `hub` path. Client, hub and apiserver share the machine's cores and one Tokio
//! runtime. Besides criterion's report, a summary prints the mean per operation of each path
//! and its ratio to `direct`, from this run's own timings.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::{AsyncBufReadExt as _, StreamExt as _};
use tokio::net::TcpListener;
use yurt::cache::admin::ProxyMetrics;
use yurt::cache::balancer::{Balancer, Strategy};
use yurt::cache::cache::{CacheAgents, CacheLayer};
use yurt::cache::health::{HealthChecker, HealthConfig};
use yurt::cache::server::{ProxyStack, Server, ServerConfig};
use yurt::cache::store::{RedbStore, StoreConfig};
use yurt::cache::upstream::{UpstreamClient, UpstreamConfig};
use yurt_testkit::TestApiServer;

/// Namespaces holding 1,000 and 10,000 ConfigMaps; watches look at `watched`.
const LISTS: [(&str, usize); 2] = [("n1k", 1_000), ("n10k", 10_000)];
const WATCHED: &str = "watched";
const BOUND: Duration = Duration::from_secs(60);

/// Total time, operations and process CPU time per (benchmark, path).
type Timings = BTreeMap<(String, &'static str), (Duration, u64, Duration)>;

/// CPU time (user + system, every thread) this process has used so far, from
/// `/proc/self/stat` (in USER_HZ ticks, 100 per second on Linux; zero where it is missing).
/// Unlike wall time it hardly moves when other processes compete for the cores.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th and stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

type Lines = futures::io::Lines<Box<dyn futures::AsyncBufRead + Send + Unpin>>;

/// Fields drop in order: the runtime last, after everything that runs on it.
struct Rig {
    api: TestApiServer,
    direct: kube::Client,
    hub: kube::Client,
    /// Through the hub as a component it does not cache: the proxy alone, without the tee.
    hub_uncached: kube::Client,
    _proxy: Server,
    _checker: HealthChecker,
    store: RedbStore,
    _dir: tempfile::TempDir,
    /// The open watch on `watched` of the path being measured (direct, hub); the other one is
    /// closed, since a watch nobody reads fills up and the apiserver ends it.
    watches: tokio::sync::Mutex<[Option<Lines>; 2]>,
    next: RefCell<u64>,
    /// Total time and operations per (benchmark, path), for the summary.
    timings: RefCell<Timings>,
    rt: tokio::runtime::Runtime,
}

fn client(url: &str, user_agent: &'static str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(user_agent),
    ));
    kube::Client::try_from(config).expect("client")
}

async fn watch(client: &kube::Client, rv: u64) -> Lines {
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{WATCHED}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=3600"
    ))
    .body(Vec::new())
    .expect("request");
    let stream = client.request_stream(req).await.expect("watch");
    let boxed: Box<dyn futures::AsyncBufRead + Send + Unpin> = Box::new(stream);
    boxed.lines()
}

impl Rig {
    fn new() -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (api, direct, hub, hub_uncached, proxy, checker, store) = rt.block_on(async {
            let api = TestApiServer::builder()
                .bookmark_interval(Duration::from_secs(3600))
                .start()
                .await
                .expect("apiserver");
            for ns in LISTS.iter().map(|(ns, _)| *ns).chain([WATCHED]) {
                api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns}}))
                    .await
                    .expect("namespace");
            }
            for (ns, n) in LISTS {
                for i in 0..n {
                    api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i}"), "namespace": ns,
                            "labels": {"app": "bench"}},
                        "data": {"key": "a value of some forty bytes, like a flag."}}))
                        .await
                        .expect("configmap");
                }
            }
            let store = RedbStore::open_async(StoreConfig::new(dir.path().join("cache.redb")))
                .await
                .expect("store");
            let upstream = UpstreamClient::new(UpstreamConfig::new(Vec::new())).expect("client");
            let checker = HealthChecker::spawn(
                upstream.clone(),
                vec![api.url().parse().expect("uri")],
                HealthConfig::readyz(),
            );
            let mut health = checker.subscribe();
            tokio::time::timeout(BOUND, health.wait_for(|s| s.any_healthy()))
                .await
                .expect("healthy in time")
                .expect("checker");
            let (_tx, agents) = tokio::sync::watch::channel(CacheAgents::defaults("edge-1"));
            let cache = CacheLayer::new(store.clone(), agents);
            let balancer = Balancer::new(upstream, checker.subscribe(), Strategy::RoundRobin);
            let stack = ProxyStack::new(balancer, Some(cache), ProxyMetrics::new());
            let proxy = Server::spawn(
                TcpListener::bind("127.0.0.1:0").await.expect("bind"),
                stack,
                ServerConfig::default(),
            )
            .expect("serve");
            let direct = client(&api.url(), "kubelet/v1.36.0 (linux/amd64)");
            let hub = client(
                &format!("http://{}", proxy.local_addr()),
                "kubelet/v1.36.0 (linux/amd64)",
            );
            let hub_uncached = client(
                &format!("http://{}", proxy.local_addr()),
                "yurt-bench-uncached/v0.0.0",
            );
            (api, direct, hub, hub_uncached, proxy, checker, store)
        });
        Rig {
            api,
            direct,
            hub,
            hub_uncached,
            _proxy: proxy,
            _checker: checker,
            store,
            _dir: dir,
            watches: tokio::sync::Mutex::new([None, None]),
            next: RefCell::new(0),
            timings: RefCell::new(BTreeMap::new()),
            rt,
        }
    }

    fn client(&self, path: &'static str) -> &kube::Client {
        match path {
            "direct" => &self.direct,
            "hub_uncached" => &self.hub_uncached,
            _ => &self.hub,
        }
    }

    /// One GET or LIST, its whole body read.
    async fn get(&self, path: &'static str, uri: &str) -> usize {
        let req = http::Request::get(uri).body(Vec::new()).expect("request");
        tokio::time::timeout(BOUND, self.client(path).request_text(req))
            .await
            .expect("answer in time")
            .expect("200")
            .len()
    }

    /// Creates a ConfigMap directly on the apiserver and times until the watch of `path` has
    /// its event (events of earlier writes still in flight are skipped).
    async fn watch_latency(&self, path: &'static str) -> Duration {
        let name = {
            let mut n = self.next.borrow_mut();
            *n += 1;
            format!("w-{path}-{n}")
        };
        let needle = format!("\"name\":\"{name}\"");
        let mut watches = self.watches.lock().await;
        let i = usize::from(path == "hub");
        watches[1 - i] = None;
        if watches[i].is_none() {
            watches[i] = Some(watch(self.client(path), self.api.resource_version()).await);
        }
        let lines = watches[i].as_mut().expect("just opened");
        let start = Instant::now();
        self.api
            .create_object(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": WATCHED}}))
            .await
            .expect("create");
        tokio::time::timeout(BOUND, async {
            while let Some(line) = lines.next().await {
                if line.expect("watch line").contains(&needle) {
                    return;
                }
            }
            panic!("watch ended");
        })
        .await
        .expect("event in time");
        start.elapsed()
    }

    /// Changes one ConfigMap of `ns` (holding `n` of them) directly on the apiserver.
    async fn modify_one(&self, ns: &str, n: usize) {
        let seq = {
            let mut next = self.next.borrow_mut();
            *next += 1;
            *next
        };
        let name = format!("cm-{}", seq as usize % n);
        let patch = serde_json::json!({"data": {"changed": seq.to_string()}});
        let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/configmaps/{name}"))
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(serde_json::to_vec(&patch).expect("json"))
            .expect("request");
        tokio::time::timeout(BOUND, self.direct.request_text(req))
            .await
            .expect("patched in time")
            .expect("patch");
    }

    fn record(&self, bench: &str, path: &'static str, took: Duration, ops: u64, cpu: Duration) {
        let mut t = self.timings.borrow_mut();
        let e = t.entry((bench.to_owned(), path)).or_default();
        e.0 += took;
        e.1 += ops;
        e.2 += cpu;
    }
}

fn benches(c: &mut Criterion, rig: &Rig) {
    let reads = [
        (
            "get_one".to_owned(),
            "/api/v1/namespaces/n1k/configmaps/cm-7".to_owned(),
        ),
        (
            "list_1k".to_owned(),
            "/api/v1/namespaces/n1k/configmaps".to_owned(),
        ),
        (
            "list_10k".to_owned(),
            "/api/v1/namespaces/n10k/configmaps".to_owned(),
        ),
    ];
    for (bench, uri) in &reads {
        let mut group = c.benchmark_group(format!("hub_proxy/{bench}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for path in ["direct", "hub", "hub_uncached"] {
            group.bench_function(path, |b| {
                b.iter_custom(|iters| {
                    let cpu = cpu_time();
                    let took = rig.rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            std::hint::black_box(rig.get(path, uri).await);
                        }
                        start.elapsed()
                    });
                    rig.record(bench, path, took, iters, cpu_time() - cpu);
                    took
                })
            });
        }
        group.finish();
    }
    // The same lists while the collection changes: before each (untimed) iteration one
    // ConfigMap of the namespace is modified directly on the apiserver, so every list through
    // the hub has one changed item for the cache to rewrite (the lists above are unchanged
    // between iterations after the first, the cache's cheapest case).
    for (bench, ns) in [("list_1k_changing", "n1k"), ("list_10k_changing", "n10k")] {
        let uri = format!("/api/v1/namespaces/{ns}/configmaps");
        let n = LISTS.iter().find(|(n, _)| *n == ns).map_or(1, |(_, n)| *n);
        let mut group = c.benchmark_group(format!("hub_proxy/{bench}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for path in ["direct", "hub"] {
            group.bench_function(path, |b| {
                b.iter_custom(|iters| {
                    let cpu = cpu_time();
                    let took = rig.rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            rig.modify_one(ns, n).await;
                            let start = Instant::now();
                            std::hint::black_box(rig.get(path, &uri).await);
                            total += start.elapsed();
                        }
                        total
                    });
                    rig.record(bench, path, took, iters, cpu_time() - cpu);
                    took
                })
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("hub_proxy/watch_event");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for path in ["direct", "hub"] {
        group.bench_function(path, |b| {
            b.iter_custom(|iters| {
                let cpu = cpu_time();
                let took = rig.rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += rig.watch_latency(path).await;
                    }
                    total
                });
                rig.record("watch_event", path, took, iters, cpu_time() - cpu);
                took
            })
        });
    }
    group.finish();
}

fn summary(rig: &Rig) {
    let t = rig.timings.borrow();
    println!(
        "\nhub_proxy summary (mean per operation over every iteration criterion ran, warm-up included):"
    );
    println!(
        "wall: time the client waited; cpu: CPU time of the whole process (client, hub, tee, \
         store writer, apiserver) per operation, `_changing` including the untimed modification"
    );
    println!(
        "{:<18} {:>11} {:>11} {:>7} {:>11} {:>7} | {:>9} {:>9} {:>7} {:>9} {:>7}",
        "operation",
        "direct",
        "hub",
        "ratio",
        "uncached",
        "ratio",
        "cpu dir.",
        "cpu hub",
        "ratio",
        "cpu unc.",
        "ratio"
    );
    for bench in [
        "get_one",
        "list_1k",
        "list_10k",
        "list_1k_changing",
        "list_10k_changing",
        "watch_event",
    ] {
        let get = |path: &'static str| t.get(&(bench.to_owned(), path)).filter(|e| e.1 > 0);
        let wall = |path| get(path).map(|e| e.0.as_secs_f64() / e.1 as f64);
        let cpu = |path| get(path).map(|e| e.2.as_secs_f64() / e.1 as f64);
        let (Some(d), Some(h), Some(cd), Some(ch)) =
            (wall("direct"), wall("hub"), cpu("direct"), cpu("hub"))
        else {
            println!("{bench:<18} (not measured: filtered out)");
            continue;
        };
        let us = |v: f64| format!("{:.1} µs", v * 1e6);
        let (u, cu) = match (wall("hub_uncached"), cpu("hub_uncached")) {
            (Some(u), Some(cu)) => (
                format!("{:>11} {:>7.2}", us(u), u / d),
                format!("{:>9} {:>7.2}", us(cu), cu / cd.max(f64::MIN_POSITIVE)),
            ),
            _ => (
                format!("{:>11} {:>7}", "-", "-"),
                format!("{:>9} {:>7}", "-", "-"),
            ),
        };
        println!(
            "{bench:<18} {:>11} {:>11} {:>7.2} {u} | {:>9} {:>9} {:>7.2} {cu}",
            us(d),
            us(h),
            h / d,
            us(cd),
            us(ch),
            ch / cd.max(f64::MIN_POSITIVE),
        );
    }
}

fn main() {
    let rig = Rig::new();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rig);
    c.final_summary();
    summary(&rig);
    rig.rt.block_on(rig.store.clone().shutdown());
}
