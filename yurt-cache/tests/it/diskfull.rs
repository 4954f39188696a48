//! A full disk pauses caching, never proxying, and the store comes back once space returns.
//!
//! redb refuses every operation after an I/O error until the database is reopened. The hub
//! must reopen it (with backoff), keep proxying meanwhile, fail `/v1/healthz` while it cannot,
//! and serve offline reads from the reopened file afterwards.
//!
//! The disk is a small tmpfs mounted in a private mount namespace: the parent re-executes this
//! test binary in child mode (`disk_full_child`) under `unshare --mount`, after `mount -t
//! tmpfs` on a temporary directory; the whole scenario (test apiserver, hub, clients) runs in
//! the child, which fills the tmpfs, watches the errors and the recovery, and exits 0 when
//! every check held. Needs root (or CAP_SYS_ADMIN) and util-linux `unshare`: elsewhere the
//! test says `skipping:`; in CI (`CI` set) a missing capability fails it.

#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use yurt_cache::health::HealthConfig;
use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
use yurt_cache::multiplex::PoolScopeResources;
use yurt_cache::store::{Gvr, ObjectKey, Store, StoreHealth};
use yurt_testkit::TestApiServer;
use yurt_testkit::chaos::ChaosLink;

use crate::net::hub_client;

const ENV_DIR: &str = "YURT_CACHE_DISKFULL_DIR";
const NODE: &str = "edge-1";
const KUBELET: &str = "kubelet/v1.36.0";
/// Guard against a hung child; not a performance threshold.
const HANG_GUARD: Duration = Duration::from_secs(240);
/// Bound of each wait inside the child.
const WAIT: Duration = Duration::from_secs(30);

fn skip(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI");
    }
    // Directly to stderr: libtest captures `eprintln!`, and the skip must show.
    let _ = writeln!(std::io::stderr().lock(), "skipping: {what}");
}

/// Whether this process may mount a tmpfs in a new mount namespace.
fn can_mount_tmpfs() -> bool {
    let Ok(probe) = tempfile::tempdir() else {
        return false;
    };
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m yurt-probe \"$0\"")
        .arg(probe.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_pauses_caching_and_the_store_comes_back_when_space_returns() {
    if !can_mount_tmpfs() {
        skip(
            "disk-full test: cannot mount a tmpfs in a new mount namespace (needs root and unshare)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=16m yurt-diskfull \"$0\" && exec \"$1\" --exact \
             diskfull::disk_full_child --ignored --test-threads=1 --nocapture",
        )
        .arg(dir.path())
        .arg(&exe)
        .env(ENV_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(HANG_GUARD) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the disk-full child did not finish within {HANG_GUARD:?}");
        }
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the disk-full child failed:\n{text}");
    assert!(
        text.contains("disk-full scenario passed"),
        "the child did not run the scenario:\n{text}"
    );
}

#[test]
#[ignore = "child process of the disk-full test"]
fn disk_full_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(Path::new(&dir)));
    println!("disk-full scenario passed");
}

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {WAIT:?}"),
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    bounded(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

fn configmap(name: &str, bytes: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"name": name, "pad": "x".repeat(bytes)},
    })
}

/// `GET` on the management port: status and body.
async fn admin_get(hub: &EdgeHub, path: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("http://{}{path}", hub.admin_addr()))
        .body(Empty::new())
        .unwrap();
    let resp = bounded("a management answer", client.request(req))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = bounded("a management body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A sample of `/metrics` (no labels).
async fn metric(hub: &EdgeHub, name: &str) -> f64 {
    let (_, text) = admin_get(hub, "/metrics").await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Writes until the filesystem is full.
async fn fill(path: std::path::PathBuf) {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5Au8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
                break;
            }
        }
        // Whatever fits of a smaller write too, so not a page is left.
        while f.write_all(&[0u8; 512]).is_ok() {}
    })
    .await
    .unwrap();
}

