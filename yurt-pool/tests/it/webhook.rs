//! The webhook server against the test apiserver, over real TLS: the certificate Secret is
//! created once (also by two managers starting together), reused, and renewed when expiring or
//! when the wanted names change; the `caBundle` lands in the webhook configurations of
//! `deploy/yurt-manager/webhooks.yaml` and in the NodePool CRD's conversion stanza; and
//! AdmissionReview / ConversionReview round trips for every webhook (allow, mutate, deny), bad
//! bodies, and the per-webhook metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use yurt_pool::Metrics;
use yurt_pool::webhook::certs::{self, CertBundle};
use yurt_pool::webhook::handlers::*;
use yurt_pool::webhook::{CONVERSION_PATH, SecretOutcome, WebhookConfig, WebhookServer};
use yurt_testkit::TestApiServer;

use crate::support::{bounded, create_node, create_pool, server_with_crds};

const NS: &str = "kube-system";
const SECRET: &str = "yurt-manager-webhook-certs";

fn config() -> WebhookConfig {
    WebhookConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        host: Some("127.0.0.1".into()),
        // Long enough that only start-up writes happen during a test.
        resync: Duration::from_secs(3600),
        ..WebhookConfig::default()
    }
}

async fn start(s: &TestApiServer, metrics: Metrics) -> WebhookServer {
    bounded(WebhookServer::bind(s.client(), config(), metrics))
        .await
        .expect("webhook server starts")
}

