//! `yurthub --demo`: offline autonomy, end to end, on one machine.
//!
//! A sandbox cloud (yurt-testkit's TLS apiserver) sits behind a ChaosLink (a TCP relay that
//! can cut or heal the link); the hub runs in front of it on the usual ports, and a
//! kubelet-like kube-rs client (User-Agent `kubelet`) renews its Lease, reflects its pods and
//! reads its node, ConfigMaps and Services through the hub. The demo cuts the link, shows the
//! reads still served, writes a pod status offline, restarts the hub while offline, heals the
//! link and shows the resync, printing each step with its timing. Then it keeps serving until
//! Ctrl-C. Heartbeats run every second here (10 s by default) so the story takes seconds.
//!
//! Every story line states only what the demo has checked before printing it (each wait is
//! bounded; a claim that does not come true in time ends the demo with an error instead). Story
//! lines go to stdout with a `[demo  12.34s]` prefix; logs go to stderr.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use yurt::cache::health::HealthConfig;
use yurt::cache::hub::EdgeHub;
use yurt::cache::upstream::{UpstreamClient, UpstreamConfig};
use yurt_testkit::TestApiServer;
use yurt_testkit::chaos::ChaosLink;

use super::{Cli, hub_config};

/// Bound of every wait of the demo.
const WAIT: Duration = Duration::from_secs(30);

struct Clock(Instant);

impl Clock {
    fn say(&self, what: impl AsRef<str>) {
        println!(
            "[demo {:>6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("demo: timed out waiting for {what}"))
}

/// A kube-rs client to the hub that identifies as `agent`.
fn client_as(proxy: std::net::SocketAddr, agent: &'static str) -> Result<kube::Client, String> {
    let url = format!("http://{proxy}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut config = kube::Config::new(url);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(agent),
    ));
    config.read_timeout = Some(Duration::from_secs(15));
    kube::Client::try_from(config).map_err(|e| format!("demo client: {e}"))
}

/// The cloud's objects: this node, its pods (with addresses), a ConfigMap, a Service and its
/// EndpointSlice.
async fn seed(api: &TestApiServer, node: &str) -> Result<(), String> {
    let create = |v: serde_json::Value| async move {
        api.create_object(v)
            .await
            .map(|_| ())
            .map_err(|e| format!("demo seed: {e}"))
    };
    create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node,
        "labels": {"openyurt.io/is-edge-worker": "true"},
        "annotations": {"node.openyurt.io/autonomy-duration": "0"}}}),
    )
    .await?;
    let admin = api.client();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for i in 1..=3 {
        let name = format!("web-{i}");
        create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx"}]}}))
        .await?;
        let status = json!({"status": {"phase": "Running", "podIP": format!("10.244.1.{i}"),
            "podIPs": [{"ip": format!("10.244.1.{i}")}],
            "conditions": [{"type": "Ready", "status": "True"}]}});
        bounded(
            "a pod status",
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)),
        )
        .await?
        .map_err(|e| format!("demo seed: {e}"))?;
    }
    create(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "default"}, "data": {"greeting": "hello"}}))
    .await?;
    create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    .await?;
    let endpoints: Vec<_> = (1..=3)
        .map(|i| {
            json!({"addresses": [format!("10.244.1.{i}")], "conditions": {"ready": true},
            "nodeName": node,
            "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("web-{i}")}})
        })
        .collect();
    create(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc12", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}),
    )
    .await?;
    Ok(())
}

/// Renews the node's Lease through the hub every 2 s, as kubelet does (every 10 s).
fn renew_lease(client: kube::Client, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let now = k8s_openapi::jiff::Timestamp::now();
            let renew = async {
                match leases.get_opt(&node).await {
                    Ok(Some(mut l)) => {
                        if let Some(spec) = l.spec.as_mut() {
                            spec.renew_time = Some(
                                k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
                            );
                        }
                        let _ = leases.replace(&node, &PostParams::default(), &l).await;
                    }
                    Ok(None) => {
                        let l: Lease = serde_json::from_value(json!({
                            "metadata": {"name": node, "namespace": "kube-node-lease"},
                            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40}}))
                        .unwrap_or_default();
                        let _ = leases.create(&PostParams::default(), &l).await;
                    }
                    Err(_) => {}
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), renew).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// Polls `check` every 50 ms until it returns `Some`, at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    bounded(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Whether a new TCP connection to `addr` is reset or closed before it carries anything (the
/// cut link), rather than held open for the relay.
async fn connection_refused_or_reset(addr: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncReadExt as _;
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return true;
    };
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), conn.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Waits until the hub's health says `healthy` (some server) or not.
async fn wait_health(hub: &EdgeHub, healthy: bool) -> Result<Duration, String> {
    let start = Instant::now();
    let mut rx = hub.health();
    bounded(
        "the hub's health",
        rx.wait_for(|h| h.any_healthy() == healthy),
    )
    .await?
    .map_err(|_| "demo: the health checker stopped".to_owned())?;
    Ok(start.elapsed())
}