async fn scenario(dir: &Path) {
    let api = TestApiServer::builder().tls().start().await.unwrap();
    let link = ChaosLink::start(api.addr()).await.unwrap();
    let upstream = hub_client(&api, &format!("system:node:{NODE}"), &["system:nodes"]);
    let server = format!("https://{}", link.local_addr()).parse().unwrap();
    let mut config = EdgeHubConfig::new(NODE, vec![server], dir.join("cache/cache.redb"));
    config.proxy_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.health = HealthConfig::lease(NODE)
        .interval(Duration::from_millis(250))
        .timeout(Duration::from_millis(400))
        .thresholds(1, 1);
    config.kubelet_grace = None;
    config.multiplex = PoolScopeResources::new([]);
    config.store.reopen_backoff = Duration::from_millis(50);
    config.store.reopen_backoff_max = Duration::from_millis(200);
    config.store.unhealthy_after_reopen_failures = 3;
    config.store.op_timeout = Duration::from_secs(10);
    let hub = EdgeHub::start(config, upstream).await.unwrap();
    let mut health = hub.health();
    bounded(
        "the apiserver healthy",
        health.wait_for(|h| h.any_healthy()),
    )
    .await
    .unwrap();

    let mut kube_config =
        kube::Config::new(format!("http://{}", hub.proxy_addr()).parse().unwrap());
    kube_config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(KUBELET),
    ));
    let cms: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(kube_config).unwrap(), "default");
    let store = hub.store().clone();
    let gvr = Gvr::new("", "v1", "configmaps");
    let cached = |name: &str| ObjectKey::new("kubelet", &gvr, "default", name);

    api.create_object(configmap("before", 100)).await.unwrap();
    bounded("get through the hub", cms.get("before"))
        .await
        .unwrap();
    let key = cached("before");
    eventually("`before` cached", async || {
        store.get(&key).await.unwrap().is_some()
    })
    .await;
    assert_eq!(admin_get(&hub, "/v1/healthz").await.0, 200);

    // The disk fills up. Online reads go on; caching them fails until the store notices.
    fill(dir.join("filler")).await;
    let mut n = 0;
    eventually("the store to notice the full disk", async || {
        n += 1;
        let name = format!("online-{n}");
        api.create_object(configmap(&name, 32 * 1024))
            .await
            .unwrap();
        let got = bounded("get through the hub", cms.get(&name)).await;
        assert_eq!(
            got.unwrap().data.unwrap()["name"],
            name,
            "online reads work"
        );
        store.health() != StoreHealth::Healthy
    })
    .await;

    // While it cannot write, the hub proxies as usual.
    let list = bounded("list through the hub", cms.list(&Default::default()))
        .await
        .unwrap();
    assert_eq!(list.items.len(), n + 1);
    api.create_object(configmap("during", 100)).await.unwrap();
    assert!(
        bounded("get through the hub", cms.get("during"))
            .await
            .is_ok()
    );

    // Reopening fails while the disk is full: healthz reports it.
    eventually("healthz to fail", async || {
        admin_get(&hub, "/v1/healthz").await.0 == 500
    })
    .await;
    let (_, why) = admin_get(&hub, "/v1/healthz").await;
    assert!(why.contains("cannot be reopened"), "{why}");
    assert!(store.health().is_failed());
    // Each failure counted: the I/O errors (again after each reopen whose probe fit but whose
    // next write did not) and the reopen attempts that failed.
    let io_errors = metric(&hub, "yurt_cache_store_io_errors_total").await;
    let reopen_failures = metric(&hub, "yurt_cache_store_reopen_failures_total").await;
    assert!(io_errors >= 1.0, "{io_errors}");
    assert!(
        io_errors + reopen_failures >= 3.0,
        "{io_errors} + {reopen_failures}"
    );

    // Space comes back: the store reopens by itself, the next write commits, healthz recovers.
    std::fs::remove_file(dir.join("filler")).unwrap();
    let mut last = String::new();
    eventually("the store to write again", async || {
        n += 1;
        last = format!("after-{n}");
        api.create_object(configmap(&last, 100)).await.unwrap();
        bounded("get through the hub", cms.get(&last))
            .await
            .unwrap();
        store.health() == StoreHealth::Healthy
    })
    .await;
    assert_eq!(admin_get(&hub, "/v1/healthz").await.0, 200);
    assert!(metric(&hub, "yurt_cache_store_reopens_total").await >= 1.0);
    assert_eq!(metric(&hub, "yurt_cache_store_unavailable").await, 0.0);

    // Caching works again...
    let key = cached(&last);
    eventually("the last object cached", async || {
        store.get(&key).await.unwrap().is_some()
    })
    .await;

    // ...and offline reads are served from the reopened file.
    link.cut();
    hub.probe_now();
    bounded(
        "the apiserver unhealthy",
        health.wait_for(|h| !h.any_healthy()),
    )
    .await
    .unwrap();
    for name in ["before", last.as_str()] {
        let got = bounded("an offline get", cms.get(name)).await;
        assert_eq!(
            got.unwrap().data.unwrap()["name"],
            name,
            "offline get {name}"
        );
    }
    hub.shutdown().await;
}
