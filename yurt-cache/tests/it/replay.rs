//! The offline journal and its replay, through the real hub in front of a TLS test apiserver
//! behind a cuttable link: writes the cloud rejects (4xx) or keeps failing (5xx, injected for
//! one object) are recorded and skipped while the other writes arrive, order is kept per
//! object, a stuck replay shows in readyz and metrics, the journal's caps answer 507 without
//! losing what was accepted, status writes coalesce as they arrive, and a journal larger than
//! the replay batch replays across a hub restart.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use yurt_cache::health::HealthConfig;
use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
use yurt_cache::multiplex::PoolScopeResources;
use yurt_cache::store::{Gvr, ObjectKey, Store};
use yurt_cache::upstream::UpstreamClient;
use yurt_testkit::TestApiServer;
use yurt_testkit::chaos::ChaosLink;

use crate::net::{WAIT, hub_client};

const NODE: &str = "edge-1";
const KUBELET: &str = "kubelet/v1.36.0 (linux/amd64) kubernetes/test";

async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `f` every 20 ms until it holds (bounded by [`WAIT`]).
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    bounded(what, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

struct Rig {
    api: TestApiServer,
    link: ChaosLink,
    hub: Option<EdgeHub>,
    config: EdgeHubConfig,
    upstream: UpstreamClient,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(tune: impl FnOnce(&mut EdgeHubConfig)) -> Rig {
        let api = TestApiServer::builder().tls().start().await.unwrap();
        let link = ChaosLink::start(api.addr()).await.unwrap();
        let upstream = hub_client(&api, &format!("system:node:{NODE}"), &["system:nodes"]);
        let dir = tempfile::tempdir().unwrap();
        let server = format!("https://{}", link.local_addr()).parse().unwrap();
        let mut config = EdgeHubConfig::new(NODE, vec![server], dir.path().join("cache.redb"));
        config.proxy_addr = "127.0.0.1:0".parse().unwrap();
        config.admin_addr = "127.0.0.1:0".parse().unwrap();
        config.health = HealthConfig::lease(NODE)
            .interval(Duration::from_millis(250))
            .timeout(Duration::from_millis(400))
            .thresholds(1, 1);
        config.kubelet_grace = None;
        config.resync.retry_interval = Duration::from_millis(100);
        config.multiplex = PoolScopeResources::new([]);
        tune(&mut config);
        let hub = EdgeHub::start(config.clone(), upstream.clone())
            .await
            .unwrap();
        config.proxy_addr = hub.proxy_addr();
        config.admin_addr = hub.admin_addr();
        let rig = Rig {
            api,
            link,
            hub: Some(hub),
            config,
            upstream,
            _dir: dir,
        };
        rig.wait_health(true).await;
        rig
    }

    fn hub(&self) -> &EdgeHub {
        self.hub.as_ref().unwrap()
    }

    fn kubelet(&self) -> kube::Client {
        let mut config = kube::Config::new(
            format!("http://{}", self.hub().proxy_addr())
                .parse()
                .unwrap(),
        );
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(KUBELET),
        ));
        kube::Client::try_from(config).unwrap()
    }

    async fn wait_health(&self, healthy: bool) {
        let mut rx = self.hub().health();
        bounded("hub health", rx.wait_for(|h| h.any_healthy() == healthy))
            .await
            .unwrap();
    }

    async fn wait_object(&self, resource: &str, name: &str) {
        let store = self.hub().store().clone();
        let key = ObjectKey::new("kubelet", &Gvr::new("", "v1", resource), "default", name);
        until("the object to be cached", || {
            let (store, key) = (store.clone(), key.clone());
            async move { store.get(&key).await.unwrap().is_some() }
        })
        .await;
    }

    async fn cut(&self) {
        self.link.cut();
        self.hub().probe_now();
        self.wait_health(false).await;
    }

    async fn heal(&self) {
        self.link.heal();
        self.hub().probe_now();
        self.wait_health(true).await;
    }

    async fn journal_len(&self) -> usize {
        self.hub().store().journal().await.unwrap().len()
    }

    async fn journal_drained(&self) {
        let r = self;
        until("the journal replay", move || async move {
            r.journal_len().await == 0
        })
        .await;
    }

    /// GET on the management server: status and body.
    async fn admin(&self, path: &str) -> (StatusCode, String) {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = Request::get(format!("http://{}{path}", self.hub().admin_addr()))
            .body(Empty::new())
            .unwrap();
        let resp = bounded("admin request", client.request(req)).await.unwrap();
        let status = resp.status();
        let body = bounded("admin body", resp.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn rejected(&self) -> Vec<Value> {
        let (status, body) = self.admin("/v1/journal/rejected").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        doc["rejected"].as_array().unwrap().clone()
    }

    fn cloud_cm(&self, name: &str) -> Value {
        self.api
            .get_object("v1", "configmaps", "default", name)
            .unwrap()
    }

    async fn cloud_events(&self) -> Vec<String> {
        let mut names: Vec<String> = Api::<Event>::namespaced(self.api.client(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    }

    async fn restart(&mut self) {
        self.hub.take().unwrap().shutdown().await;
        self.hub = Some(
            EdgeHub::start(self.config.clone(), self.upstream.clone())
                .await
                .unwrap(),
        );
    }

    async fn shutdown(mut self) {
        self.hub.take().unwrap().shutdown().await;
        self.link.shutdown().await;
    }
}

/// Creates ConfigMaps `names` in the cloud and has kubelet read them through the hub.
async fn cached_configmaps(rig: &Rig, names: &[&str]) -> Api<ConfigMap> {
    for name in names {
        rig.api
            .create_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"}, "data": {"k": "0"}}))
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(rig.kubelet(), "default");
    for name in names {
        cms.get(name).await.unwrap();
        rig.wait_object("configmaps", name).await;
    }
    cms
}

async fn set(cms: &Api<ConfigMap>, name: &str, data: Value) -> Result<ConfigMap, kube::Error> {
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "data": data })),
    )
    .await
}

