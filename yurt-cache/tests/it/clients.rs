//! Real clients through the running hub, as kubelet talks to it: plain HTTP to the hub's
//! loopback listener, which proxies (request info, metrics, cache, balancer, upstream) to TLS
//! test apiservers with a client certificate for `system:node:edge-1` issued by their CA.
//!
//! kube-rs (get, list, watch, `kube::runtime::watcher` through a forced 410 re-list), kubectl
//! (get, apply, delete, `get -w`, logs, `get --raw`), a followed pod log, the Python kubernetes
//! client (list, watch), and two (plain-HTTP) apiservers with one going down mid-test. kubectl and the Python client are
//! external tools: missing, the test skips with a message, except in CI where it fails.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use yurt_cache::admin::ProxyMetrics;
use yurt_cache::balancer::{Balancer, Strategy};
use yurt_cache::cache::{CacheAgents, CacheLayer};
use yurt_cache::health::{HealthChecker, HealthConfig};
use yurt_cache::server::{ProxyStack, Server, ServerConfig};
use yurt_cache::store::{ListScope, RedbStore, Store};
use yurt_testkit::TestApiServer;

use crate::health::wait_for;
use crate::net::{WAIT, hub_client, plain_client, uri};
use crate::util::{open, pods};

const NODE: &str = "edge-1";
const KUBECTL: &str = "/usr/bin/kubectl";
const PYTHON: &str = "/usr/bin/python3";

/// The hub in front of `apis` (round-robin), caching the default agents plus `agents`.
struct Hub {
    url: String,
    store: RedbStore,
    proxy: Server,
    checker: HealthChecker,
    _dir: tempfile::TempDir,
}

impl Hub {
    async fn start(apis: &[&TestApiServer], agents: Option<&str>) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // TLS apiservers (one CA each): the node's client certificate from the first one's CA;
        // plain-HTTP ones (the two-apiserver test) need no identity.
        let client = if apis[0].url().starts_with("https") {
            hub_client(apis[0], &format!("system:node:{NODE}"), &["system:nodes"])
        } else {
            plain_client()
        };
        let servers = apis.iter().map(|a| uri(a)).collect::<Vec<_>>();
        let n = servers.len();
        let checker = HealthChecker::spawn(client.clone(), servers, HealthConfig::readyz());
        wait_for(&mut checker.subscribe(), |s| {
            (0..n).all(|i| s.servers.get(i).is_some_and(|h| h.healthy))
        })
        .await;
        let (_tx, rx) = watch::channel(CacheAgents::from_setting(agents, NODE));
        let cache = CacheLayer::new(store.clone(), rx);
        let balancer = Balancer::new(client, checker.subscribe(), Strategy::RoundRobin);
        let stack = ProxyStack::new(balancer, Some(cache), ProxyMetrics::new());
        let proxy = Server::spawn(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            stack,
            ServerConfig::default(),
        )
        .unwrap();
        Hub {
            url: format!("http://{}", proxy.local_addr()),
            store,
            proxy,
            checker,
            _dir: dir,
        }
    }

    /// A kube-rs client to the hub, identifying as kubelet (a cached component).
    fn kube(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("kubelet/v1.36.0 (linux/amd64)"),
        ));
        kube::Client::try_from(config).unwrap()
    }

    async fn shutdown(self) {
        self.proxy.shutdown().await;
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap()
}

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