/// A webhook server serving in a background task (stopped when dropped).
struct Serving {
    addr: SocketAddr,
    ca: String,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn ca_bundle(&self) -> &str {
        &self.ca
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serving(s: &TestApiServer, metrics: Metrics) -> Serving {
    let server = start(s, metrics).await;
    Serving {
        addr: server.local_addr(),
        ca: server.ca_bundle().to_owned(),
        task: tokio::spawn(server.serve()),
    }
}

/// Creates the webhook configurations of `deploy/yurt-manager/webhooks.yaml` as shipped.
async fn apply_deploy_configurations(s: &TestApiServer) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/yurt-manager/webhooks.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        match value["kind"].as_str().unwrap() {
            "MutatingWebhookConfiguration" => {
                let api: Api<MutatingWebhookConfiguration> = Api::all(s.client());
                let obj = serde_json::from_value(value).unwrap();
                bounded(api.create(&PostParams::default(), &obj))
                    .await
                    .unwrap();
            }
            "ValidatingWebhookConfiguration" => {
                let api: Api<ValidatingWebhookConfiguration> = Api::all(s.client());
                let obj = serde_json::from_value(value).unwrap();
                bounded(api.create(&PostParams::default(), &obj))
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
}

async fn secret_bundle(s: &TestApiServer) -> (CertBundle, String) {
    let api: Api<Secret> = Api::namespaced(s.client(), NS);
    let secret = bounded(api.get(SECRET)).await.unwrap();
    (
        certs::from_secret(&secret).expect("all four PEMs"),
        secret.metadata.resource_version.unwrap(),
    )
}

async fn overwrite_secret(s: &TestApiServer, bundle: &CertBundle) {
    let api: Api<Secret> = Api::namespaced(s.client(), NS);
    let mut secret = bounded(api.get(SECRET)).await.unwrap();
    let data = secret.data.as_mut().unwrap();
    for (k, v) in [
        (certs::CA_CERT_KEY, &bundle.ca_cert),
        (certs::CA_KEY_KEY, &bundle.ca_key),
        (certs::CERT_KEY, &bundle.cert),
        (certs::KEY_KEY, &bundle.key),
    ] {
        data.insert(k.to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec()));
    }
    bounded(api.replace(SECRET, &PostParams::default(), &secret))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_created_once_reused_renewed_and_ca_bundles_patched() {
    let s = server_with_crds().await;
    apply_deploy_configurations(&s).await;

    // Two managers starting together: one creates the Secret, the other uses it.
    let (a, b) = tokio::join!(start(&s, Metrics::new()), start(&s, Metrics::new()));
    let mut outcomes = [a.secret_outcome(), b.secret_outcome()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [SecretOutcome::Created, SecretOutcome::Reused]);
    assert_eq!(a.ca_bundle(), b.ca_bundle());
    let (stored, rv) = secret_bundle(&s).await;
    assert_eq!(stored.ca_cert, a.ca_bundle());
    certs::check(&stored, &config().dns_names(), std::time::SystemTime::now()).unwrap();
    let api: Api<Secret> = Api::namespaced(s.client(), NS);
    let secret = bounded(api.get(SECRET)).await.unwrap();
    let keys: Vec<&str> = secret
        .data
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert.pem",
            "key.pem",
            "tls.crt",
            "tls.key"
        ]
    );

    // Every webhook of both configurations carries the CA and points at one of the servers.
    let ports = [a.local_addr().port(), b.local_addr().port()];
    let ca = a.ca_bundle().as_bytes().to_vec();
    let check_config = |cfg: &k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
                        path: &str| {
        assert_eq!(cfg.ca_bundle.as_ref().map(|b| &b.0), Some(&ca), "{path}");
        assert_eq!(cfg.service, None, "{path}");
        let url = cfg.url.as_deref().unwrap();
        assert!(
            ports
                .iter()
                .any(|p| url == format!("https://127.0.0.1:{p}{path}")),
            "{url}"
        );
    };
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(s.client());
    let m = bounded(mutating.get("yurt-manager-mutating-webhook-configuration"))
        .await
        .unwrap();
    let paths: Vec<String> = m
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            let url = w.client_config.url.clone().unwrap();
            url[url.find('/').unwrap() + 2..]
                .split_once('/')
                .map(|(_, p)| format!("/{p}"))
                .unwrap()
        })
        .collect();
    assert_eq!(
        paths,
        [NODE_MUTATE_PATH, NODEPOOL_MUTATE_PATH, POD_MUTATE_PATH]
    );
    for (w, p) in m.webhooks.iter().flatten().zip(&paths) {
        check_config(&w.client_config, p);
    }
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(s.client());
    let v = bounded(validating.get("yurt-manager-validating-webhook-configuration"))
        .await
        .unwrap();
    let vpaths = [NODE_VALIDATE_PATH, NODEPOOL_VALIDATE_PATH];
    assert_eq!(v.webhooks.as_ref().unwrap().len(), 2);
    for (w, p) in v.webhooks.iter().flatten().zip(vpaths) {
        check_config(&w.client_config, p);
    }
    let crds: Api<CustomResourceDefinition> = Api::all(s.client());
    let crd = bounded(crds.get("nodepools.apps.openyurt.io"))
        .await
        .unwrap();
    let conv = crd
        .spec
        .conversion
        .unwrap()
        .webhook
        .unwrap()
        .client_config
        .unwrap();
    assert_eq!(conv.ca_bundle.as_ref().map(|b| &b.0), Some(&ca));
    assert!(conv.url.unwrap().ends_with(CONVERSION_PATH));

    // A third start reuses the Secret without writing it.
    let c = start(&s, Metrics::new()).await;
    assert_eq!(c.secret_outcome(), SecretOutcome::Reused);
    assert_eq!(c.ca_bundle(), a.ca_bundle());
    assert_eq!(
        secret_bundle(&s).await.1,
        rv,
        "a sound Secret is not rewritten"
    );

    // Expiring serving certificate: renewed under the same CA (the caBundle stays).
    let expiring =
        certs::reissue(&stored, &config().dns_names(), Duration::from_secs(86_400)).unwrap();
    overwrite_secret(&s, &expiring).await;
    let d = start(&s, Metrics::new()).await;
    assert_eq!(d.secret_outcome(), SecretOutcome::Replaced);
    assert_eq!(d.ca_bundle(), stored.ca_cert);
    let (renewed, _) = secret_bundle(&s).await;
    assert_ne!(renewed.cert, expiring.cert);
    certs::check(
        &renewed,
        &config().dns_names(),
        std::time::SystemTime::now(),
    )
    .unwrap();

    // Certificates for other names (another Service): replaced too.
    let other = certs::generate(
        &certs::dns_names("other-service", NS, None),
        certs::SERVING_VALIDITY,
    )
    .unwrap();
    overwrite_secret(&s, &other).await;
    let e = start(&s, Metrics::new()).await;
    assert_eq!(e.secret_outcome(), SecretOutcome::Replaced);
    let (fixed, _) = secret_bundle(&s).await;
    certs::check(&fixed, &config().dns_names(), std::time::SystemTime::now()).unwrap();
}

