//! yurt-manager at scale: 1,000 nodes in 50 NodePools against the test apiserver, then three
//! kinds of 100 node changes. A measured program (not criterion): it prints one table.
//!
//! The manager runs every default controller (nodepool, node-bucket, csr-approver, service
//! topology) in a child process (this binary re-executed), so its resident memory is its own;
//! it identifies as `yurt-manager` and the apiserver's traffic accounting separates its
//! requests from the bench's. Reported:
//!
//! - **converge**: from starting the manager until every pool's status, every node's pool
//!   attributes and every pool's NodeBuckets are right;
//! - per scenario (100 node changes each: a node moving to another pool; a label of the node's
//!   own; a pool label change reaching 20 nodes, five times): time until converged, and per node
//!   change the manager's reconciles and apiserver writes (create/update/patch/delete), the
//!   writes split into those that succeeded and those refused with 409 Conflict (a write based
//!   on a stale resourceVersion);
//! - **RSS**: the manager's VmRSS after each phase (from `/proc/<pid>/status`), after start-up
//!   also split into anonymous memory (heap, stacks) and mapped files (program text).
//!
//! Run: `cargo bench --bench pool_scale`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use yurt::core::crd::{NodeBucket, NodePool};
use yurt::pool::probes::{self, ProbeState};
use yurt::pool::{Manager, install_crds};
use yurt_testkit::TestApiServer;

const POOLS: usize = 50;
const PER_POOL: usize = 20;
const CHANGES: usize = 100;
const BOUND: Duration = Duration::from_secs(300);
const CHILD_ENV: &str = "POOL_SCALE_MANAGER_URL";
const POOL_LABEL: &str = "apps.openyurt.io/nodepool";

fn client(url: &str, user_agent: &'static str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(user_agent),
    ));
    kube::Client::try_from(config).expect("client")
}

/// Child mode: run the manager until stdin closes.
fn child(url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let manager = Manager::builder(client(url, "yurt-manager"))
            .build()
            .expect("manager");
        let state = ProbeState {
            metrics: manager.context().metrics.clone(),
            phase: manager.phase(),
        };
        let (addr, serve) = probes::bind("127.0.0.1:0".parse().unwrap(), state, true)
            .await
            .expect("metrics listener");
        println!("METRICS {addr}");
        let _ = std::io::stdout().flush();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = tx.send(());
        });
        tokio::select! {
            r = manager.run(async { let _ = rx.await; }) => r.expect("manager runs"),
            () = serve => {}
        }
    });
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory line (such as `RssAnon:`) in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Total reconciles the manager reports on `/metrics`.
fn reconciles(metrics_addr: &str) -> u64 {
    let mut stream = std::net::TcpStream::connect(metrics_addr).expect("metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    raw.lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// [`reconciles`] off the async threads.
async fn reconciles_async(metrics_addr: &str) -> u64 {
    let addr = metrics_addr.to_owned();
    tokio::task::spawn_blocking(move || reconciles(&addr))
        .await
        .expect("metrics read")
}

/// Manager write requests seen by the apiserver since the last traffic reset, split into those
/// that succeeded, those refused with 409 Conflict (a stale resourceVersion) and any other
/// failure.
#[derive(Clone, Copy, Debug, Default)]
struct Writes {
    ok: usize,
    conflicts: usize,
    failed: usize,
}

fn manager_writes(api: &TestApiServer) -> Writes {
    let mut w = Writes::default();
    for r in api
        .traffic()
        .records
        .iter()
        .filter(|r| r.user_agent.starts_with("yurt-manager"))
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
    {
        match r.status {
            200..=299 => w.ok += 1,
            409 => w.conflicts += 1,
            _ => w.failed += 1,
        }
    }
    w
}

/// Whether every pool, node and bucket matches `membership` (node -> pool) and `zones`
/// (pool -> its `zone` label).
async fn converged(
    c: &kube::Client,
    membership: &BTreeMap<String, String>,
    zones: &BTreeMap<String, String>,
) -> bool {
    let pools: Api<NodePool> = Api::all(c.clone());
    let mut want: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, pool) in membership {
        want.entry(pool.as_str()).or_default().push(node.as_str());
    }
    let Ok(list) = pools.list(&ListParams::default()).await else {
        return false;
    };
    for p in &list.items {
        let name = p.metadata.name.as_deref().unwrap_or("");
        let status = p.status.clone().unwrap_or_default();
        let expect = want.get(name).cloned().unwrap_or_default();
        if status.nodes != expect || status.ready_node_num != Some(expect.len() as i32) {
            return false;
        }
    }
    let buckets: Api<NodeBucket> = Api::all(c.clone());
    let Ok(bs) = buckets.list(&ListParams::default()).await else {
        return false;
    };
    let mut in_buckets: BTreeMap<String, String> = BTreeMap::new();
    for b in &bs.items {
        let pool = b
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("openyurt.io/pool-name"))
            .cloned()
            .unwrap_or_default();
        for n in b.node_names() {
            if in_buckets.insert(n.to_owned(), pool.clone()).is_some() {
                return false;
            }
        }
    }
    if &in_buckets != membership {
        return false;
    }
    let nodes: Api<Node> = Api::all(c.clone());
    let Ok(ns) = nodes.list(&ListParams::default()).await else {
        return false;
    };
    ns.items.iter().all(|n| {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let pool = labels.get(POOL_LABEL);
        pool.and_then(|p| zones.get(p)) == labels.get("zone")
    })
}

