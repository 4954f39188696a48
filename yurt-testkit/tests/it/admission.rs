//! Webhooks the apiserver calls: mutating and validating admission webhooks registered by
//! webhook configuration objects, called over TLS (verified against `caBundle`) with the
//! AdmissionReview fields kube-apiserver fills; rules, selectors, failure policies, timeouts,
//! dry run, service references, and the denial and error texts clients see (kube-rs, raw HTTP,
//! kubectl). Also CRD conversion webhooks (ConversionReview) between a CRD's versions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use yurt_testkit::TestApiServer;
use yurt_testkit::pki::{ClientAuth, TestCa};

use crate::support::{LIMIT, bounded, call, server};

/// The DNS names the test webhook's certificate is valid for (besides 127.0.0.1).
const SANS: [&str; 3] = ["127.0.0.1", "hook.default.svc", "other.default.svc"];

/// A webhook server for tests: HTTPS with a certificate from its own CA, answering
/// AdmissionReviews and ConversionReviews by path, and recording every review it receives.
///
/// - `/allow…`: allowed;
/// - `/mutate…`: allowed, with a JSONPatch adding the label `mutated: "true"`;
/// - `/deny…`: denied with code 403 and the message `no thanks`;
/// - `/hang…`: never answers (until the test ends);
/// - `/fail…`: HTTP 500 with the body `boom`;
/// - `/convert`: a ConversionReview between `example.com/v1` (`spec.size`, a string) and
///   `example.com/v2` (`spec.sizeInt`, an integer).
pub(crate) struct HookServer {
    pub(crate) addr: SocketAddr,
    /// The CA's certificate, base64 PEM, as `caBundle` holds it.
    pub(crate) ca_bundle: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    task: JoinHandle<()>,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HookServer {
    pub(crate) async fn start() -> HookServer {
        let ca = TestCa::new().unwrap();
        let cert = ca.issue_server_cert(&SANS).unwrap();
        let mut config = (*ca.server_config(&cert, ClientAuth::None).unwrap()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            // Connections are owned by this set and end with the accept loop.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let recorder = recorder.clone();
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let recorder = recorder.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &recorder).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        HookServer {
            addr,
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.ca_pem()),
            seen,
            task,
        }
    }

    /// A `clientConfig` calling `path` on this server by URL.
    pub(crate) fn url_config(&self, path: &str) -> Value {
        json!({"url": format!("https://{}{path}", self.addr), "caBundle": self.ca_bundle})
    }

    /// The reviews received on paths starting with `prefix`, oldest first.
    pub(crate) fn seen(&self, prefix: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<(String, Value)>>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut recorded = review.clone();
    recorded["query"] = json!(query);
    seen.lock().unwrap().push((path.clone(), recorded));
    let json_reply = |v: Value| {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    if path == "/convert" {
        return json_reply(convert(&review));
    }
    let uid = review["request"]["uid"].clone();
    let mut response = json!({"uid": uid, "allowed": true});
    if path.starts_with("/mutate") {
        let has_labels = review["request"]["object"]["metadata"]["labels"].is_object();
        let patch = if has_labels {
            json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "true"}])
        } else {
            json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "true"}}])
        };
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        response["warnings"] = json!(["mutated by the test"]);
    } else if path.starts_with("/deny") {
        response["allowed"] = json!(false);
        response["status"] = json!({"code": 403, "reason": "Forbidden", "message": "no thanks"});
    } else if path.starts_with("/hang") {
        tokio::time::sleep(LIMIT).await;
    } else if path.starts_with("/fail") {
        return http::Response::builder()
            .status(500)
            .body(Full::new(Bytes::from_static(b"boom")))
            .unwrap();
    }
    json_reply(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": response}),
    )
}

/// The test conversion: v1 `spec.size` ("3") <-> v2 `spec.sizeInt` (3).
fn convert(review: &Value) -> Value {
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].as_str().unwrap_or("");
    let converted: Vec<Value> = req["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let mut o = o.clone();
            let from = o["apiVersion"].as_str().unwrap_or("").to_owned();
            if from != desired {
                let spec = o["spec"].as_object_mut().expect("spec");
                if desired.ends_with("/v2") {
                    let size = spec
                        .remove("size")
                        .and_then(|s| s.as_str()?.parse::<i64>().ok());
                    spec.insert("sizeInt".into(), json!(size.unwrap_or(0)));
                } else {
                    let size = spec.remove("sizeInt").and_then(|s| s.as_i64());
                    spec.insert("size".into(), json!(size.unwrap_or(0).to_string()));
                }
                o["apiVersion"] = json!(desired);
            }
            o
        })
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "response": {"uid": req["uid"], "convertedObjects": converted,
            "result": {"status": "Success"}}})
}