/// One HTTPS request to the webhook server, trusting only `ca`, verifying `server_name`.
async fn call(
    addr: SocketAddr,
    ca: &str,
    server_name: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = bounded(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let stream = bounded(connector.connect(name, tcp))
        .await
        .expect("TLS handshake with the webhook certificate");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", server_name)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = bounded(sender.send_request(req)).await.unwrap();
    let status = resp.status().as_u16();
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    driver.abort();
    (status, body)
}

fn admission_review(op: &str, object: Value, old: Value, user: &str) -> Vec<u8> {
    let name = object
        .pointer("/metadata/name")
        .or(old.pointer("/metadata/name"))
        .cloned()
        .unwrap_or(json!(""));
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "uid-1", "kind": {"group": "", "version": "v1", "kind": "X"},
            "resource": {"group": "", "version": "v1", "resource": "x"},
            "name": name, "operation": op, "userInfo": {"username": user},
            "object": object, "oldObject": old}
    }))
    .unwrap()
}

/// Posts a review to `path` and returns its `response`, with `object` patched by any
/// JSONPatch it carries (under `"patched"`).
async fn review(server: &Serving, path: &str, body: Vec<u8>) -> Value {
    use base64::Engine as _;
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let (code, out) = call(
        server.local_addr(),
        server.ca_bundle(),
        "yurt-manager-webhook-service.kube-system.svc",
        "POST",
        path,
        "application/json",
        body,
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["kind"], "AdmissionReview");
    let mut response = out["response"].clone();
    assert_eq!(response["uid"], "uid-1");
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut object = sent["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).unwrap();
        response["patched"] = object;
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_and_conversion_reviews_round_trip_over_tls() {
    let s = server_with_crds().await;
    let metrics = Metrics::new();
    let server = serving(&s, metrics.clone()).await;
    let nothing = Value::Null;

    // NodePool default: mutate.
    let pool = json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
        "metadata": {"name": "hz"}, "spec": {"hostNetwork": true}});
    let r = review(
        &server,
        NODEPOOL_MUTATE_PATH,
        admission_review("CREATE", pool.clone(), nothing.clone(), "admin"),
    )
    .await;
    assert_eq!(r["allowed"], true);
    let defaulted = r["patched"].clone();
    assert_eq!(defaulted["spec"]["type"], "Edge");
    assert_eq!(defaulted["spec"]["leaderReplicas"], 1);
    assert_eq!(
        defaulted["metadata"]["labels"]["nodepool.openyurt.io/type"],
        "edge"
    );
    // NodePool validate: allow the defaulted pool, deny a type change.
    let r = review(
        &server,
        NODEPOOL_VALIDATE_PATH,
        admission_review("CREATE", defaulted.clone(), nothing.clone(), "admin"),
    )
    .await;
    assert_eq!((r["allowed"].clone(), r.get("patch")), (json!(true), None));
    let mut cloud = defaulted.clone();
    cloud["spec"]["type"] = json!("Cloud");
    cloud["spec"]["hostNetwork"] = json!(false);
    let r = review(
        &server,
        NODEPOOL_VALIDATE_PATH,
        admission_review("UPDATE", cloud, defaulted.clone(), "admin"),
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"],
        "nodepools.apps.openyurt.io \"hz\" is forbidden: spec.type: Forbidden: pool type can't be changed"
    );

    // Node default reads the pool from the apiserver.
    create_pool(&s, "hz", json!({"type": "Edge", "hostNetwork": true})).await;
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "edge-1", "labels": {"apps.openyurt.io/desired-nodepool": "hz"}}});
    let r = review(
        &server,
        NODE_MUTATE_PATH,
        admission_review("CREATE", node, nothing.clone(), "system:node:edge-1"),
    )
    .await;
    let labels = &r["patched"]["metadata"]["labels"];
    assert_eq!(labels["apps.openyurt.io/nodepool"], "hz");
    assert_eq!(labels["nodepool.openyurt.io/hostnetwork"], "true");
    let stray =
        json!({"metadata": {"name": "edge-2", "labels": {"apps.openyurt.io/nodepool": "nowhere"}}});
    let r = review(
        &server,
        NODE_MUTATE_PATH,
        admission_review("CREATE", stray, nothing.clone(), "admin"),
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "nodepools.apps.openyurt.io \"nowhere\" not found"
    );
    // Node validate: a pool label changed in place is refused.
    let old =
        json!({"metadata": {"name": "edge-1", "labels": {"apps.openyurt.io/nodepool": "hz"}}});
    let new =
        json!({"metadata": {"name": "edge-1", "labels": {"apps.openyurt.io/nodepool": "sh"}}});
    let r = review(
        &server,
        NODE_VALIDATE_PATH,
        admission_review("UPDATE", new, old, "admin"),
    )
    .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 422);

    // NodePool delete: refused while a node carries the pool label, allowed after.
    create_node(
        &s,
        "member",
        json!({"apps.openyurt.io/nodepool": "hz"}),
        true,
    )
    .await;
    let del = || admission_review("DELETE", Value::Null, defaulted.clone(), "admin");
    let r = review(&server, NODEPOOL_VALIDATE_PATH, del()).await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot remove nonempty pool"),
        "{r}"
    );
    let nodes: Api<Node> = Api::all(s.client());
    bounded(nodes.delete("member", &DeleteParams::default()))
        .await
        .unwrap();
    let r = review(&server, NODEPOOL_VALIDATE_PATH, del()).await;
    assert_eq!(r["allowed"], true);

    // Pod default.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default",
        "annotations": {"apps.openyurt.io/exclude-host-network-pool": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let r = review(
        &server,
        POD_MUTATE_PATH,
        admission_review("CREATE", pod, nothing.clone(), "admin"),
    )
    .await;
    assert_eq!(
        r["patched"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "nodepool.openyurt.io/hostnetwork"
    );

    // Conversion: v1beta1 -> v1beta2 and back, over the IP SAN this time.
    let v1 = json!({"apiVersion": "apps.openyurt.io/v1beta1", "kind": "NodePool",
        "metadata": {"name": "old", "uid": "u"}, "spec": {"type": "Cloud", "labels": {"a": "b"}}});
    let conversion = |objects: Value, desired: &str| {
        serde_json::to_vec(&json!({"apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview", "request": {"uid": "conv-1",
            "desiredAPIVersion": desired, "objects": objects}}))
        .unwrap()
    };
    let convert = |body: Vec<u8>| {
        call(
            server.local_addr(),
            server.ca_bundle(),
            "127.0.0.1",
            "POST",
            CONVERSION_PATH,
            "application/json",
            body,
        )
    };
    let (code, out) = convert(conversion(json!([v1.clone()]), "apps.openyurt.io/v1beta2")).await;
    assert_eq!(code, 200);
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["response"]["uid"], "conv-1");
    assert_eq!(out["response"]["result"]["status"], "Success");
    let up = out["response"]["convertedObjects"][0].clone();
    assert_eq!(up["apiVersion"], "apps.openyurt.io/v1beta2");
    assert_eq!(up["spec"]["leaderElectionStrategy"], "random");
    let (_, out) = convert(conversion(json!([up]), "apps.openyurt.io/v1beta1")).await;
    let out: Value = serde_json::from_slice(&out).unwrap();
    let down = &out["response"]["convertedObjects"][0];
    assert_eq!(down["spec"], v1["spec"]);
    let (code, out) = convert(conversion(
        json!([{"apiVersion": "v1", "kind": "Pod"}]),
        "apps.openyurt.io/v1beta2",
    ))
    .await;
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (code, out["response"]["result"]["status"].clone()),
        (200, json!("Failure"))
    );

    // Bad requests: clear Status answers the apiserver treats as a failed call.
    let addr = server.local_addr();
    let ca = server.ca_bundle();
    let bad = |method: &'static str, path: &'static str, ct: &'static str, body: &'static [u8]| {
        call(addr, ca, "127.0.0.1", method, path, ct, body.to_vec())
    };
    let (code, out) = bad("POST", NODE_MUTATE_PATH, "application/json", b"{}").await;
    assert_eq!(code, 400);
    let status: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["message"], "AdmissionReview: apiVersion is missing");
    let (code, out) = bad("POST", POD_MUTATE_PATH, "application/json", b"not json").await;
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&out).contains("not valid JSON"));
    let (code, _) = bad("POST", CONVERSION_PATH, "application/json", b"[]").await;
    assert_eq!(code, 400);
    assert_eq!(
        bad("GET", NODE_MUTATE_PATH, "application/json", b"")
            .await
            .0,
        405
    );
    assert_eq!(
        bad("POST", NODE_MUTATE_PATH, "text/plain", b"{}").await.0,
        415
    );
    assert_eq!(
        bad("POST", "/mutate-elsewhere", "application/json", b"{}")
            .await
            .0,
        404
    );

    // Per-webhook counts and latency.
    assert_eq!(metrics.webhook_request_count(NODEPOOL_MUTATE_PATH, 200), 1);
    assert_eq!(
        metrics.webhook_request_count(NODEPOOL_VALIDATE_PATH, 200),
        4
    );
    assert_eq!(metrics.webhook_request_count(NODE_MUTATE_PATH, 400), 1);
    assert_eq!(metrics.webhook_request_count(CONVERSION_PATH, 200), 3);
    let text = metrics.encode();
    assert!(
        text.contains(
            "controller_runtime_webhook_latency_seconds_count{webhook=\"/mutate-core-openyurt-io-v1-node\"} 5"
        ),
        "{text}"
    );
    assert!(
        text.contains("controller_runtime_webhook_requests_in_flight"),
        "{text}"
    );
}

