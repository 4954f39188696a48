//! The hub serving a node from its cache with every apiserver unreachable: LIST of 1,000 and
//! 10,000 pods (whole scope, with a label selector, with kubelet's `spec.nodeName` field
//! selector), a GET, and the time from starting the hub on a store holding 10,000 pods to the
//! first list it serves.
//!
//! The store is filled the way the tee fills it (one list replace per scope). The hub
//! ([`EdgeHub`]) points at a closed port, so its first probe fails and it serves locally; the
//! client is kube-rs identifying as kubelet, reading each body whole over loopback. As a
//! baseline measured in the same run, the same 10,000-pod list is also fetched from a test
//! apiserver directly (online, in memory). The summary prints each mean, the ratio to the
//! baseline, and the targets (offline LIST 10k <= 30 ms, start to first list <=
//! 100 ms).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::Criterion;
use yurt::cache::health::HealthConfig;
use yurt::cache::hub::{EdgeHub, EdgeHubConfig};
use yurt::cache::store::{Gvr, ListMeta, ListScope, Object, RedbStore, Store, StoreConfig};
use yurt::cache::upstream::{UpstreamClient, UpstreamConfig};
use yurt_testkit::TestApiServer;

const NODE: &str = "edge-1";
const BOUND: Duration = Duration::from_secs(60);
const SIZES: [(&str, usize); 2] = [("n1k", 1_000), ("n10k", 10_000)];

type Timings = RefCell<BTreeMap<String, (Duration, u64)>>;

fn pod(ns: &str, i: usize, rv: u64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": ns,
            "resourceVersion": rv.to_string(), "uid": format!("uid-{ns}-{i}"),
            "labels": {"app": if i.is_multiple_of(2) { "a" } else { "b" }, "tier": "web"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "registry.example/app:1.2.3",
            "ports": [{"containerPort": 8080}], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250),
            "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn client(url: &str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("kubelet/v1.36.0 (linux/amd64)"),
    ));
    kube::Client::try_from(config).expect("client")
}

async fn read(client: &kube::Client, uri: &str) -> usize {
    let req = http::Request::get(uri).body(Vec::new()).expect("request");
    tokio::time::timeout(BOUND, client.request_text(req))
        .await
        .expect("answer in time")
        .expect("200")
        .len()
}

fn hub_config(dir: &std::path::Path) -> EdgeHubConfig {
    // Port 1 on loopback refuses connections: the hub is offline from its first probe.
    let mut config = EdgeHubConfig::new(
        NODE,
        vec!["https://127.0.0.1:1".parse().expect("uri")],
        dir.join("cache.redb"),
    );
    config.proxy_addr = "127.0.0.1:0".parse().expect("addr");
    config.admin_addr = "127.0.0.1:0".parse().expect("addr");
    config.health = HealthConfig::readyz().interval(Duration::from_secs(3600));
    config.kubelet_grace = None;
    config
}