/// Waits until converged and the manager's reconcile count has stopped moving; returns the
/// time to convergence.
async fn settle(
    c: &kube::Client,
    metrics: &str,
    membership: &BTreeMap<String, String>,
    zones: &BTreeMap<String, String>,
    start: Instant,
) -> Duration {
    loop {
        assert!(start.elapsed() < BOUND, "did not converge");
        if converged(c, membership, zones).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let mut last = reconciles_async(metrics).await;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = reconciles_async(metrics).await;
        if now == last {
            return took;
        }
        last = now;
    }
}

struct Row {
    name: &'static str,
    took: Duration,
    reconciles: f64,
    writes: Writes,
    changes: usize,
    rss: f64,
}

fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        return child(&url);
    }
    // `cargo bench` passes `--bench`; a filter argument that does not match skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"pool_scale".contains(a.as_str()))
    {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let api = TestApiServer::builder()
        .history_limit(200_000)
        .watch_buffer(100_000)
        .start()
        .await
        .expect("apiserver");
    let c = client(&api.url(), "pool-scale-bench");
    install_crds(&c).await.expect("crds");
    let pools: Api<NodePool> = Api::all(c.clone());
    let nodes: Api<Node> = Api::all(c.clone());
    // CRDs are served once established.
    let t = Instant::now();
    while pools.list(&ListParams::default()).await.is_err() {
        assert!(t.elapsed() < BOUND);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut zones = BTreeMap::new();
    for p in 0..POOLS {
        let name = format!("pool-{p:02}");
        let pool: NodePool = serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
            "kind": "NodePool", "metadata": {"name": name}, "spec": {"labels": {"zone": format!("z{p:02}")}}}))
        .unwrap();
        pools
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
        zones.insert(name, format!("z{p:02}"));
    }
    let mut membership = BTreeMap::new();
    for i in 0..POOLS * PER_POOL {
        membership.insert(format!("node-{i:04}"), format!("pool-{:02}", i % POOLS));
    }
    futures::stream::iter(membership.clone())
        .for_each_concurrent(16, |(name, pool)| {
            let nodes = nodes.clone();
            async move {
                let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
                    "labels": {POOL_LABEL: pool}}}))
                .unwrap();
                nodes
                    .create(&PostParams::default(), &node)
                    .await
                    .expect("node");
                let ready =
                    json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&ready))
                    .await
                    .expect("ready");
            }
        })
        .await;

    // Start the manager.
    api.reset_traffic();
    let start = Instant::now();
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, api.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("manager process");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("manager prints its metrics address");
        line
    })
    .await
    .expect("read");
    let metrics = line
        .trim()
        .strip_prefix("METRICS ")
        .expect("METRICS line")
        .to_owned();
    let took = settle(&c, &metrics, &membership, &zones, start).await;
    let initial_writes = manager_writes(&api);
    let initial_reconciles = reconciles_async(&metrics).await;
    let rss_initial = rss_mib(pid);
    // Heap and stacks versus mapped program text: the latter is most of a debug build's RSS.
    let (anon, file) = (status_mib(pid, "RssAnon:"), status_mib(pid, "RssFile:"));
    println!(
        "pool_scale: converge {} nodes in {POOLS} pools: {:.2} s, {initial_reconciles} reconciles, apiserver writes {} ok + {} conflicts (409) + {} other failures, RSS {rss_initial:.1} MiB ({anon:.1} anon + {file:.1} file)",
        POOLS * PER_POOL,
        took.as_secs_f64(),
        initial_writes.ok,
        initial_writes.conflicts,
        initial_writes.failed,
    );

    let mut rows = Vec::new();
    // 1. 100 nodes move to the next pool.
    api.reset_traffic();
    let before = reconciles_async(&metrics).await;
    let start = Instant::now();
    for k in 0..CHANGES {
        let node = format!("node-{:04}", k * 7 % (POOLS * PER_POOL));
        let to = format!("pool-{:02}", (k * 7 % POOLS + 1) % POOLS);
        nodes
            .patch(
                &node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {POOL_LABEL: to}}})),
            )
            .await
            .expect("move");
        membership.insert(node, to);
    }
    let took = settle(&c, &metrics, &membership, &zones, start).await;
    rows.push(Row {
        name: "node moves to another pool",
        took,
        reconciles: (reconciles_async(&metrics).await - before) as f64 / CHANGES as f64,
        writes: manager_writes(&api),
        changes: CHANGES,
        rss: rss_mib(pid),
    });

    // 2. 100 changes of a label of the node's own.
    api.reset_traffic();
    let before = reconciles_async(&metrics).await;
    let start = Instant::now();
    for k in 0..CHANGES {
        let node = format!("node-{:04}", k * 11 % (POOLS * PER_POOL));
        nodes
            .patch(
                &node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"bench/tick": k.to_string()}}})),
            )
            .await
            .expect("label");
    }
    let took = settle(&c, &metrics, &membership, &zones, start).await;
    rows.push(Row {
        name: "node's own label changes",
        took,
        reconciles: (reconciles_async(&metrics).await - before) as f64 / CHANGES as f64,
        writes: manager_writes(&api),
        changes: CHANGES,
        rss: rss_mib(pid),
    });

    // 3. Five pools change their `zone` label: 100 member-node changes.
    api.reset_traffic();
    let before = reconciles_async(&metrics).await;
    let start = Instant::now();
    let mut touched = 0;
    for p in 0..5 {
        let name = format!("pool-{p:02}");
        let zone = format!("z{p:02}-new");
        pools
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"labels": {"zone": zone}}})),
            )
            .await
            .expect("pool label");
        touched += membership.values().filter(|v| **v == name).count();
        zones.insert(name, zone);
    }
    let took = settle(&c, &metrics, &membership, &zones, start).await;
    rows.push(Row {
        name: "pool label change (per member)",
        took,
        reconciles: (reconciles_async(&metrics).await - before) as f64 / touched as f64,
        writes: manager_writes(&api),
        changes: touched,
        rss: rss_mib(pid),
    });

    println!(
        "pool_scale: {:<32} {:>9} {:>15} {:>11} {:>12} {:>9}",
        "scenario (100 node changes)",
        "converge",
        "reconciles/chg",
        "writes/chg",
        "409s/chg",
        "RSS MiB"
    );
    for r in &rows {
        let per = |n: usize| n as f64 / r.changes as f64;
        println!(
            "pool_scale: {:<32} {:>7.2} s {:>15.2} {:>11.2} {:>12.2} {:>9.1}",
            r.name,
            r.took.as_secs_f64(),
            r.reconciles,
            per(r.writes.ok),
            per(r.writes.conflicts),
            r.rss
        );
        if r.writes.failed > 0 {
            println!("pool_scale:   ({} other failed writes)", r.writes.failed);
        }
    }
    drop(child.stdin.take());
    let t = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.wait();
}