// End to end: kubectl -> test apiserver -> (admission / conversion over TLS, through the
// webhook Service as shipped in deploy/yurt-manager/webhooks.yaml) -> this webhook server.

const KUBECTL: &str = "/usr/bin/kubectl";

/// kubectl with a kubeconfig for one test apiserver.
struct Kubectl {
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(s: &TestApiServer) -> Option<Kubectl> {
        if !Path::new(KUBECTL).exists() {
            eprintln!("skipping: {KUBECTL} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), s.kubeconfig()).unwrap();
        Some(Kubectl { dir })
    }

    /// Runs kubectl with `stdin`; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl runs");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        drop(pipe);
        let out = bounded(child.wait_with_output()).await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn apply(&self, manifest: &Value) -> (bool, String) {
        let (ok, out, err) = self
            .run(&["apply", "-f", "-"], Some(&manifest.to_string()))
            .await;
        (ok, format!("{out}{err}"))
    }

    async fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let (ok, out, err) = self.run(&args, None).await;
        assert!(ok, "kubectl get {what:?}: {err}");
        serde_json::from_str(&out).unwrap()
    }
}

/// The deploy configurations and Service, and a webhook server they reach through the Service
/// (as in a cluster), with the CRD's conversion stanza pointing at it too.
async fn cluster_with_webhooks(s: &TestApiServer) -> Serving {
    apply_deploy_configurations(s).await;
    let cfg = WebhookConfig {
        host: None,
        ..config()
    };
    let server = bounded(WebhookServer::bind(s.client(), cfg, Metrics::new()))
        .await
        .expect("webhook server starts");
    s.route_service(NS, "yurt-manager-webhook-service", 443, server.local_addr());
    Serving {
        addr: server.local_addr(),
        ca: server.ca_bundle().to_owned(),
        task: tokio::spawn(server.serve()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_meets_every_webhook() {
    let s = server_with_crds().await;
    let Some(kubectl) = Kubectl::new(&s) else {
        return;
    };
    let _server = cluster_with_webhooks(&s).await;

    // NodePool default (mutate) through kubectl.
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "hz"}, "spec": {"hostNetwork": true}}),
        )
        .await;
    assert!(ok, "{out}");
    let pool = kubectl.get(&["nodepool", "hz"]).await;
    assert_eq!(pool["spec"]["type"], "Edge");
    assert_eq!(pool["spec"]["leaderElectionStrategy"], "random");
    assert_eq!(pool["spec"]["leaderReplicas"], 1);
    assert_eq!(
        pool["metadata"]["labels"]["nodepool.openyurt.io/type"],
        "edge"
    );
    // NodePool validate: deny on create, and an immutable field on update; the webhook's
    // words reach the user.
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "bad"}, "spec": {"type": "Cloud", "hostNetwork": true}}),
        )
        .await;
    assert!(!ok);
    assert!(
        out.contains("The NodePool \"bad\" is invalid: spec.hostNetwork: Invalid value: true: Cloud NodePool can not support hostNetwork"),
        "{out}"
    );
    // Updates through `kubectl apply` too (kubectl sends a JSON merge patch for a custom
    // resource, as the served OpenAPI tells it).
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "hz"}, "spec": {"type": "Cloud", "hostNetwork": false}}),
        )
        .await;
    assert!(!ok);
    assert!(
        out.contains("admission webhook \"v.v1beta2.nodepool.kb.io\" denied the request: nodepools.apps.openyurt.io \"hz\" is forbidden: spec.type: Forbidden: pool type can't be changed"),
        "{out}"
    );
    // NodePool validate allows a label change.
    let (ok, err) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "hz"}, "spec": {"hostNetwork": true, "labels": {"site": "hz"}}}),
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        kubectl.get(&["nodepool", "hz"]).await["spec"]["labels"]["site"],
        "hz"
    );

    // Node default (mutate) and validate (deny).
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1",
            "labels": {"apps.openyurt.io/desired-nodepool": "hz"}}}),
        )
        .await;
    assert!(ok, "{out}");
    let node = kubectl.get(&["node", "edge-1"]).await;
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["apps.openyurt.io/nodepool"], "hz");
    assert_eq!(labels["nodepool.openyurt.io/type"], "edge");
    assert_eq!(labels["nodepool.openyurt.io/hostnetwork"], "true");
    // Moving the node to another existing pool in place: refused by the validating webhook.
    create_pool(&s, "sh", json!({"type": "Edge"})).await;
    let (ok, _, err) = kubectl
        .run(
            &[
                "label",
                "node",
                "edge-1",
                "apps.openyurt.io/nodepool=sh",
                "--overwrite",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("The Node \"edge-1\" is invalid: metadata.labels.apps.openyurt.io/nodepool: Forbidden: apps.openyurt.io/nodepool can only be added or removed, not modified in-place"),
        "{err}"
    );
    let (ok, _, err) = kubectl
        .run(&["label", "node", "edge-1", "team=a"], None)
        .await;
    assert!(ok, "{err}");

    // NodePool delete: refused while edge-1 is a member.
    let (ok, _, err) = kubectl.run(&["delete", "nodepool", "hz"], None).await;
    assert!(!ok);
    assert!(
        err.contains("cannot remove nonempty pool, please drain the pool before deleting"),
        "{err}"
    );

    // Pod default (mutate).
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p",
            "namespace": "default",
            "annotations": {"apps.openyurt.io/exclude-host-network-pool": "true"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert!(ok, "{out}");
    let pod = kubectl.get(&["pod", "p", "-n", "default"]).await;
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0],
        json!({"key": "nodepool.openyurt.io/hostnetwork", "operator": "NotIn", "values": ["true"]})
    );

    // Emptied, the pool can go.
    let (ok, _, err) = kubectl.run(&["delete", "node", "edge-1"], None).await;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl.run(&["delete", "nodepool", "hz"], None).await;
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1beta1_nodepools_read_back_as_v1beta2_and_back() {
    let s = server_with_crds().await;
    let Some(kubectl) = Kubectl::new(&s) else {
        return;
    };
    let _server = cluster_with_webhooks(&s).await;

    // Written as v1beta1, read as v1beta2 (conversion fills upstream's defaults).
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta1", "kind": "NodePool",
            "metadata": {"name": "old"},
            "spec": {"type": "Cloud", "labels": {"a": "b"},
                     "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
        )
        .await;
    assert!(ok, "{out}");
    let pools: Api<yurt_core::crd::NodePool> = Api::all(s.client());
    let stored = bounded(pools.get("old")).await.unwrap();
    assert_eq!(stored.spec.type_, Some(yurt_core::crd::NodePoolType::Cloud));
    assert_eq!(stored.spec.inter_connectivity, Some(false));
    assert_eq!(stored.spec.leader_replicas, Some(1));
    assert_eq!(stored.spec.labels["a"], "b");
    assert_eq!(stored.spec.taints[0].key, "k");
    // ... and back as v1beta1.
    let back = kubectl
        .get(&["nodepools.v1beta1.apps.openyurt.io", "old"])
        .await;
    assert_eq!(back["apiVersion"], "apps.openyurt.io/v1beta1");
    assert_eq!(back["spec"]["type"], "Cloud");
    assert_eq!(back["spec"]["labels"], json!({"a": "b"}));
    assert!(back["spec"].get("leaderReplicas").is_none());

    // A v1beta2 pool with leader settings, edited through v1beta1, keeps them.
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "new"},
            "spec": {"type": "Edge", "enableLeaderElection": true, "leaderReplicas": 2,
                     "leaderElectionStrategy": "mark",
                     "leaderNodeLabelSelector": {"role": "leader"}}}),
        )
        .await;
    assert!(ok, "{out}");
    let mut as_v1 = kubectl
        .get(&["nodepools.v1beta1.apps.openyurt.io", "new"])
        .await;
    assert_eq!(as_v1["apiVersion"], "apps.openyurt.io/v1beta1");
    as_v1["spec"]["labels"] = json!({"edited": "through-v1beta1"});
    let (ok, _, err) = kubectl
        .run(&["replace", "-f", "-"], Some(&as_v1.to_string()))
        .await;
    assert!(ok, "{err}");
    let new = bounded(pools.get("new")).await.unwrap();
    assert_eq!(new.spec.labels["edited"], "through-v1beta1");
    assert_eq!(new.spec.leader_replicas, Some(2));
    assert_eq!(
        new.spec.leader_election_strategy,
        Some(yurt_core::crd::LeaderElectionStrategy::Mark)
    );
    assert_eq!(new.spec.leader_node_label_selector["role"], "leader");
    assert_eq!(new.spec.enable_leader_election, Some(true));
    assert!(
        !new.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(yurt_core::crd::nodepool_v1beta1::V1BETA2_FIELDS_ANNOTATION),
        "the stash is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_fails_closed_for_pools_and_open_for_nodes() {
    let s = server_with_crds().await;
    let Some(kubectl) = Kubectl::new(&s) else {
        return;
    };
    let mut server = cluster_with_webhooks(&s).await;
    create_pool(
        &s,
        "hz",
        json!({"type": "Edge", "leaderElectionStrategy": "random"}),
    )
    .await;
    // Stop the server and wait until its task (and so its listener) is gone.
    server.task.abort();
    let _ = bounded(&mut server.task).await;
    drop(server);
    let api: Api<yurt_core::crd::NodePool> = Api::all(s.client());
    let (ok, err) = kubectl
        .apply(
            &json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
            "metadata": {"name": "later"}, "spec": {"type": "Edge"}}),
        )
        .await;
    assert!(!ok, "{err}");
    // failurePolicy Fail: the pool is refused with the call failure.
    assert!(
        err.contains(
            "Internal error occurred: failed calling webhook \"m.v1beta2.nodepool.kb.io\""
        ),
        "{err}"
    );
    assert!(bounded(api.get_opt("later")).await.unwrap().is_none());
    // failurePolicy Ignore: the node is admitted, unmutated.
    let (ok, out) = kubectl
        .apply(
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-9",
            "labels": {"apps.openyurt.io/desired-nodepool": "hz"}}}),
        )
        .await;
    assert!(ok, "{out}");
    let node = kubectl.get(&["node", "edge-9"]).await;
    assert!(
        node["metadata"]["labels"]
            .get("apps.openyurt.io/nodepool")
            .is_none(),
        "{node}"
    );
}