/// A webhook entry for a configuration.
fn hook(name: &str, client_config: Value, rules: Value) -> Value {
    json!({"name": name, "clientConfig": client_config, "rules": rules,
        "sideEffects": "None", "admissionReviewVersions": ["v1"]})
}

fn configmap_rules(ops: &[&str]) -> Value {
    json!([{"operations": ops, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}])
}

async fn register(s: &TestApiServer, kind: &str, name: &str, webhooks: Vec<Value>) {
    let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name}, "webhooks": webhooks});
    s.create_object(obj)
        .await
        .expect("webhook configuration created");
}

fn labelled_configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn webhooks_mutate_then_validate_with_the_apiserver_request_fields() {
    let s = server().await;
    let hooks = HookServer::start().await;
    let all_ops = configmap_rules(&["CREATE", "UPDATE", "DELETE"]);
    register(
        &s,
        "MutatingWebhookConfiguration",
        "mutate",
        vec![hook(
            "mutate.test.io",
            hooks.url_config("/mutate"),
            configmap_rules(&["CREATE", "UPDATE"]),
        )],
    )
    .await;
    let mut deny = hook("deny.test.io", hooks.url_config("/deny"), all_ops.clone());
    deny["objectSelector"] = json!({"matchLabels": {"deny": "yes"}});
    register(
        &s,
        "ValidatingWebhookConfiguration",
        "validate",
        vec![
            deny,
            hook("allow.test.io", hooks.url_config("/allow"), all_ops),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");

    let cm: ConfigMap =
        serde_json::from_value(labelled_configmap("a", json!({"app": "x"}))).unwrap();
    let created = bounded(cms.create(&PostParams::default(), &cm))
        .await
        .unwrap();
    let labels = created.metadata.labels.clone().unwrap();
    assert_eq!(
        labels.get("mutated").map(String::as_str),
        Some("true"),
        "{labels:?}"
    );

    let mutate = hooks.seen("/mutate");
    assert_eq!(mutate.len(), 1);
    let review = &mutate[0];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["query"], "timeout=10s");
    let r = &review["request"];
    assert!(!r["uid"].as_str().unwrap().is_empty());
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert!(r.get("subResource").is_none());
    assert_eq!(r["name"], "a");
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["userInfo"]["username"], "admin");
    assert!(
        r["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );
    assert_eq!(r["object"]["metadata"]["labels"], json!({"app": "x"}));
    assert!(
        r["object"]["metadata"]["uid"].is_null(),
        "mutating webhooks run before defaulting"
    );
    assert!(r["oldObject"].is_null());
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["options"]["apiVersion"], "meta.k8s.io/v1");
    // The validating webhook sees the mutated, defaulted object.
    let allow = hooks.seen("/allow");
    assert_eq!(allow.len(), 1);
    let v = &allow[0]["request"]["object"];
    assert_eq!(v["metadata"]["labels"]["mutated"], "true");
    assert!(v["metadata"]["uid"].is_string());
    assert_ne!(
        allow[0]["request"]["uid"], r["uid"],
        "each call has its own uid"
    );

    // A denial reaches the client with the webhook's code and the apiserver's words.
    let denied: ConfigMap =
        serde_json::from_value(labelled_configmap("b", json!({"deny": "yes"}))).unwrap();
    let err = bounded(cms.create(&PostParams::default(), &denied))
        .await
        .unwrap_err();
    let kube::Error::Api(ae) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(ae.code, 403);
    assert_eq!(ae.reason, "Forbidden");
    assert_eq!(
        ae.message,
        r#"admission webhook "deny.test.io" denied the request: no thanks"#
    );
    assert_eq!(
        call(&s, "GET", &format!("{CMS}/b"), None).await.0,
        StatusCode::NOT_FOUND
    );

    // Updates carry the old object and the operation's options.
    hooks.forget();
    let mut current = bounded(cms.get("a")).await.unwrap();
    current.data = Some([("k".to_owned(), "w".to_owned())].into());
    bounded(cms.replace("a", &PostParams::default(), &current))
        .await
        .unwrap();
    let r = &hooks.seen("/mutate")[0]["request"];
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["options"]["kind"], "UpdateOptions");
    assert_eq!(r["oldObject"]["data"]["k"], "v");
    assert_eq!(r["object"]["data"]["k"], "w");
    hooks.forget();
    bounded(cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "z"}})),
    ))
    .await
    .unwrap();
    let r = &hooks.seen("/allow")[0]["request"];
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["options"]["kind"], "PatchOptions");
    assert_eq!(r["object"]["data"]["k"], "z");

    // An update the validating webhook denies changes nothing.
    let (code, body) = crate::support::patch(
        &s,
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"deny":"yes"}}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let labels = bounded(cms.get("a"))
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert!(!labels.contains_key("deny"), "{labels:?}");

    // Deletes are admitted with the old object only.
    hooks.forget();
    bounded(cms.delete("a", &DeleteParams::default()))
        .await
        .unwrap();
    let r = &hooks.seen("/allow")[0]["request"];
    assert_eq!(r["operation"], "DELETE");
    assert!(r["object"].is_null());
    assert_eq!(r["oldObject"]["metadata"]["name"], "a");
    assert_eq!(r["options"]["kind"], "DeleteOptions");
    assert!(
        hooks.seen("/mutate").is_empty(),
        "the mutating rules name no DELETE"
    );
}