async fn offline_event(rig: &Rig, name: &str) {
    let ev = Event {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".to_owned()),
            name: Some(NODE.to_owned()),
            ..Default::default()
        },
        reason: Some("Offline".to_owned()),
        message: Some(format!("event {name}")),
        ..Default::default()
    };
    Api::<Event>::namespaced(rig.kubelet(), "default")
        .create(&PostParams::default(), &ev)
        .await
        .unwrap();
}

const BAD: &str = "/api/v1/namespaces/default/configmaps/bad";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_cloud_rejects_is_recorded_and_skipped() {
    let rig = Rig::start(|_| {}).await;
    let cms = cached_configmaps(&rig, &["bad", "good"]).await;
    rig.cut().await;
    set(&cms, "bad", json!({"k": "edge"})).await.unwrap();
    offline_event(&rig, "ev-1").await;
    set(&cms, "good", json!({"k": "edge"})).await.unwrap();
    assert_eq!(rig.journal_len().await, 3);
    rig.api.fail_path("PATCH", BAD, 422);
    rig.heal().await;
    rig.journal_drained().await;

    assert_eq!(rig.cloud_cm("good")["data"]["k"], "edge");
    assert_eq!(rig.cloud_cm("bad")["data"]["k"], "0");
    assert_eq!(rig.cloud_events().await, ["ev-1"]);
    let m = rig.hub().resync_metrics().unwrap();
    assert_eq!(m.rejected_count("client_error"), 1);
    let rejected = rig.rejected().await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let r = &rejected[0];
    assert_eq!(r["reason"], "client_error");
    assert_eq!(r["resource"], "configmaps");
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["name"], "bad");
    assert_eq!(r["verb"], "patch");
    assert_eq!(r["status"]["kind"], "Status");
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let (_, metrics) = rig.admin("/metrics").await;
    assert!(
        metrics.contains("yurt_resync_replay_rejected_total{reason=\"client_error\"} 1"),
        "{metrics}"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_holds_back_only_its_object_and_shows_as_stuck() {
    let rig = Rig::start(|c| {
        c.resync.replay_max_attempts = u32::MAX;
        c.resync.replay_stuck_after = Duration::ZERO;
    })
    .await;
    let cms = cached_configmaps(&rig, &["bad", "good"]).await;
    let (_, body) = rig.admin("/v1/readyz").await;
    assert!(!body.contains("offline journal replay"), "{body}");
    rig.cut().await;
    set(&cms, "bad", json!({"k": "1", "first": "yes"}))
        .await
        .unwrap();
    set(&cms, "good", json!({"k": "edge"})).await.unwrap();
    // A later write of `bad` that the fault does not cover (a PUT, without a
    // resourceVersion precondition): sent early, it would land in the cloud.
    let mut later = cms.get("bad").await.unwrap();
    later.metadata.resource_version = None;
    later.data = Some(
        [
            ("k".to_owned(), "2".to_owned()),
            ("first".to_owned(), "yes".to_owned()),
        ]
        .into(),
    );
    cms.replace("bad", &PostParams::default(), &later)
        .await
        .unwrap();
    offline_event(&rig, "ev-1").await;
    rig.api.fail_path("PATCH", BAD, 500);
    rig.heal().await;

    // The other object's write and the Event arrive; both writes of `bad` stay, in order.
    let r = &rig;
    until("the other writes to arrive", move || async move {
        r.cloud_cm("good")["data"]["k"] == "edge" && r.cloud_events().await == ["ev-1"]
    })
    .await;
    until("only bad's writes to be left", move || async move {
        r.journal_len().await == 2
    })
    .await;
    until("readyz to show the stuck replay", move || async move {
        let (status, body) = r.admin("/v1/readyz").await;
        status == StatusCode::SERVICE_UNAVAILABLE && body.contains("offline journal replay")
    })
    .await;
    let (_, metrics) = rig.admin("/metrics").await;
    assert!(metrics.contains("yurt_resync_replay_stuck 1"), "{metrics}");
    assert!(
        metrics.contains("yurt_resync_replay_oldest_pending_seconds"),
        "{metrics}"
    );
    // The first write of `bad` is retried; the later one is held back.
    until("the first write of bad to be retried", move || async move {
        r.api
            .traffic()
            .records
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == BAD)
            .count()
            >= 3
    })
    .await;
    assert!(
        !rig.api
            .traffic()
            .records
            .iter()
            .any(|r| r.method == "PUT" && r.path == BAD),
        "the later write of bad was sent before the earlier one"
    );
    assert_eq!(rig.cloud_cm("bad")["data"]["k"], "0");
    assert_eq!(
        rig.hub()
            .resync_metrics()
            .unwrap()
            .rejected_count("retries_exhausted"),
        0
    );

    // The cloud takes it again: both writes land, in order.
    rig.api.heal();
    rig.journal_drained().await;
    let bad = rig.cloud_cm("bad");
    assert_eq!(bad["data"]["k"], "2", "the later write of bad came last");
    assert_eq!(bad["data"]["first"], "yes");
    until("readyz to recover", move || async move {
        !r.admin("/v1/readyz")
            .await
            .1
            .contains("offline journal replay")
    })
    .await;
    let (_, metrics) = rig.admin("/metrics").await;
    assert!(metrics.contains("yurt_resync_replay_stuck 0"), "{metrics}");
    assert!(
        metrics.contains("yurt_resync_replay_oldest_pending_seconds 0"),
        "{metrics}"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_n_times_is_rejected_and_the_rest_proceeds() {
    let rig = Rig::start(|c| c.resync.replay_max_attempts = 3).await;
    let cms = cached_configmaps(&rig, &["bad", "good"]).await;
    rig.cut().await;
    set(&cms, "bad", json!({"k": "1"})).await.unwrap();
    set(&cms, "good", json!({"k": "edge"})).await.unwrap();
    offline_event(&rig, "ev-1").await;
    rig.api.fail_path("PATCH", BAD, 500);
    rig.heal().await;
    rig.journal_drained().await;

    assert_eq!(rig.cloud_cm("good")["data"]["k"], "edge");
    assert_eq!(rig.cloud_events().await, ["ev-1"]);
    assert_eq!(rig.cloud_cm("bad")["data"]["k"], "0");
    let tries = rig
        .api
        .traffic()
        .records
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == BAD)
        .count();
    assert_eq!(tries, 3, "N attempts, then rejected");
    assert_eq!(
        rig.hub()
            .resync_metrics()
            .unwrap()
            .rejected_count("retries_exhausted"),
        1
    );
    let rejected = rig.rejected().await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "retries_exhausted");
    assert_eq!(rejected[0]["attempts"], 3);
    assert_eq!(rejected[0]["name"], "bad");
    assert_eq!(rejected[0]["status"]["code"], 500);
    rig.shutdown().await;
}