fn upstream() -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig::new(Vec::new())).expect("client")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let timings: Timings = RefCell::new(BTreeMap::new());
    let (hub, hub_client, api, direct) = rt.block_on(async {
        // The store, as the tee leaves it after kubelet listed two namespaces.
        let store = RedbStore::open_async(StoreConfig::new(dir.path().join("cache.redb")))
            .await
            .expect("store");
        let gvr = Gvr::new("", "v1", "pods");
        let mut rv = 100;
        for (ns, n) in SIZES {
            let items: Vec<Object> = (0..n)
                .map(|i| {
                    rv += 1;
                    Object::from_value(&pod(ns, i, rv)).expect("pod")
                })
                .collect();
            let scope = ListScope::parse("kubelet", &gvr, ns, "", "").expect("scope");
            let meta = ListMeta {
                resource_version: rv.to_string(),
                kind: "PodList".into(),
                api_version: "v1".into(),
                completed_at_ms: 0,
            };
            store
                .replace_list(&scope, meta, items)
                .await
                .expect("replace");
        }
        store.shutdown().await;
        drop(store);
        let hub = EdgeHub::start(hub_config(dir.path()), upstream())
            .await
            .expect("hub");
        let mut health = hub.health();
        health
            .wait_for(|h| h.round > 0 && !h.any_healthy())
            .await
            .expect("probed");
        let hub_client = client(&format!("http://{}", hub.proxy_addr()));
        // The baseline: the same 10k pods from an apiserver, online.
        let api = TestApiServer::start().await.expect("apiserver");
        api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n10k"}}))
            .await
            .expect("namespace");
        for i in 0..10_000 {
            let mut p = pod("n10k", i, 0);
            p["metadata"]
                .as_object_mut()
                .expect("meta")
                .remove("resourceVersion");
            api.create_object(p).await.expect("pod");
        }
        let direct = client(&api.url());
        (hub, hub_client, api, direct)
    });

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("hub_offline");
    g.sample_size(20);
    let cases: Vec<(&str, &kube::Client, String)> = vec![
        (
            "LIST 1k offline",
            &hub_client,
            "/api/v1/namespaces/n1k/pods".into(),
        ),
        (
            "LIST 10k offline",
            &hub_client,
            "/api/v1/namespaces/n10k/pods".into(),
        ),
        (
            "LIST 10k offline, labelSelector app=a",
            &hub_client,
            "/api/v1/namespaces/n10k/pods?labelSelector=app%3Da".into(),
        ),
        (
            "LIST 10k offline, fieldSelector spec.nodeName",
            &hub_client,
            format!("/api/v1/namespaces/n10k/pods?fieldSelector=spec.nodeName%3D{NODE}"),
        ),
        (
            "GET offline",
            &hub_client,
            "/api/v1/namespaces/n10k/pods/pod-4242".into(),
        ),
        (
            "LIST 10k direct (baseline)",
            &direct,
            "/api/v1/namespaces/n10k/pods".into(),
        ),
    ];
    for (name, client, uri) in &cases {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert!(read(client, uri).await > 0);
                    }
                    let took = start.elapsed();
                    let mut t = timings.borrow_mut();
                    let e = t.entry((*name).to_owned()).or_default();
                    e.0 += took;
                    e.1 += iters;
                    took
                })
            })
        });
    }
    g.finish();

    // Start to first served list with 10k pods cached (store open with its integrity check,
    // listeners, first probe, first list), repeated.
    let restarts = 10;
    let mut starts = Vec::new();
    rt.block_on(async {
        hub.shutdown().await;
        for _ in 0..restarts {
            let t = Instant::now();
            let hub = EdgeHub::start(hub_config(dir.path()), upstream())
                .await
                .expect("hub");
            let c = client(&format!("http://{}", hub.proxy_addr()));
            let n = read(&c, "/api/v1/namespaces/n10k/pods").await;
            assert!(n > 1_000_000, "a 10k list, got {n} bytes");
            starts.push(t.elapsed());
            hub.shutdown().await;
        }
    });
    c.final_summary();

    let t = timings.borrow();
    let mean = |k: &str| {
        t.get(k)
            .map(|(d, n)| d.as_secs_f64() * 1000.0 / *n as f64)
            .unwrap_or(f64::NAN)
    };
    let base = mean("LIST 10k direct (baseline)");
    println!("\nhub_offline summary (means over this run):");
    for (name, _, _) in &cases {
        let m = mean(name);
        println!(
            "  {name:<48} {m:>9.3} ms   {:>5.2}x the direct 10k list",
            m / base
        );
    }
    starts.sort();
    let median = starts[starts.len() / 2];
    println!(
        "  start to first served 10k list (median of {restarts}) {:>7.1} ms   (min {:.1}, max {:.1})",
        median.as_secs_f64() * 1000.0,
        starts[0].as_secs_f64() * 1000.0,
        starts[starts.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "  targets: offline LIST 10k <= 30 ms (measured {:.1} ms); start to first list <= 100 ms (measured {:.1} ms)",
        mean("LIST 10k offline"),
        median.as_secs_f64() * 1000.0
    );
    drop(api);
}
