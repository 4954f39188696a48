//! `yurthub --demo`: offline autonomy, end to end, on one machine.
//!
//! A sandbox cloud (yurt-testkit's TLS apiserver) sits behind a ChaosLink (a TCP relay that
//! can cut or heal the link); the hub runs in front of it on the usual ports, and a
//! kubelet-like kube-rs client (User-Agent `kubelet`) renews its Lease, reflects its pods and
//! reads its node, ConfigMaps and Services through the hub. The demo cuts the link, shows the
//! reads still served, writes a pod status offline, restarts the hub while offline, heals the
//! link and shows the resync, printing each step with its timing. Then it keeps serving until
//! Ctrl-C. Heartbeats run every second here (10 s by default) so the story takes seconds.

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
            "[{:>6.2}s] {}",
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

pub(crate) async fn run<S>(cli: &Cli, node: &str, signal: S) -> Result<(), String>
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
        "cloud: sandbox apiserver {}, reached through a fault-injecting link {}",
        api.url(),
        link.local_addr()
    ));
    clock.say(format!(
        "hub: proxy http://{proxy}, management http://{}, cache {}",
        hub.admin_addr(),
        cache_dir.display()
    ));
    wait_health(&hub, true).await?;
    clock.say("hub: the cloud is healthy (node Lease renewed through the link)");

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
        "online: kubelet listed {n} pods ({}), node Autonomy={autonomy}, {c} configmap(s), {s} service(s); kube-proxy sees endpoints {addrs:?}; all cached",
        ms(t)
    ));

    // Cut the link.
    link.cut();
    clock.say("link: cut (connections reset, new ones refused)");
    hub.probe_now();
    let detect = wait_health(&hub, false).await?;
    clock.say(format!("hub: offline detected in {}", ms(detect)));
    let (n, t, _, c, s) = bounded("offline reads", reads(kubelet.clone())).await??;
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
    clock.say("cloud: web-3 deleted (the node cannot know yet)");
    // An offline status write: web-1 restarted with a new address.
    let status = json!({"status": {"podIP": "10.244.1.11", "podIPs": [{"ip": "10.244.1.11"}]}});
    let kubelet_pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    bounded(
        "offline patch",
        kubelet_pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&status)),
    )
    .await?
    .map_err(|e| format!("offline patch: {e}"))?;
    let addrs = bounded("offline endpointslices", slices(kube_proxy.clone())).await??;
    clock.say(format!(
        "offline: kubelet patched web-1's status (new IP 10.244.1.11): applied to the cache and journaled; kube-proxy now sees endpoints {addrs:?}"
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
    clock.say("link: healed");
    hub.probe_now();
    let back = wait_health(&hub, true).await?;
    clock.say(format!(
        "hub: the cloud is healthy again after {}",
        ms(back)
    ));
    let store = hub.store().clone();
    bounded("the journal replay", async {
        while !store.journal().await.map(|j| j.is_empty()).unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let cloud_ip = api
        .get_object("v1", "pods", "default", "web-1")
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let m = hub.resync_metrics().cloned().unwrap_or_default();
    clock.say(format!(
        "resync: journal replayed ({} applied, {} coalesced, {} conflict); the cloud now has web-1 at {cloud_ip}",
        m.replayed_count("applied"),
        m.replayed_count("coalesced"),
        m.replayed_count("conflict")
    ));
    let gone = Instant::now();
    bounded("the reflector to drop web-3", async {
        while reader
            .state()
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("web-3"))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