pub(crate) async fn run<S>(cli: &Cli, node: &str, node_line: &str, signal: S) -> Result<(), String>
where
    S: Future<Output = std::io::Result<()>>,
{
    let clock = Clock(Instant::now());
    let api = TestApiServer::builder()
        .tls()
        .start()
        .await
        .map_err(|e| format!("demo apiserver: {e}"))?;
    seed(&api, node).await?;
    let link = ChaosLink::start(api.addr())
        .await
        .map_err(|e| format!("demo link: {e}"))?;
    let cert = api
        .ca()
        .issue_client_cert(&format!("system:node:{node}"), &["system:nodes"])
        .map_err(|e| format!("demo certificate: {e}"))?;
    let upstream = UpstreamClient::new(
        UpstreamConfig::from_ca_pem(api.ca().ca_pem().as_bytes())
            .and_then(|c| c.client_cert_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()))
            .map_err(|e| format!("demo client: {e}"))?,
    )
    .map_err(|e| format!("demo client: {e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix("yurthub-demo-")
        .tempdir()
        .map_err(|e| format!("demo directory: {e}"))?;
    let cache_dir: PathBuf = cli
        .disk_cache_path
        .clone()
        .unwrap_or_else(|| tmp.path().join("cache"));
    std::fs::create_dir_all(&cache_dir).map_err(|e| format!("demo cache directory: {e}"))?;
    let server = format!("https://{}", link.local_addr())
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut config = hub_config(cli, node, vec![server], &cache_dir)?;
    config.health = HealthConfig::lease(node)
        .interval(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .thresholds(1, 1);
    config.resync.retry_interval = Duration::from_secs(1);
    let mut hub = EdgeHub::start(config.clone(), upstream.clone())
        .await
        .map_err(|e| format!("demo hub: {e}"))?;
    // Restart on the same ports even if the flags asked for any free one.
    config.proxy_addr = hub.proxy_addr();
    config.admin_addr = hub.admin_addr();
    let proxy = hub.proxy_addr();
    clock.say(format!(
        "cloud: sandbox apiserver on {} (the cloud's kube-apiserver)",
        api.url()
    ));
    clock.say(format!(
        "link: fault-injecting link on {} (the hub's only way to the cloud)",
        link.local_addr()
    ));
    clock.say(format!("hub: {node_line}"));
    for line in super::listener_lines(&hub) {
        clock.say(format!("hub: {line}"));
    }
    wait_health(&hub, true).await?;
    clock.say("hub: the cloud is healthy (the hub's health check succeeded through the link)");

    // The kubelet-like client: lease, reflector of its pods, reads of node/config/services.
    let kubelet = client_as(proxy, "kubelet/v1.36.0 (linux/amd64) kubernetes/demo")?;
    let kube_proxy = client_as(proxy, "kube-proxy/v1.36.0 (linux/amd64) kubernetes/demo")?;
    let lease_task = renew_lease(kubelet.clone(), node.to_owned());
    let pods: Api<Pod> = Api::all(kubelet.clone());
    let (reader, writer) = reflector::store::<Pod>();
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let reflect = tokio::spawn({
        let stream = reflector::reflector(writer, watcher(pods.clone(), wc))
            .default_backoff()
            .applied_objects();
        async move {
            futures::pin_mut!(stream);
            while futures::StreamExt::next(&mut stream).await.is_some() {}
        }
    });
    bounded("the pod reflector", reader.wait_until_ready())
        .await?
        .map_err(|e| format!("demo reflector: {e}"))?;
    let reads = |client: kube::Client| async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
        let start = Instant::now();
        let pods = Api::<Pod>::all(client)
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| format!("pod list: {e}"))?;
        let list_time = start.elapsed();
        let n = nodes
            .get(node)
            .await
            .map_err(|e| format!("node get: {e}"))?;
        let c = cms
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("configmaps: {e}"))?;
        let s = svcs
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("services: {e}"))?;
        let autonomy = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Autonomy")
            .map(|c| c.status)
            .unwrap_or_else(|| "-".into());
        Ok::<_, String>((
            pods.items.len(),
            list_time,
            autonomy,
            c.items.len(),
            s.items.len(),
        ))
    };
    let slices = |client: kube::Client| async move {
        let api: Api<EndpointSlice> = Api::namespaced(client, "default");
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("endpointslices: {e}"))?;
        Ok::<_, String>(
            list.items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .flat_map(|e| e.addresses.iter().cloned())
                .collect::<Vec<_>>(),
        )
    };
    let (n, t, autonomy, c, s) = bounded("online reads", reads(kubelet.clone())).await??;
    let addrs = bounded("endpointslices", slices(kube_proxy.clone())).await??;
    clock.say(format!(
        "online: kubelet listed {n} pods ({}), node Autonomy={autonomy}, {c} configmap(s), {s} service(s); kube-proxy sees endpoints {addrs:?}",
        ms(t)
    ));

    // Cut the link.
    link.cut();
    until("the link to drop its connections", || async {
        (link.open_connections() == 0 && connection_refused_or_reset(link.local_addr()).await)
            .then_some(())
    })
    .await?;
    clock.say("link: cut (open connections reset, new ones reset at once)");
    hub.probe_now();
    let detect = wait_health(&hub, false).await?;
    clock.say(format!("hub: offline detected in {}", ms(detect)));
    let (n, t, _, c, s) = bounded("offline reads", reads(kubelet.clone())).await??;
    if hub.health().borrow().any_healthy() {
        return Err("demo: the hub saw the cloud again while the link was cut".into());
    }
    clock.say(format!(
        "offline: kubelet listed {n} pods in {} from the cache; node, {c} configmap(s), {s} service(s) served; reflector holds {} pods",
        ms(t),
        reader.state().len()
    ));
    // Meanwhile, in the cloud.
    let admin_pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let now = kube::api::DeleteParams::default().grace_period(0);
    bounded("cloud delete", admin_pods.delete("web-3", &now))
        .await?
        .map_err(|e| format!("cloud delete: {e}"))?;
    until("web-3 to leave the cloud", || async {
        api.get_object("v1", "pods", "default", "web-3")
            .is_none()
            .then_some(())
    })
    .await?;
    let holds_web3 = || {
        reader
            .state()
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("web-3"))
    };
    if !holds_web3() {
        return Err("demo: the node learnt of web-3's deletion while offline".into());
    }
    clock.say("cloud: web-3 deleted (the node cannot know yet: its reflector still holds web-3)");
    // An offline status write: web-1 restarted with a new address.
    let status = json!({"status": {"podIP": "10.244.1.11", "podIPs": [{"ip": "10.244.1.11"}]}});
    let kubelet_pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    bounded(
        "offline patch",
        kubelet_pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&status)),
    )
    .await?
    .map_err(|e| format!("offline patch: {e}"))?;
    // Checked, not assumed: the cache serves the new status, the journal holds the write, and
    // kube-proxy's endpoints follow (the offline watch rewrites the EndpointSlice a moment later).
    let cached_ip = bounded("web-1 from the cache", kubelet_pods.get("web-1"))
        .await?
        .map_err(|e| format!("offline get: {e}"))?
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_default();
    if cached_ip != "10.244.1.11" {
        return Err(format!(
            "demo: the cache serves web-1 at {cached_ip:?} after the offline patch"
        ));
    }
    let journaled = hub
        .store()
        .journal()
        .await
        .map_err(|e| format!("demo journal: {e}"))?
        .len();
    if journaled == 0 {
        return Err("demo: the offline patch is not in the journal".into());
    }
    let addrs = until("kube-proxy to see web-1's new address", || {
        let kube_proxy = kube_proxy.clone();
        async move {
            let addrs = bounded("offline endpointslices", slices(kube_proxy))
                .await
                .ok()?
                .ok()?;
            (addrs.iter().any(|a| a == "10.244.1.11") && !addrs.iter().any(|a| a == "10.244.1.1"))
                .then_some(addrs)
        }
    })
    .await?;
    clock.say(format!(
        "offline: kubelet patched web-1's status (new IP 10.244.1.11): the cache serves it, {journaled} write(s) journaled; kube-proxy now sees endpoints {addrs:?}"
    ));

    // Restart the hub while offline.
    hub.shutdown().await;
    clock.say("hub: stopped (still offline)");
    let restart = Instant::now();
    hub = EdgeHub::start(config.clone(), upstream.clone())
        .await
        .map_err(|e| format!("demo hub restart: {e}"))?;
    let listening = restart.elapsed();
    let first = bounded(
        "the first list after restart",
        Api::<Pod>::all(kubelet.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}"))),
    )
    .await?
    .map_err(|e| format!("list after restart: {e}"))?;
    clock.say(format!(
        "hub: restarted offline: listening after {}, first pod list ({} pods) served {} after start",
        ms(listening),
        first.items.len(),
        ms(restart.elapsed())
    ));

    // Heal.
    link.heal();
    let healed = Instant::now();
    // The next line checks it: the hub reaches the cloud through the link again.
    clock.say("link: healed");
    hub.probe_now();
    wait_health(&hub, true).await?;
    clock.say(format!(
        "hub: the cloud is healthy again; offline -> online (link healed -> hub healthy) took {}",
        ms(healed.elapsed())
    ));
    let store = hub.store().clone();
    bounded("the journal replay", async {
        while !store.journal().await.map(|j| j.is_empty()).unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let cloud_ip = until("the cloud to have web-1's new address", || async {
        api.get_object("v1", "pods", "default", "web-1")
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned))
            .filter(|ip| ip == "10.244.1.11")
    })
    .await?;
    let m = hub.resync_metrics().cloned().unwrap_or_default();
    clock.say(format!(
        "resync: journal replayed ({} applied, {} coalesced, {} conflict); the cloud now has web-1 at {cloud_ip}",
        m.replayed_count("applied"),
        m.replayed_count("coalesced"),
        m.replayed_count("conflict")
    ));
    let gone = Instant::now();
    until("the reflector to drop web-3", || async {
        (!holds_web3()).then_some(())
    })
    .await?;
    clock.say(format!(
        "resync: the offline watch ended, kubelet re-watched the cloud and dropped web-3 after {}; it now holds {} pods",
        ms(gone.elapsed()),
        reader.state().len()
    ));
    println!();
    println!("yurthub: demo done; still serving on http://{proxy} (the cloud is reachable again)");
    println!("yurthub: try `kubectl --server http://{proxy} get pods -A` ; Ctrl-C to exit");

    let r = signal.await;
    eprintln!("yurthub: shutting down");
    reflect.abort();
    lease_task.abort();
    hub.shutdown().await;
    link.shutdown().await;
    drop(api);
    r.map_err(|e| format!("signal handler: {e}"))
}
