//! Online and offline answers agree: the same request from kubelet, sent through the running
//! hub ([`EdgeHub`]) once while the test apiserver is reachable and once with the link cut,
//! gets the same code and reason (and, where the text does not embed the stored object, the
//! same message). Invalid offline writes are refused with the apiserver's words and leave the
//! cache and the journal untouched.

use std::time::Duration;

use http::Request;
use serde_json::{Value, json};
use yurt_cache::body::Body;
use yurt_cache::health::HealthConfig;
use yurt_cache::hub::{EdgeHub, EdgeHubConfig};
use yurt_cache::multiplex::PoolScopeResources;
use yurt_cache::store::{Gvr, ObjectKey, Store};
use yurt_testkit::TestApiServer;
use yurt_testkit::chaos::ChaosLink;

use crate::net::{WAIT, hub_client, plain_client};

const NODE: &str = "edge-1";
const KUBELET: &str = "kubelet/v1.36.0 (linux/amd64) kubernetes/test";
const CM: &str = "/api/v1/namespaces/default/configmaps/cm1";
const POD: &str = "/api/v1/namespaces/default/pods/web-1";
const MERGE: &str = "application/merge-patch+json";
const SMP: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// The cloud (TLS apiserver) behind a cuttable link, and the hub in front of it.
struct Rig {
    api: TestApiServer,
    link: ChaosLink,
    hub: EdgeHub,
    _dir: tempfile::TempDir,
}

/// One answer: code, content type, body (JSON when it is JSON, else `null`).
#[derive(Debug)]
struct Answer {
    code: u16,
    content_type: String,
    body: Value,
}

impl Rig {
    /// Starts everything, creates a ConfigMap, a Secret and a pod of this node in the cloud,
    /// and has kubelet read them through the hub so they are cached.
    async fn start() -> Rig {
        Rig::start_with(false).await
    }

