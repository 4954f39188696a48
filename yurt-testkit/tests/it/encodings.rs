//! Request and response encodings besides JSON: protobuf bodies as kubectl and client-go send
//! them (bytes built with k8s-pb, as client-go builds them) and protobuf answers where the
//! `Accept` asks for them; YAML answers.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Value, json};

use crate::kubectl::Kubectl;
use crate::support::{bounded, call, request, send, server};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// client-go's default `Accept` for built-in kinds (kubelet's, kube-proxy's).
const CLIENT_GO_ACCEPT: &str = "application/vnd.kubernetes.protobuf, application/json";

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// A body as client-go's protobuf serializer writes it.
fn client_go_bytes(api_version: &str, kind: &str, msg: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(msg.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// The object message of a protobuf response body.
fn message<M: Message + Default>(body: &[u8]) -> M {
    assert!(
        body.starts_with(b"k8s\0"),
        "not protobuf: {:?}",
        String::from_utf8_lossy(body)
    );
    let unknown = Unknown::decode(&body[4..]).expect("runtime.Unknown");
    M::decode(&unknown.raw.unwrap_or_default()[..]).expect("object message")
}

/// One request with a body and an `Accept`; (status, content type, body).
async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, String, Bytes) {
    let mut req = request(method, path, content_type, body);
    if !accept.is_empty() {
        req.headers_mut().insert("accept", accept.parse().unwrap());
    }
    let resp = send(addr, req).await;
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = bounded(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, ct, body)
}

#[tokio::test]
async fn kubectl_create_sends_protobuf_and_it_is_taken() {
    let srv = server().await;
    let Some(k) = Kubectl::new(&srv) else { return };
    k.ok(&["create", "namespace", "edge"], None).await;
    k.ok(
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "edge",
            "--from-literal=a=1",
        ],
        None,
    )
    .await;
    k.ok(
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "edge",
            "--from-literal=p=hunter2",
        ],
        None,
    )
    .await;
    let (code, ns) = call(&srv, "GET", "/api/v1/namespaces/edge", None).await;
    assert_eq!(
        (code, &ns["status"]["phase"]),
        (StatusCode::OK, &json!("Active")),
        "{ns}"
    );
    let (_, cm) = call(&srv, "GET", "/api/v1/namespaces/edge/configmaps/cfg", None).await;
    assert_eq!(cm["data"], json!({"a": "1"}));
    let (_, secret) = call(&srv, "GET", "/api/v1/namespaces/edge/secrets/pw", None).await;
    assert_eq!(
        (&secret["data"], &secret["type"]),
        (&json!({"p": "aHVudGVyMg=="}), &json!("Opaque"))
    );
    // kubectl sent them as protobuf (it does for these generators), and still reads them back.
    let out = k
        .ok(
            &[
                "get",
                "configmap",
                "cfg",
                "-n",
                "edge",
                "-o",
                "jsonpath={.data.a}",
            ],
            None,
        )
        .await;
    assert_eq!(out, "1");
}

#[tokio::test]
async fn client_go_protobuf_create_get_update() {
    let srv = server().await;
    let addr = srv.addr();
    let cm = core::ConfigMap {
        metadata: Some(ObjectMeta {
            name: s("cfg"),
            namespace: s("default"),
            generate_name: s(""),
            ..Default::default()
        }),
        data: [("k".to_owned(), "v".to_owned())].into(),
        binary_data: [("b".to_owned(), vec![0, 255])].into(),
        immutable: None,
    };
    let path = "/api/v1/namespaces/default/configmaps";
    let body = client_go_bytes("v1", "ConfigMap", &cm);
    let (code, ct, resp) = exchange(addr, "POST", path, PROTOBUF, CLIENT_GO_ACCEPT, body).await;
    assert_eq!((code, ct.as_str()), (StatusCode::CREATED, PROTOBUF));
    let created: core::ConfigMap = message(&resp);
    let meta = created.metadata.clone().unwrap();
    assert!(meta.uid.is_some_and(|u| !u.is_empty()) && meta.resource_version.is_some());
    assert_eq!(
        (created.data, created.binary_data),
        (cm.data.clone(), cm.binary_data.clone())
    );
    let (_, stored) = call(&srv, "GET", &format!("{path}/cfg"), None).await;
    assert_eq!(stored["binaryData"], json!({"b": "AP8="}));

    // kubelet's Lease cycle: protobuf GET, then a protobuf PUT of the renewed Lease.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    srv.create_object(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edge-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 40}}),
    )
    .await
    .unwrap();
    let one = format!("{lease_path}/edge-1");
    let (code, ct, resp) = exchange(addr, "GET", &one, "", CLIENT_GO_ACCEPT, "").await;
    assert_eq!((code, ct.as_str()), (StatusCode::OK, PROTOBUF));
    let mut lease: Lease = message(&resp);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    assert_eq!(spec.lease_duration_seconds, Some(40));
    spec.renew_time = Some(MicroTime {
        seconds: Some(1_795_313_649),
        nanos: Some(252_001_000),
    });
    let body = client_go_bytes("coordination.k8s.io/v1", "Lease", &lease);
    let (code, ct, resp) = exchange(addr, "PUT", &one, PROTOBUF, CLIENT_GO_ACCEPT, body).await;
    assert_eq!(
        (code, ct.as_str()),
        (StatusCode::OK, PROTOBUF),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let (_, stored) = call(&srv, "GET", &one, None).await;
    assert_eq!(stored["spec"]["renewTime"], "2026-11-22T02:14:09.252001Z");

    // A JSON Accept still gets JSON; no Accept gets JSON.
    let (_, ct, _) = exchange(addr, "GET", &one, "", "application/json", "").await;
    assert_eq!(ct, "application/json");
    let (_, ct, _) = exchange(addr, "GET", &one, "", "", "").await;
    assert_eq!(ct, "application/json");
}