/// The serving certificate `addr` presents (DER), trusting `ca`.
async fn presented_certificate(addr: SocketAddr, ca: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = bounded(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = bounded(connector.connect(name, tcp)).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_renews_the_certificate_in_place_and_restores_ca_bundles() {
    let s = server_with_crds().await;
    apply_deploy_configurations(&s).await;
    let cfg = WebhookConfig {
        resync: Duration::from_millis(200),
        ..config()
    };
    let server = bounded(WebhookServer::bind(s.client(), cfg, Metrics::new()))
        .await
        .unwrap();
    let addr = server.local_addr();
    let ca = server.ca_bundle().to_owned();
    let _serving = Serving {
        addr,
        ca: ca.clone(),
        task: tokio::spawn(server.serve()),
    };
    let (first, _) = secret_bundle(&s).await;
    assert_eq!(presented_certificate(addr, &ca).await, der_of(&first.cert));

    // The Secret's certificate starts to expire: the running server renews it and serves the
    // new one, no restart.
    let expiring =
        certs::reissue(&first, &config().dns_names(), Duration::from_secs(86_400)).unwrap();
    overwrite_secret(&s, &expiring).await;
    let renewed = crate::support::eventually("the Secret renewed", || {
        let s = &s;
        let expiring = &expiring;
        async move {
            let (now, _) = secret_bundle(s).await;
            (now.cert != expiring.cert).then_some(now)
        }
    })
    .await;
    assert_eq!(renewed.ca_cert, ca, "renewed under the same CA");
    crate::support::eventually("the renewed certificate served", || {
        let ca = ca.clone();
        let want = der_of(&renewed.cert);
        async move { (presented_certificate(addr, &ca).await == want).then_some(()) }
    })
    .await;

    // Someone re-applies the shipped configuration (no caBundle): it is written again.
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(s.client());
    let mut m = bounded(mutating.get("yurt-manager-mutating-webhook-configuration"))
        .await
        .unwrap();
    for w in m.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = None;
    }
    bounded(mutating.replace(
        "yurt-manager-mutating-webhook-configuration",
        &PostParams::default(),
        &m,
    ))
    .await
    .unwrap();
    crate::support::eventually("the caBundle written again", || {
        let mutating = mutating.clone();
        let ca = ca.clone();
        async move {
            let m = mutating
                .get("yurt-manager-mutating-webhook-configuration")
                .await
                .ok()?;
            m.webhooks
                .iter()
                .flatten()
                .all(|w| {
                    w.client_config.ca_bundle.as_ref().map(|b| &b.0)
                        == Some(&ca.as_bytes().to_vec())
                })
                .then_some(())
        }
    })
    .await;
}