    /// [`Rig::start`], with the multiplexer serving shared resources when `multiplexer`.
    async fn start_with(multiplexer: bool) -> Rig {
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
        config.resync.retry_interval = Duration::from_millis(200);
        if !multiplexer {
            config.multiplex = PoolScopeResources::new([]);
        }
        let hub = EdgeHub::start(config, upstream).await.unwrap();
        let rig = Rig {
            api,
            link,
            hub,
            _dir: dir,
        };
        rig.wait_health(true).await;
        for obj in [
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm1", "namespace": "default", "labels": {"app": "a"}},
                "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s1", "namespace": "default"}, "data": {"k": "dg=="}}),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "nginx"}]}}),
        ] {
            rig.api.create_object(obj).await.unwrap();
        }
        for (path, resource, name) in [
            (CM, "configmaps", "cm1"),
            ("/api/v1/namespaces/default/secrets/s1", "secrets", "s1"),
            (POD, "pods", "web-1"),
        ] {
            let got = rig.send(get(path)).await;
            assert_eq!(got.code, 200, "{got:?}");
            rig.wait_cached(resource, name).await;
        }
        rig
    }

    async fn wait_health(&self, healthy: bool) {
        let mut rx = self.hub.health();
        tokio::time::timeout(WAIT, rx.wait_for(|h| h.any_healthy() == healthy))
            .await
            .expect("hub health within the wait bound")
            .unwrap();
    }

    async fn wait_cached(&self, resource: &str, name: &str) {
        let key = ObjectKey::new("kubelet", &Gvr::new("", "v1", resource), "default", name);
        let store = self.hub.store().clone();
        tokio::time::timeout(WAIT, async {
            while store.get(&key).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the object is cached within the wait bound");
    }

    /// Kubelet's cached copy of an object, as JSON.
    async fn cached(&self, resource: &str, name: &str) -> Value {
        let key = ObjectKey::new("kubelet", &Gvr::new("", "v1", resource), "default", name);
        let obj = self.hub.store().get(&key).await.unwrap().unwrap();
        serde_json::from_slice(&obj.json).unwrap()
    }

    async fn journal_len(&self) -> usize {
        self.hub.store().journal().await.unwrap().len()
    }

    async fn cut(&self) {
        self.link.cut();
        self.hub.probe_now();
        self.wait_health(false).await;
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let proxy: http::Uri = format!("http://{}", self.hub.proxy_addr()).parse().unwrap();
        let resp = crate::net::send(&plain_client(), &proxy, req)
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = crate::net::bytes(resp).await;
        let body = serde_json::from_slice(&bytes)
            .or_else(|_| {
                // A watch: its first event.
                let text = String::from_utf8_lossy(&bytes);
                serde_json::from_str(text.lines().next().unwrap_or(""))
            })
            .unwrap_or(Value::Null);
        Answer {
            code,
            content_type,
            body,
        }
    }

    /// The request made by `make` answered online, then with the link cut.
    async fn online_then_offline(&self, make: impl Fn() -> Request<Body>) -> (Answer, Answer) {
        let online = self.send(make()).await;
        self.cut().await;
        let offline = self.send(make()).await;
        (online, offline)
    }

    async fn shutdown(self) {
        self.hub.shutdown().await;
        self.link.shutdown().await;
    }
}

fn request(method: &str, path: &str, content_type: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", KUBELET)
        .header("accept", "application/json")
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    get_accepting(path, "application/json")
}

fn get_accepting(path: &str, accept: &str) -> Request<Body> {
    Request::get(path)
        .header("user-agent", KUBELET)
        .header("accept", accept)
        .body(Body::empty())
        .unwrap()
}

/// Same code and reason online and offline; the offline answer returned for more checks.
fn agree(online: &Answer, offline: &Answer) {
    assert_eq!(
        (online.code, &online.body["reason"]),
        (offline.code, &offline.body["reason"]),
        "online {}\noffline {}",
        short(online),
        short(offline)
    );
}

/// An answer for an assertion message, cut to a readable length.
fn short(a: &Answer) -> String {
    let text = format!("{a:?}");
    text.chars().take(600).collect()
}

/// Same code, reason and message.
fn agree_exactly(online: &Answer, offline: &Answer) {
    agree(online, offline);
    assert_eq!(online.body["message"], offline.body["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_delete_directive_is_refused_and_the_pod_stays() {
    let rig = Rig::start().await;
    let patch = || request("PATCH", POD, SMP, json!({"$patch": "delete"}));
    let (online, offline) = rig.online_then_offline(patch).await;
    agree_exactly(&online, &offline);
    assert_eq!(offline.code, 400);
    assert_eq!(
        offline.body["message"],
        "the name of the object (web-1 based on URL) was undeterminable: name must be provided"
    );
    // The cached pod keeps its spec, kubelet still lists it, and nothing was journaled.
    assert_eq!(rig.cached("pods", "web-1").await["spec"]["nodeName"], NODE);
    let list = rig
        .send(get(&format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}"
        )))
        .await;
    assert_eq!(list.code, 200);
    assert_eq!(list.body["items"][0]["metadata"]["name"], "web-1");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_patch_changing_the_kind_is_refused() {
    let rig = Rig::start().await;
    let patch = || request("PATCH", CM, MERGE, json!({"kind": "Secret"}));
    let (online, offline) = rig.online_then_offline(patch).await;
    agree(&online, &offline);
    assert_eq!(offline.code, 422);
    let message = offline.body["message"].as_str().unwrap();
    assert!(
        message.starts_with(" \"\" is invalid: patch: Invalid value: ")
            && message
                .ends_with(": converting (v1.Secret) to (core.ConfigMap): unknown conversion"),
        "{message}"
    );
    assert_eq!(offline.body["details"]["causes"][0]["field"], "patch");
    assert_eq!(rig.cached("configmaps", "cm1").await["kind"], "ConfigMap");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_string_configmap_value_is_refused() {
    let rig = Rig::start().await;
    let patch = || request("PATCH", CM, MERGE, json!({"data": {"k": 7}}));
    let (online, offline) = rig.online_then_offline(patch).await;
    agree(&online, &offline);
    assert_eq!(offline.code, 422);
    let message = offline.body["message"].as_str().unwrap();
    assert!(
        message.ends_with(
            ": json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        ),
        "{message}"
    );
    assert_eq!(rig.cached("configmaps", "cm1").await["data"]["k"], "v");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_labels_are_refused_with_the_apiservers_causes() {
    let rig = Rig::start().await;
    let patch = || {
        request(
            "PATCH",
            CM,
            MERGE,
            json!({"metadata": {"labels": {"bad key": "v", "ok": "-no-"}}}),
        )
    };
    let (online, offline) = rig.online_then_offline(patch).await;
    agree_exactly(&online, &offline);
    assert_eq!(offline.code, 422);
    assert_eq!(offline.body["reason"], "Invalid");
    assert_eq!(
        offline.body["message"],
        "ConfigMap \"cm1\" is invalid: [metadata.labels: Invalid value: \"bad key\": name part \
         must consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
         an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
         validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), metadata.labels: Invalid \
         value: \"-no-\": a valid label must be an empty string or consist of alphanumeric \
         characters, '-', '_' or '.', and must start and end with an alphanumeric character \
         (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
         '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]"
    );
    let causes = offline.body["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0]["reason"], "FieldValueInvalid");
    assert_eq!(causes[0]["field"], "metadata.labels");
    assert_eq!(offline.body["details"]["kind"], "ConfigMap");
    assert_eq!(offline.body["details"]["name"], "cm1");
    // A kube-rs client gets the same typed error offline.
    let mut config = kube::Config::new(format!("http://{}", rig.hub.proxy_addr()).parse().unwrap());
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(KUBELET),
    ));
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let patch = json!({"metadata": {"labels": {"Bad/Key/Twice": "v"}}});
    let err = cms
        .patch(
            "cm1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("a valid label key must consist of"),
        "{}",
        status.message
    );
    let cached = rig.cached("configmaps", "cm1").await;
    assert_eq!(cached["metadata"]["labels"], json!({"app": "a"}));
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_status_of_the_wrong_type_is_refused() {
    let rig = Rig::start().await;
    let path = format!("{POD}/status");
    let patch = || request("PATCH", &path, MERGE, json!({"status": {"phase": 1}}));
    let (online, offline) = rig.online_then_offline(patch).await;
    agree(&online, &offline);
    assert_eq!(offline.code, 422);
    let message = offline.body["message"].as_str().unwrap();
    assert!(
        message.ends_with(
            ": json: cannot unmarshal number into Go struct field Pod.status.phase of type string"
        ),
        "{message}"
    );
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_data_must_be_base64() {
    let rig = Rig::start().await;
    let path = "/api/v1/namespaces/default/secrets/s1";
    let patch = || request("PATCH", path, MERGE, json!({"data": {"k": "not base64!"}}));
    let (online, offline) = rig.online_then_offline(patch).await;
    agree(&online, &offline);
    assert_eq!(offline.code, 422);
    let message = offline.body["message"].as_str().unwrap();
    assert!(
        message.ends_with(": illegal base64 data at input byte 3"),
        "{message}"
    );
    assert_eq!(rig.cached("secrets", "s1").await["data"]["k"], "dg==");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_the_wrong_types_or_a_long_name_is_refused() {
    let rig = Rig::start().await;
    let events = "/api/v1/namespaces/default/events";
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "reason": "Started", "message": "m", "type": "Normal", "count": "x"});
    let long = "a".repeat(5000);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": long, "namespace": "default"}});
    let bad_count = || request("POST", events, "application/json", event.clone());
    let long_name = || {
        request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            cm.clone(),
        )
    };
    let online_count = rig.send(bad_count()).await;
    let online_name = rig.send(long_name()).await;
    rig.cut().await;
    let offline_count = rig.send(bad_count()).await;
    let offline_name = rig.send(long_name()).await;
    agree_exactly(&online_count, &offline_count);
    assert_eq!(offline_count.code, 400);
    assert_eq!(
        offline_count.body["message"],
        "Event in version \"v1\" cannot be handled as a Event: json: cannot unmarshal string \
         into Go struct field Event.count of type int32"
    );
    agree_exactly(&online_name, &offline_name);
    assert_eq!(offline_name.code, 422);
    assert!(
        offline_name.body["message"]
            == format!(
                "ConfigMap \"{long}\" is invalid: metadata.name: Invalid value: \"{long}\": must be \
             no more than 253 characters"
            ),
        "{}",
        short(&offline_name)
    );
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_version_that_is_not_a_number_is_refused() {
    let rig = Rig::start().await;
    let list = || get("/api/v1/namespaces/default/configmaps?resourceVersion=abc");
    let watch = || {
        get("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc&timeoutSeconds=1")
    };
    let online_list = rig.send(list()).await;
    let online_watch = rig.send(watch()).await;
    rig.cut().await;
    let offline_list = rig.send(list()).await;
    let offline_watch = rig.send(watch()).await;
    agree_exactly(&online_list, &offline_list);
    assert_eq!(offline_list.code, 400);
    assert_eq!(
        offline_list.body["message"],
        "invalid resource version: resourceVersion: Invalid value: \"abc\": strconv.ParseUint: \
         parsing \"abc\": invalid syntax"
    );
    agree_exactly(&online_watch, &offline_watch);
    assert_eq!(offline_watch.code, 422);
    assert_eq!(
        offline_watch.body["details"]["causes"][0]["field"],
        "resourceVersion"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_patch_path_without_a_slash_is_refused() {
    let rig = Rig::start().await;
    let patch = || {
        request(
            "PATCH",
            CM,
            JSON_PATCH,
            json!([{"op": "replace", "path": "data", "value": {"k": "x"}}]),
        )
    };
    let (online, offline) = rig.online_then_offline(patch).await;
    agree_exactly(&online, &offline);
    assert_eq!(offline.code, 422);
    assert_eq!(rig.cached("configmaps", "cm1").await["data"]["k"], "v");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_headers_are_negotiated_as_the_apiserver_does() {
    let rig = Rig::start().await;
    let html = || get_accepting(CM, "text/html");
    let pb_get = || get_accepting(CM, "application/vnd.kubernetes.protobuf");
    let pb_list = || {
        get_accepting(
            "/api/v1/namespaces/default/configmaps",
            "application/vnd.kubernetes.protobuf",
        )
    };
    // client-go's default for built-in kinds: protobuf first, anything else too.
    let client_go = || get_accepting(CM, "application/vnd.kubernetes.protobuf, */*");
    let online = [
        rig.send(html()).await,
        rig.send(pb_get()).await,
        rig.send(pb_list()).await,
        rig.send(client_go()).await,
    ];
    rig.cut().await;
    let offline = [
        rig.send(html()).await,
        rig.send(pb_get()).await,
        rig.send(pb_list()).await,
        rig.send(client_go()).await,
    ];
    // A client that also takes JSON gets JSON both ways (the hub asks upstream for JSON).
    assert_eq!((online[3].code, offline[3].code), (200, 200));
    assert_eq!(online[3].content_type, offline[3].content_type);
    assert_eq!(offline[3].body["data"]["k"], "v");
    agree_exactly(&online[0], &offline[0]);
    assert_eq!(offline[0].code, 406);
    assert_eq!(offline[0].body["reason"], "NotAcceptable");
    // One ConfigMap in protobuf: both answer protobuf.
    assert_eq!((online[1].code, offline[1].code), (200, 200));
    assert_eq!(online[1].content_type, offline[1].content_type);
    assert_eq!(
        offline[1].content_type,
        "application/vnd.kubernetes.protobuf"
    );
    // A list has no protobuf form here: 406 both ways.
    agree_exactly(&online[2], &offline[2]);
    assert_eq!(offline[2].code, 406);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_maybe_is_a_watch_both_ways() {
    let rig = Rig::start().await;
    // kube-apiserver reads any `watch` value but `0` and `false` as true.
    let watch = || get("/api/v1/namespaces/default/configmaps?watch=maybe&timeoutSeconds=1");
    let (online, offline) = rig.online_then_offline(watch).await;
    assert_eq!((online.code, offline.code), (200, 200));
    assert_eq!(online.body["type"], "ADDED", "{online:?}");
    assert_eq!(offline.body["type"], "ADDED", "{offline:?}");
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_slash_in_a_name_is_not_a_status_subresource() {
    let rig = Rig::start().await;
    let escaped = || get("/api/v1/namespaces/default/configmaps/cm1%2Fstatus");
    let (online, offline) = rig.online_then_offline(escaped).await;
    agree_exactly(&online, &offline);
    assert_eq!(offline.code, 404);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_patch_directive_gets_the_apiservers_answer() {
    let rig = Rig::start().await;
    // kube-apiserver passes the merge engine's error through unclassified: 500, no reason.
    let patch = || {
        request(
            "PATCH",
            POD,
            SMP,
            json!({"metadata": {"$patch": "explode"}}),
        )
    };
    let (online, offline) = rig.online_then_offline(patch).await;
    agree_exactly(&online, &offline);
    assert_eq!(offline.code, 500);
    assert!(
        offline.body["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown patch type: explode in map: ")
    );
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

/// Sends `raw` bytes to the hub's listener and returns the answer's status code and the text
/// read.
async fn raw_status(rig: &Rig, raw: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(rig.hub.proxy_addr())
        .await
        .unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        // Until the status line is in (the connection may stay open).
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer within the wait bound");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let line = text.lines().next().unwrap_or("");
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_chunk_size_is_a_bad_request_both_ways() {
    let rig = Rig::start().await;
    let raw = format!(
        "PATCH {CM} HTTP/1.1\r\nHost: hub\r\nUser-Agent: {KUBELET}\r\n\
         Content-Type: {MERGE}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         zz\r\n{{}}\r\n0\r\n\r\n"
    );
    let online = raw_status(&rig, &raw).await;
    rig.cut().await;
    let offline = raw_status(&rig, &raw).await;
    assert_eq!((online.0, offline.0), (400, 400), "{online:?}\n{offline:?}");
    assert_eq!(rig.journal_len().await, 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multiplexer_refuses_a_bad_resource_version_as_the_apiserver() {
    let rig = Rig::start_with(true).await;
    let make = || {
        Request::get("/api/v1/services?resourceVersion=abc")
            .header(
                "user-agent",
                "kube-proxy/v1.36.0 (linux/amd64) kubernetes/test",
            )
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap()
    };
    // Until the multiplexer's feed has listed (it answers 429 before).
    tokio::time::timeout(WAIT, async {
        loop {
            let synced = Request::get("/api/v1/services")
                .header(
                    "user-agent",
                    "kube-proxy/v1.36.0 (linux/amd64) kubernetes/test",
                )
                .body(Body::empty())
                .unwrap();
            if rig.send(synced).await.code == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the multiplexer syncs within the wait bound");
    let via_hub = rig.send(make()).await;
    let client = hub_client(&rig.api, "admin", &["system:masters"]);
    let resp = crate::net::send(&client, &crate::net::uri(&rig.api), make())
        .await
        .unwrap();
    let direct = Answer {
        code: resp.status().as_u16(),
        content_type: String::new(),
        body: crate::net::json(resp).await,
    };
    agree_exactly(&direct, &via_hub);
    assert_eq!(via_hub.code, 400);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lease_of_the_wrong_type_is_refused_as_the_apiserver_would() {
    // kubelet's node Lease is always answered by the hub; it must refuse what the apiserver
    // refuses, with the same words.
    let rig = Rig::start().await;
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NODE, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40}});
    // The hub may have created it already (it renews the real Lease).
    let _ = rig.api.create_object(lease.clone()).await;
    let mut bad = lease.clone();
    bad["spec"]["leaseDurationSeconds"] = json!("forty");
    let via_hub = rig
        .send(request("PUT", &path, "application/json", bad.clone()))
        .await;
    let client = hub_client(&rig.api, &format!("system:node:{NODE}"), &["system:nodes"]);
    let resp = crate::net::send(
        &client,
        &crate::net::uri(&rig.api),
        request("PUT", &path, "application/json", bad),
    )
    .await
    .unwrap();
    let direct = Answer {
        code: resp.status().as_u16(),
        content_type: String::new(),
        body: crate::net::json(resp).await,
    };
    agree_exactly(&direct, &via_hub);
    assert_eq!(via_hub.code, 400);
    assert_eq!(
        via_hub.body["message"],
        "Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal string into \
         Go struct field Lease.spec.leaseDurationSeconds of type int32"
    );
    rig.shutdown().await;
}