fn status_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_answers_507_and_keeps_what_it_accepted() {
    let rig = Rig::start(|c| {
        c.local.journal.max_bytes = 8_000;
        c.local.journal.max_entries = 4;
    })
    .await;
    let cms = cached_configmaps(&rig, &["cfg"]).await;
    rig.cut().await;
    let big = "x".repeat(5_000);
    set(&cms, "cfg", json!({"big1": big})).await.unwrap();
    // Past the byte cap.
    let (code, message) = status_code(set(&cms, "cfg", json!({"big2": big})).await.unwrap_err());
    assert_eq!(code, 507, "{message}");
    assert!(message.contains("--max-offline-journal-bytes"), "{message}");
    assert!(message.contains("bytes"), "{message}");
    // The refused write was not applied to the cached copy either.
    let cached = cms.get("cfg").await.unwrap().data.unwrap();
    assert!(cached.contains_key("big1") && !cached.contains_key("big2"));
    for i in 1..=3 {
        set(&cms, "cfg", json!({ format!("s{i}"): i.to_string() }))
            .await
            .unwrap();
    }
    // Past the entry cap.
    let (code, message) = status_code(set(&cms, "cfg", json!({"s4": "4"})).await.unwrap_err());
    assert_eq!(code, 507, "{message}");
    assert!(message.contains("4 of 4 entries"), "{message}");
    let (status, body) = rig.admin("/v1/journal/rejected").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["pending"]["entries"], 4);

    rig.heal().await;
    rig.journal_drained().await;
    let data = rig.cloud_cm("cfg")["data"].clone();
    assert_eq!(data["big1"], big.as_str());
    assert_eq!(
        (data["s1"].clone(), data["s2"].clone(), data["s3"].clone()),
        (json!("1"), json!("2"), json!("3"))
    );
    assert!(
        data.get("big2").is_none() && data.get("s4").is_none(),
        "{data}"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_coalesce_as_they_arrive() {
    let rig = Rig::start(|_| {}).await;
    rig.api
        .create_object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "nginx"}]}}))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(rig.kubelet(), "default");
    pods.get("web").await.unwrap();
    rig.wait_object("pods", "web").await;
    rig.cut().await;
    for i in 1..=5 {
        let p = json!({"status": {"phase": "Running", "podIP": format!("10.1.0.{i}")}});
        pods.patch_status("web", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    assert_eq!(
        rig.journal_len().await,
        1,
        "one pending status write per object"
    );
    let stats = rig.hub().store().journal_stats().await.unwrap();
    assert_eq!(stats.entries, 1);
    let only = rig.hub().store().journal().await.unwrap();
    assert_eq!(stats.bytes, only[0].1.len() as u64);
    rig.heal().await;
    rig.journal_drained().await;
    let web = rig.api.get_object("v1", "pods", "default", "web").unwrap();
    assert_eq!(web["status"]["podIP"], "10.1.0.5");
    assert_eq!(web["status"]["phase"], "Running");
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_larger_than_a_batch_replays_across_a_restart() {
    let mut rig = Rig::start(|c| {
        c.resync.replay_batch_entries = 2;
        c.resync.replay_batch_bytes = 1;
    })
    .await;
    let cms = cached_configmaps(&rig, &["cfg"]).await;
    rig.cut().await;
    for i in 1..=7 {
        set(
            &cms,
            "cfg",
            json!({"k": i.to_string(), format!("k{i}"): "set"}),
        )
        .await
        .unwrap();
        offline_event(&rig, &format!("ev-{i}")).await;
    }
    assert_eq!(rig.journal_len().await, 14);
    rig.restart().await;
    rig.wait_health(false).await;
    assert_eq!(
        rig.journal_len().await,
        14,
        "the journal survives the restart"
    );
    rig.heal().await;
    rig.journal_drained().await;
    let data = rig.cloud_cm("cfg")["data"].clone();
    assert_eq!(data["k"], "7", "the writes replayed in order");
    for i in 1..=7 {
        assert_eq!(data[format!("k{i}")], "set", "{data}");
    }
    let events = rig.cloud_events().await;
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(
        rig.hub()
            .resync_metrics()
            .unwrap()
            .replayed_count("applied"),
        14
    );
    rig.shutdown().await;
}