/// `(name, resourceVersion)` of the pods in `default`, sorted.
fn name_rvs(items: impl IntoIterator<Item = Value>) -> Vec<(String, String)> {
    let mut v: Vec<_> = items
        .into_iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn direct_pods(api: &TestApiServer) -> Vec<(String, String)> {
    let list = Api::<Pod>::namespaced(api.client(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    name_rvs(
        list.items
            .into_iter()
            .map(|p| serde_json::to_value(p).unwrap()),
    )
}

async fn cached_pods(store: &RedbStore) -> Vec<(String, String)> {
    let scope = ListScope::parse("kubelet", &pods(), "default", "", "").unwrap();
    let list = store.list(&scope).await.unwrap();
    name_rvs(
        list.items
            .iter()
            .map(|o| serde_json::from_slice::<Value>(&o.json).unwrap()),
    )
}

/// Whether an external tool is usable; otherwise skips (fails in CI) with a message.
pub(crate) fn tool(path: &str, check: &[&str]) -> bool {
    let ok = Command::new(path)
        .args(check)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let what = format!("`{path} {}` does not run", check.join(" "));
        if std::env::var_os("CI").is_some() {
            panic!("{what}: required in CI");
        }
        // Directly to stderr: libtest captures `eprintln!`, and the skip must show.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "skipping: {what}");
    }
    ok
}

/// A TLS test apiserver holding node [`NODE`] and pod `default/web` bound to it, whose log
/// (served by the testkit's pod-log stub) is `log`.
async fn api_with_logging_pod(log: &str) -> TestApiServer {
    let api = TestApiServer::builder().tls().start().await.unwrap();
    api.create_object(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
        .await
        .unwrap();
    Api::<Pod>::namespaced(api.client(), "default")
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    api.set_pod_log("default", "web", log);
    api
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl pointed at the hub, with a private discovery cache and no kubeconfig.
struct Kubectl {
    hub: String,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(hub: &Hub) -> Option<Kubectl> {
        if !tool(KUBECTL, &["version", "--client"]) {
            return None;
        }
        Some(Kubectl {
            hub: hub.url.clone(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--server")
            .arg(&self.hub)
            .arg("--request-timeout=10s")
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("no-kubeconfig"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to completion on a blocking thread (the hub and apiserver keep running); asserts
    /// success and returns stdout.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = self.command(args);
        let out = bounded(
            "kubectl",
            tokio::task::spawn_blocking(move || cmd.output().unwrap()),
        )
        .await
        .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_gets_lists_and_watches_pods_through_the_hub() {
    let api = TestApiServer::builder()
        .tls()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let direct = Api::<Pod>::namespaced(api.client(), "default");
    for name in ["a", "b"] {
        direct
            .create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let hub = Hub::start(&[&api], None).await;
    let pods_api = Api::<Pod>::namespaced(hub.kube(), "default");

    let got = bounded("get", pods_api.get("a")).await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("a"));
    let list = bounded("list", pods_api.list(&ListParams::default()))
        .await
        .unwrap();
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut names: Vec<_> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);

    let mut stream = bounded(
        "watch",
        // Bookmarks are allowed by default.
        pods_api.watch(&WatchParams::default(), &rv),
    )
    .await
    .unwrap()
    .boxed();
    direct
        .create(&PostParams::default(), &pod("c"))
        .await
        .unwrap();
    let (mut added, mut bookmark) = (false, false);
    while !(added && bookmark) {
        match bounded("watch event", stream.try_next()).await.unwrap() {
            Some(WatchEvent::Added(p)) => {
                assert_eq!(p.metadata.name.as_deref(), Some("c"));
                added = true;
            }
            Some(WatchEvent::Bookmark(_)) => bookmark = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(stream);
    // kubelet is cached: the list and the watch event landed in the hub's store.
    let want = direct_pods(&api).await;
    assert_eq!(want.len(), 3);
    bounded("cached", async {
        while cached_pods(&hub.store).await != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_recovers_from_a_410_and_the_cache_matches_the_apiserver() {
    // Bookmarks are requested (the watcher's default) but rare, so none moves the watcher's
    // resourceVersion past the compaction below: its re-watch is then certainly too old.
    let api = TestApiServer::builder()
        .tls()
        .bookmark_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let direct = Api::<Pod>::namespaced(api.client(), "default");
    for name in ["a", "b", "c"] {
        direct
            .create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let hub = Hub::start(&[&api], None).await;
    let pods_api = Api::<Pod>::namespaced(hub.kube(), "default");
    let mut events = watcher(pods_api, watcher::Config::default()).boxed();
    let mut next = async || {
        bounded("watcher event", events.next())
            .await
            .expect("watcher stream open")
    };
    while !matches!(next().await, Ok(watcher::Event::InitDone)) {}

    // Changes seen live.
    direct
        .create(&PostParams::default(), &pod("d"))
        .await
        .unwrap();
    direct
        .delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let mut deleted = false;
    while !deleted {
        deleted = matches!(next().await, Ok(watcher::Event::Delete(p)) if p.metadata.name.as_deref() == Some("a"));
    }

    // A write the pod watch does not carry, the history compacted past it, the watches cut:
    // the re-watch gets 410 Expired and the watcher re-lists.
    api.reset_traffic();
    api.create_object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bump", "namespace": "default"},
    }))
    .await
    .unwrap();
    api.compact();
    api.cut_watches();
    let (mut expired, mut relisted) = (false, false);
    while !relisted {
        match next().await {
            Err(e) => expired |= e.to_string().contains("410") || e.to_string().contains("too old"),
            Ok(watcher::Event::InitDone) => relisted = true,
            Ok(_) => {}
        }
    }
    assert!(expired, "the re-watch was answered 410");
    let lists = api
        .traffic()
        .under("/api/v1/namespaces/default/pods")
        .filter(|r| r.verb == "list" && r.user_agent.starts_with("kubelet"))
        .count();
    assert!(lists >= 1, "the watcher re-listed through the hub");

    let want = direct_pods(&api).await;
    assert_eq!(
        want.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["b", "c", "d"]
    );
    let mut got = Vec::new();
    let settled = tokio::time::timeout(WAIT, async {
        loop {
            got = cached_pods(&hub.store).await;
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "cache {got:?} != apiserver {want:?}");
    drop(events);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_keep_working_when_one_of_two_apiservers_goes_down() {
    // Each TLS test apiserver has its own CA and the hub's client trusts one: two plain-HTTP
    // apiservers holding the same objects stand in for two replicas of one cluster.
    let a = TestApiServer::start().await.unwrap();
    let b = TestApiServer::start().await.unwrap();
    for api in [&a, &b] {
        for name in ["x", "y"] {
            Api::<Pod>::namespaced(api.client(), "default")
                .create(&PostParams::default(), &pod(name))
                .await
                .unwrap();
        }
    }
    let hub = Hub::start(&[&a, &b], None).await;
    let pods_api = Api::<Pod>::namespaced(hub.kube(), "default");
    for _ in 0..4 {
        assert_eq!(
            bounded("get", pods_api.get("x"))
                .await
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("x")
        );
    }
    let served = |api: &TestApiServer| {
        api.traffic()
            .under("/api/v1/namespaces/default/pods/x")
            .count()
    };
    assert!(served(&a) >= 1 && served(&b) >= 1, "round-robin used both");

    a.go_down().await;
    b.reset_traffic();
    for _ in 0..6 {
        let list = bounded("list", pods_api.list(&ListParams::default()))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 2);
        let got = bounded("get", pods_api.get("y")).await.unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("y"));
    }
    let on_b = b
        .traffic()
        .under("/api/v1/namespaces/default/pods")
        .filter(|r| r.status == 200)
        .count();
    assert!(
        on_b >= 12,
        "the surviving apiserver answered every read ({on_b})"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_the_hub() {
    let api = api_with_logging_pod("started\nserving on :80\n").await;
    // Every component cached, kubectl included: its reads go through the cache layer too.
    let hub = Hub::start(&[&api], Some("*")).await;
    let Some(kubectl) = Kubectl::new(&hub) else {
        return hub.shutdown().await;
    };

    let version: Value =
        serde_json::from_str(&kubectl.run(&["get", "--raw", "/version"]).await).unwrap();
    assert!(version["gitVersion"].is_string(), "{version}");

    let pods: Value = serde_json::from_str(
        &kubectl
            .run(&["get", "pods", "-n", "default", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(pods["items"][0]["metadata"]["name"], "web", "{pods}");

    let logs = kubectl.run(&["logs", "web", "-n", "default"]).await;
    assert_eq!(logs, "started\nserving on :80\n");

    let manifest = kubectl.dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata:\n  k: v\n",
    )
    .unwrap();
    kubectl
        .run(&[
            "apply",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ])
        .await;
    let applied = api.get_object("v1", "configmaps", "default", "applied");
    assert_eq!(applied.expect("applied")["data"]["k"], "v");

    // get -w prints the change made after it started.
    let mut watch = kubectl
        .command(&["get", "configmaps", "-n", "default", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || lines.recv_timeout(WAIT).expect("a kubectl get -w line");
    // The initial list first (it holds `applied`), then the watch.
    tokio::task::block_in_place(|| while next_line() != "configmap/applied" {});
    api.create_object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "later", "namespace": "default"},
    }))
    .await
    .unwrap();
    tokio::task::block_in_place(|| while next_line() != "configmap/later" {});
    let _ = watch.kill();
    let _ = watch.wait();
    reader.join().unwrap();

    kubectl
        .run(&["delete", "configmap", "applied", "-n", "default"])
        .await;
    assert!(
        api.get_object("v1", "configmaps", "default", "applied")
            .is_none()
    );
    hub.shutdown().await;
}

/// Lists the pods of `default` through the hub, prints `listed <names>`, then watches from the
/// list's resourceVersion until pod `later` is added (printing `added later`), bounded by the
/// watch's own timeout.
const PY_CLIENT: &str = r#"
import sys
from kubernetes import client, watch
conf = client.Configuration()
conf.host = sys.argv[1]
api = client.CoreV1Api(client.ApiClient(conf))
pods = api.list_namespaced_pod("default", _request_timeout=10)
print("listed", ",".join(sorted(p.metadata.name for p in pods.items)), flush=True)
for ev in watch.Watch().stream(api.list_namespaced_pod, "default",
        resource_version=pods.metadata.resource_version, timeout_seconds=10):
    if ev["type"] == "ADDED" and ev["object"].metadata.name == "later":
        print("added later", flush=True)
        break
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_lists_and_watches_through_the_hub() {
    let api = TestApiServer::builder().tls().start().await.unwrap();
    let direct = Api::<Pod>::namespaced(api.client(), "default");
    for name in ["p1", "p2"] {
        direct
            .create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let hub = Hub::start(&[&api], Some("*")).await;
    if !tool(PYTHON, &["-c", "import kubernetes"]) {
        return hub.shutdown().await;
    }
    let mut child = Command::new(PYTHON)
        .args(["-c", PY_CLIENT, &hub.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listed = tokio::task::block_in_place(|| lines.recv_timeout(WAIT));
    assert_eq!(listed.as_deref(), Ok("listed p1,p2"));
    direct
        .create(&PostParams::default(), &pod("later"))
        .await
        .unwrap();
    let added = tokio::task::block_in_place(|| lines.recv_timeout(WAIT));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert_eq!(added.as_deref(), Ok("added later"), "{}", stderr(&out));
    let python = api
        .traffic()
        .under("/api/v1/namespaces/default/pods")
        .filter(|r| r.user_agent.starts_with("OpenAPI-Generator"))
        .count();
    assert!(
        python >= 2,
        "the list and the watch reached the apiserver via the hub"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_pod_log_streams_through_the_hub() {
    let api = api_with_logging_pod("first line\n").await;
    let hub = Hub::start(&[&api], None).await;
    let pods_api = Api::<Pod>::namespaced(hub.kube(), "default");

    let all = bounded("log", pods_api.logs("web", &Default::default()))
        .await
        .unwrap();
    assert_eq!(all, "first line\n");

    // follow: the text arrives while the stream is still open (the hub does not buffer it).
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = bounded("log stream", pods_api.log_stream("web", &params))
        .await
        .unwrap();
    let mut lines = futures::AsyncBufReadExt::lines(stream);
    let first = bounded("first log line", lines.next()).await;
    assert_eq!(first.unwrap().unwrap(), "first line");
    api.cut_watches();
    assert!(
        bounded("log end", lines.next()).await.is_none(),
        "the followed log ends when the apiserver ends it"
    );
    hub.shutdown().await;
}