#[tokio::test]
async fn mutating_webhook_warnings_are_sent_to_the_client() {
    let s = server().await;
    let hooks = HookServer::start().await;
    register(
        &s,
        "MutatingWebhookConfiguration",
        "mutate",
        vec![hook(
            "mutate.test.io",
            hooks.url_config("/mutate"),
            configmap_rules(&["CREATE"]),
        )],
    )
    .await;
    let resp = crate::support::send(
        s.addr(),
        crate::support::request(
            "POST",
            CMS,
            "application/json",
            labelled_configmap("w", json!({})).to_string(),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let warning = resp.headers().get("warning").expect("a Warning header");
    assert_eq!(warning, r#"299 - "mutated by the test""#);
}

#[tokio::test]
async fn kubectl_apply_reports_the_denial() {
    let s = server().await;
    let Some(kubectl) = crate::kubectl::Kubectl::new(&s) else {
        return;
    };
    let hooks = HookServer::start().await;
    register(
        &s,
        "ValidatingWebhookConfiguration",
        "validate",
        vec![hook(
            "deny.test.io",
            hooks.url_config("/deny"),
            configmap_rules(&["CREATE", "UPDATE"]),
        )],
    )
    .await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k\n  namespace: default\ndata:\n  a: b\n";
    let (ok, _out, err) = kubectl.run(&["apply", "-f", "-"], Some(manifest)).await;
    assert!(!ok);
    assert!(
        err.contains(r#"admission webhook "deny.test.io" denied the request: no thanks"#),
        "{err}"
    );
}

/// A validating webhook applying only to config maps labelled `case: <case>`.
fn case_hook(name: &str, case: &str, client_config: Value, fail: bool) -> Value {
    let mut h = hook(name, client_config, configmap_rules(&["CREATE"]));
    h["objectSelector"] = json!({"matchLabels": {"case": case}});
    h["failurePolicy"] = json!(if fail { "Fail" } else { "Ignore" });
    h["timeoutSeconds"] = json!(1);
    h
}

async fn create_case(
    s: &TestApiServer,
    name: &str,
    case: &str,
    query: &str,
) -> (StatusCode, Value) {
    let body = labelled_configmap(name, json!({"case": case}));
    call(s, "POST", &format!("{CMS}{query}"), Some(body)).await
}

#[tokio::test]
async fn failure_policy_timeouts_call_errors_and_dry_run() {
    let s = server().await;
    let hooks = HookServer::start().await;
    // Nothing listens on port 1 (and no test can bind it), so connecting is refused.
    let closed = SocketAddr::from(([127, 0, 0, 1], 1));
    let other_ca = TestCa::new().unwrap();
    let mut bad_ca = hooks.url_config("/allow");
    bad_ca["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(other_ca.ca_pem()));
    let mut dry = case_hook("dry.test.io", "dry", hooks.url_config("/allow"), true);
    dry["sideEffects"] = json!("Some");
    register(
        &s,
        "ValidatingWebhookConfiguration",
        "cases",
        vec![
            case_hook("fail.test.io", "fail", hooks.url_config("/fail"), true),
            case_hook(
                "fail-ignore.test.io",
                "fail-ignore",
                hooks.url_config("/fail"),
                false,
            ),
            case_hook("hang.test.io", "hang", hooks.url_config("/hang"), true),
            case_hook(
                "hang-ignore.test.io",
                "hang-ignore",
                hooks.url_config("/hang"),
                false,
            ),
            case_hook(
                "down.test.io",
                "down",
                json!({"url": format!("https://{closed}/x"), "caBundle": hooks.ca_bundle}),
                true,
            ),
            case_hook("badca.test.io", "badca", bad_ca, true),
            dry,
        ],
    )
    .await;

    let (code, body) = create_case(&s, "f", "fail", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["reason"], "InternalError");
    assert_eq!(
        body["message"],
        r#"Internal error occurred: failed calling webhook "fail.test.io": failed to call webhook: an error on the server ("boom") has prevented the request from succeeding"#
    );
    let (code, body) = create_case(&s, "fi", "fail-ignore", "").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    let (code, body) = create_case(&s, "h", "hang", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["message"],
        format!(
            r#"Internal error occurred: failed calling webhook "hang.test.io": failed to call webhook: Post "https://{}/hang?timeout=1s": context deadline exceeded"#,
            hooks.addr
        )
    );
    let (code, body) = create_case(&s, "hi", "hang-ignore", "").await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    let (code, body) = create_case(&s, "d", "down", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["message"],
        format!(
            r#"Internal error occurred: failed calling webhook "down.test.io": failed to call webhook: Post "https://{closed}/x?timeout=1s": dial tcp {closed}: connect: connection refused"#
        )
    );
    let (code, body) = create_case(&s, "b", "badca", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["message"].as_str().unwrap().ends_with(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{body}"
    );
    assert!(
        hooks.seen("/allow").is_empty(),
        "an untrusted webhook gets no review"
    );

    let (code, body) = create_case(&s, "dr", "dry", "?dryRun=All").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        r#"admission webhook "dry.test.io" does not support dry run"#
    );
    let (code, _) = create_case(&s, "dr", "dry", "").await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(hooks.seen("/allow").len(), 1);
}

#[tokio::test]
async fn rules_and_selectors_choose_the_webhooks() {
    let s = server().await;
    let hooks = HookServer::start().await;
    let mut in_prod = hook(
        "ns.test.io",
        hooks.url_config("/allow/ns"),
        configmap_rules(&["CREATE"]),
    );
    in_prod["namespaceSelector"] =
        json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]});
    let status = hook(
        "status.test.io",
        hooks.url_config("/allow/status"),
        json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/status"]}]),
    );
    let cluster = hook(
        "cluster.test.io",
        hooks.url_config("/allow/cluster"),
        json!([{"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]),
    );
    register(
        &s,
        "ValidatingWebhookConfiguration",
        "rules",
        vec![in_prod, status, cluster],
    )
    .await;

    // namespaceSelector: the namespace's labels.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "prod", "labels": {"env": "prod"}}});
    assert_eq!(
        call(&s, "POST", "/api/v1/namespaces", Some(ns)).await.0,
        StatusCode::CREATED
    );
    let seen = hooks.seen("/allow/cluster");
    assert_eq!(seen.len(), 1, "a Namespace is cluster-scoped");
    assert_eq!(seen[0]["request"]["kind"]["kind"], "Namespace");
    assert!(seen[0]["request"].get("namespace").is_none());
    let mut cm = labelled_configmap("c", json!({}));
    cm["metadata"]["namespace"] = json!("prod");
    assert_eq!(
        call(&s, "POST", "/api/v1/namespaces/prod/configmaps", Some(cm))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&s, "POST", CMS, Some(labelled_configmap("c", json!({}))))
            .await
            .0,
        StatusCode::CREATED
    );
    let seen = hooks.seen("/allow/ns");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["request"]["namespace"], "prod");
    assert_eq!(
        hooks.seen("/allow/cluster").len(),
        1,
        "config maps are namespaced"
    );

    // Subresource rules: pods/status matches the status update only.
    let pod = crate::support::pod("default", "p", "");
    assert_eq!(
        call(&s, "POST", "/api/v1/namespaces/default/pods", Some(pod))
            .await
            .0,
        StatusCode::CREATED
    );
    let (_, mut current) = call(&s, "GET", "/api/v1/namespaces/default/pods/p", None).await;
    current["metadata"]["labels"]["x"] = json!("y");
    let (code, updated) = call(
        &s,
        "PUT",
        "/api/v1/namespaces/default/pods/p",
        Some(current),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert!(hooks.seen("/allow/status").is_empty());
    let mut st = updated.clone();
    st["status"]["phase"] = json!("Running");
    let (code, _) = call(
        &s,
        "PUT",
        "/api/v1/namespaces/default/pods/p/status",
        Some(st),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let seen = hooks.seen("/allow/status");
    assert_eq!(seen.len(), 1);
    let r = &seen[0]["request"];
    assert_eq!(r["subResource"], "status");
    assert_eq!(r["requestSubResource"], "status");
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["kind"]["kind"], "Pod");
    assert_eq!(r["object"]["status"]["phase"], "Running");
    assert_eq!(r["oldObject"]["status"]["phase"], "Pending");

    // Cluster scope: nodes match.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    assert_eq!(
        call(&s, "POST", "/api/v1/nodes", Some(node)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(hooks.seen("/allow/cluster").len(), 2);

    // Webhook configurations themselves are never sent to webhooks.
    register(&s, "MutatingWebhookConfiguration", "more", vec![]).await;
    assert_eq!(hooks.seen("/allow/cluster").len(), 2);
}

#[tokio::test]
async fn service_references_are_routed_and_verified_by_service_name() {
    let s = server().await;
    let hooks = HookServer::start().await;
    let svc_hook = |name: &str, svc: &str, port: u16, case: &str| {
        let cfg = json!({"service": {"namespace": "default", "name": svc, "port": port, "path": "/deny"},
            "caBundle": hooks.ca_bundle});
        case_hook(name, case, cfg, true)
    };
    register(
        &s,
        "ValidatingWebhookConfiguration",
        "svc",
        vec![
            svc_hook("svc.test.io", "hook", 443, "svc"),
            svc_hook("routed.test.io", "other", 8443, "routed"),
        ],
    )
    .await;

    // No Service yet: the apiserver cannot find it.
    let (code, body) = create_case(&s, "a", "svc", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["message"],
        r#"Internal error occurred: failed calling webhook "svc.test.io": failed to call webhook: service "hook" not found"#
    );

    // A Service whose port targets the webhook's port on this host.
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": "default"},
        "spec": {"ports": [{"port": 443, "targetPort": hooks.addr.port()}]}});
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/namespaces/default/services",
            Some(service)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (code, body) = create_case(&s, "a", "svc", "").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        r#"admission webhook "svc.test.io" denied the request: no thanks"#
    );

    // An explicit route, without any Service object.
    s.route_service("default", "other", 8443, hooks.addr);
    let (code, body) = create_case(&s, "b", "routed", "").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        r#"admission webhook "routed.test.io" denied the request: no thanks"#
    );
}

/// A CRD served at v1 (`spec.size`, a string) and v2 (`spec.sizeInt`, an integer; storage),
/// converted by `conversion` (a `spec.conversion` stanza).
fn gadget_crd(plural: &str, kind: &str, conversion: Value) -> Value {
    let version = |name: &str, storage: bool, field: &str, ty: &str| {
        json!({"name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {field: {"type": ty}}}}}}})
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [version("v1", false, "size", "string"), version("v2", true, "sizeInt", "integer")],
            "conversion": conversion}})
}

fn gadget(version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": format!("example.com/{version}"), "kind": kind,
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[tokio::test]
async fn conversion_webhook_converts_between_the_storage_and_requested_versions() {
    let s = server().await;
    let hooks = HookServer::start().await;
    let conversion = json!({"strategy": "Webhook", "webhook": {
        "clientConfig": hooks.url_config("/convert"), "conversionReviewVersions": ["v1"]}});
    s.create_object(gadget_crd("gadgets", "Gadget", conversion))
        .await
        .unwrap();
    let v1 = "/apis/example.com/v1/namespaces/default/gadgets";
    let v2 = "/apis/example.com/v2/namespaces/default/gadgets";

    // Written at v1: converted to the storage version, answered at v1.
    let (code, created) = call(
        &s,
        "POST",
        v1,
        Some(gadget("v1", "Gadget", "g1", json!({"size": "3"}))),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["apiVersion"], "example.com/v1");
    assert_eq!(created["spec"], json!({"size": "3"}));
    let stored = s
        .get_object("example.com/v2", "gadgets", "default", "g1")
        .unwrap();
    assert_eq!(stored["apiVersion"], "example.com/v2");
    assert_eq!(stored["spec"], json!({"sizeInt": 3}));
    let reviews = hooks.seen("/convert");
    assert_eq!(reviews.len(), 2, "to storage, then back for the answer");
    let req = &reviews[0]["request"];
    assert_eq!(reviews[0]["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(reviews[0]["kind"], "ConversionReview");
    assert_eq!(reviews[0]["query"], "timeout=30s");
    assert_eq!(req["desiredAPIVersion"], "example.com/v2");
    assert_eq!(req["objects"][0]["spec"], json!({"size": "3"}));
    assert!(!req["uid"].as_str().unwrap().is_empty());

    // Read at either version.
    hooks.forget();
    let (_, got) = call(&s, "GET", &format!("{v2}/g1"), None).await;
    assert_eq!(got["spec"], json!({"sizeInt": 3}));
    assert!(
        hooks.seen("/convert").is_empty(),
        "the storage version needs no conversion"
    );
    let (_, got) = call(&s, "GET", &format!("{v1}/g1"), None).await;
    assert_eq!(got["apiVersion"], "example.com/v1");
    assert_eq!(got["spec"], json!({"size": "3"}));
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);

    // Written at v2, listed at v1: one review for the whole list.
    let (code, _) = call(
        &s,
        "POST",
        v2,
        Some(gadget("v2", "Gadget", "g2", json!({"sizeInt": 7}))),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    hooks.forget();
    let (_, list) = call(&s, "GET", v1, None).await;
    let specs: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["spec"].clone())
        .collect();
    assert_eq!(specs, vec![json!({"size": "3"}), json!({"size": "7"})]);
    assert_eq!(list["items"][1]["apiVersion"], "example.com/v1");
    let reviews = hooks.seen("/convert");
    assert_eq!(reviews.len(), 1);
    assert_eq!(
        reviews[0]["request"]["objects"].as_array().unwrap().len(),
        2
    );

    // Patched at v1: the patch applies to the v1 form; stored at v2.
    let (code, patched) = crate::support::patch(
        &s,
        &format!("{v1}/g1"),
        "application/merge-patch+json",
        r#"{"spec":{"size":"5"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["spec"], json!({"size": "5"}));
    let stored = s
        .get_object("example.com/v2", "gadgets", "default", "g1")
        .unwrap();
    assert_eq!(stored["spec"], json!({"sizeInt": 5}));

    // Watched at v1: events at v1.
    let mut events = crate::support::watch(&s, &format!("{v1}?watch=true")).await;
    let first = bounded(events.next()).await.unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["apiVersion"], "example.com/v1");
    assert_eq!(first["object"]["spec"], json!({"size": "5"}));

    // The webhook gone: reads needing it fail as kube-apiserver words it; the storage
    // version is still served.
    // Nothing listens on port 1 (and no test can bind it), so connecting is refused.
    let closed = SocketAddr::from(([127, 0, 0, 1], 1));
    let (_, mut crd) = call(
        &s,
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com",
        None,
    )
    .await;
    crd["spec"]["conversion"]["webhook"]["clientConfig"]["url"] =
        json!(format!("https://{closed}/convert"));
    let (code, _) = call(
        &s,
        "PUT",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com",
        Some(crd),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = call(&s, "GET", &format!("{v1}/g1"), None).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["message"],
        format!(
            r#"Internal error occurred: conversion webhook for example.com/v2, Kind=Gadget failed: Post "https://{closed}/convert?timeout=30s": dial tcp {closed}: connect: connection refused"#
        )
    );
    assert_eq!(
        call(&s, "GET", &format!("{v2}/g1"), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn conversion_strategy_none_rewrites_the_api_version_only() {
    let s = server().await;
    s.create_object(gadget_crd("widgets", "Widget", json!({"strategy": "None"})))
        .await
        .unwrap();
    // Without a webhook the fields stay as written; only apiVersion follows the request.
    let v1 = "/apis/example.com/v1/namespaces/default/widgets";
    let (code, created) = call(
        &s,
        "POST",
        v1,
        Some(gadget("v1", "Widget", "w", json!({"size": "1"}))),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created["apiVersion"], "example.com/v1");
    let stored = s
        .get_object("example.com/v2", "widgets", "default", "w")
        .unwrap();
    assert_eq!(
        stored["apiVersion"], "example.com/v2",
        "stored at the storage version"
    );
    let (_, got) = call(
        &s,
        "GET",
        "/apis/example.com/v2/namespaces/default/widgets/w",
        None,
    )
    .await;
    assert_eq!(got["apiVersion"], "example.com/v2");
}