#[tokio::test]
async fn unsupported_kinds_fall_back_or_are_refused() {
    let srv = server().await;
    let addr = srv.addr();
    let pods = "/api/v1/namespaces/default/pods";
    // A DaemonSet in protobuf (no kubectl generator sends one): 415 naming the kind.
    let ds = k8s_pb::api::apps::v1::DaemonSet {
        metadata: Some(ObjectMeta {
            name: s("d"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = client_go_bytes("apps/v1", "DaemonSet", &ds);
    let daemonsets = "/apis/apps/v1/namespaces/default/daemonsets";
    let (code, _, resp) =
        exchange(addr, "POST", daemonsets, PROTOBUF, CLIENT_GO_ACCEPT, body).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let st: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(st["reason"], "UnsupportedMediaType");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.starts_with("protobuf bodies are decoded for ") && msg.contains("Kind=DaemonSet"),
        "{msg}"
    );
    // A Pod in protobuf (kubectl run) is taken, and answered in protobuf.
    let pod = core::Pod {
        metadata: Some(ObjectMeta {
            name: s("p"),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                image: s("nginx"),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = client_go_bytes("v1", "Pod", &pod);
    let (code, ct, resp) = exchange(addr, "POST", pods, PROTOBUF, CLIENT_GO_ACCEPT, body).await;
    assert_eq!((code, ct.as_str()), (StatusCode::CREATED, PROTOBUF));
    let stored = Unknown::decode(&resp[4..]).unwrap();
    let stored = core::Pod::decode(&stored.raw.unwrap()[..]).unwrap();
    let c = &stored.spec.unwrap().containers[0];
    assert_eq!(
        (c.name.as_deref(), c.image.as_deref()),
        (Some("c"), Some("nginx"))
    );
    assert_eq!(
        stored.metadata.unwrap().namespace.as_deref(),
        Some("default")
    );
    // Not protobuf at all behind the protobuf content type: 400.
    let (code, _, _) = exchange(addr, "POST", pods, PROTOBUF, "", "{}").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Pods (no protobuf form here) and lists: JSON when JSON is acceptable, 406 when not.
    let (code, ct, _) = exchange(addr, "GET", pods, "", CLIENT_GO_ACCEPT, "").await;
    assert_eq!((code, ct.as_str()), (StatusCode::OK, "application/json"));
    let (code, _, resp) = exchange(addr, "GET", pods, "", PROTOBUF, "").await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    let st: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(
        st["message"],
        "only the following media types are accepted: application/json, application/yaml"
    );
    let (code, _, _) = exchange(
        addr,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "",
        PROTOBUF,
        "",
    )
    .await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    // q-values: JSON preferred over protobuf even though protobuf is listed first.
    let (_, ct, _) = exchange(
        addr,
        "GET",
        "/api/v1/namespaces/default",
        "",
        "application/vnd.kubernetes.protobuf;q=0.5, application/json",
        "",
    )
    .await;
    assert_eq!(ct, "application/json");
    // The 404 for a missing object stays a JSON Status, which client-go decodes by content type.
    let (code, ct, _) = exchange(
        addr,
        "GET",
        "/api/v1/namespaces/default/configmaps/none",
        "",
        CLIENT_GO_ACCEPT,
        "",
    )
    .await;
    assert_eq!(
        (code, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/json")
    );
}

#[tokio::test]
async fn secrets_default_their_type_and_merge_string_data() {
    let srv = server().await;
    let (code, secret) = call(
        &srv,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "plain"}}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{secret}");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"a": "eA==", "b": "cGxhaW4="}));
    assert!(secret.get("stringData").is_none(), "{secret}");
}
