//! `yurt_core::protobuf`: bodies built with k8s-pb exactly as client-go sends them (every Go
//! string written even when empty, zero times as empty messages) decode to the apiserver's JSON,
//! and encoding that JSON gives back the same messages.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::events::v1 as events;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, MicroTime, ObjectMeta, OwnerReference, Time,
};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use pretty_assertions::assert_eq;
use prost::Message;
use serde_json::{Value, json};
use yurt_core::protobuf::{self, ProtobufError};

/// `Some("")`: Go writes every non-pointer string, empty or not.
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

/// The object's message inside an encoded body.
fn raw_of(body: &[u8]) -> Vec<u8> {
    let unknown = Unknown::decode(&body[4..]).expect("envelope");
    unknown.raw.expect("raw")
}

/// ObjectMeta as client-go fills it for a new object: name and namespace set, every other
/// string empty, creationTimestamp the zero time (an empty message).
fn new_meta(name: &str, namespace: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(Time::default()),
        ..Default::default()
    })
}

/// Decodes client-go's bytes, checks the JSON, then encodes the JSON and checks that the
/// message decodes to `canonical` (client-go's message without Go's empty-value noise).
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(
    api_version: &str,
    kind: &str,
    sent: &M,
    canonical: &M,
    want: Value,
) {
    let body = client_go_bytes(api_version, kind, sent);
    let got = protobuf::decode(&body).expect("decode");
    assert_eq!(got, want);
    let encoded = protobuf::encode(&got).expect("encode");
    assert_eq!(
        &M::decode(&raw_of(&encoded)[..]).expect("message"),
        canonical
    );
    assert_eq!(protobuf::decode(&encoded).expect("decode again"), want);
}

#[test]
fn configmap_as_kubectl_create_sends_it() {
    let sent = core::ConfigMap {
        metadata: new_meta("cfg", "default"),
        immutable: None,
        data: BTreeMap::from([("k".into(), "v".into()), ("empty".into(), String::new())]),
        binary_data: BTreeMap::from([("bin".into(), vec![0, 1, 254, 255])]),
    };
    let canonical = core::ConfigMap {
        metadata: Some(ObjectMeta {
            name: s("cfg"),
            namespace: s("default"),
            ..Default::default()
        }),
        ..sent.clone()
    };
    let want = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": null},
        "data": {"k": "v", "empty": ""},
        "binaryData": {"bin": "AAH+/w=="},
    });
    check("v1", "ConfigMap", &sent, &canonical, want);
}

#[test]
fn object_meta_every_field() {
    let meta = ObjectMeta {
        name: s("web-0"),
        generate_name: s("web-"),
        namespace: s("apps"),
        self_link: s("/api/v1/namespaces/apps/secrets/web-0"),
        uid: s("8d1c0b4e-0000-4000-8000-000000000001"),
        resource_version: s("42"),
        generation: Some(3),
        creation_timestamp: Some(Time {
            seconds: Some(1_795_313_649),
            nanos: Some(0),
        }),
        deletion_timestamp: Some(Time {
            seconds: Some(1_795_313_700),
            nanos: Some(0),
        }),
        deletion_grace_period_seconds: Some(0),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        annotations: BTreeMap::from([("note".into(), "x".into())]),
        owner_references: vec![OwnerReference {
            api_version: s("apps/v1"),
            kind: s("StatefulSet"),
            name: s("web"),
            uid: s("u-1"),
            controller: Some(true),
            block_owner_deletion: Some(false),
        }],
        finalizers: vec!["example.com/keep".into()],
        managed_fields: vec![ManagedFieldsEntry {
            manager: s("kubectl-create"),
            operation: s("Update"),
            api_version: s("v1"),
            time: Some(Time {
                seconds: Some(1_795_313_649),
                nanos: Some(0),
            }),
            fields_type: s("FieldsV1"),
            fields_v1: Some(FieldsV1 {
                raw: Some(br#"{"f:data":{".":{},"f:k":{}}}"#.to_vec()),
            }),
            subresource: s("status"),
        }],
    };
    let sent = core::Secret {
        metadata: Some(meta),
        immutable: Some(false),
        data: BTreeMap::from([("password".into(), b"hunter2".to_vec())]),
        string_data: BTreeMap::from([("plain".into(), "text".into())]),
        r#type: s("Opaque"),
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "web-0", "generateName": "web-", "namespace": "apps",
            "selfLink": "/api/v1/namespaces/apps/secrets/web-0",
            "uid": "8d1c0b4e-0000-4000-8000-000000000001", "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "2026-11-22T02:14:09Z", "deletionTimestamp": "2026-11-22T02:15:00Z",
            "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web"}, "annotations": {"note": "x"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "u-1", "controller": true, "blockOwnerDeletion": false}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                "time": "2026-11-22T02:14:09Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:k": {}}}, "subresource": "status"}],
        },
        "immutable": false,
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"plain": "text"},
        "type": "Opaque",
    });
    check("v1", "Secret", &sent, &sent, want);
}

#[test]
fn namespace_and_service_account() {
    let sent = core::Namespace {
        metadata: new_meta("edge", ""),
        spec: Some(core::NamespaceSpec {
            finalizers: vec!["kubernetes".into()],
        }),
        status: Some(core::NamespaceStatus {
            phase: s("Active"),
            conditions: vec![core::NamespaceCondition {
                r#type: s("NamespaceDeletionDiscoveryFailure"),
                status: s("False"),
                last_transition_time: Some(Time {
                    seconds: Some(0),
                    nanos: Some(0),
                }),
                reason: s(""),
                message: s(""),
            }],
        }),
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "edge", "creationTimestamp": null},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active", "conditions": [{"type": "NamespaceDeletionDiscoveryFailure",
            "status": "False", "lastTransitionTime": "1970-01-01T00:00:00Z"}]},
    });
    let body = client_go_bytes("v1", "Namespace", &sent);
    let got = protobuf::decode(&body).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        protobuf::decode(&protobuf::encode(&got).unwrap()).unwrap(),
        want
    );

    let sa = core::ServiceAccount {
        metadata: new_meta("builder", "ci"),
        secrets: vec![core::ObjectReference {
            name: s("builder-token"),
            ..Default::default()
        }],
        image_pull_secrets: vec![core::LocalObjectReference {
            name: s("registry"),
        }],
        automount_service_account_token: Some(false),
    };
    let canonical = core::ServiceAccount {
        metadata: Some(ObjectMeta {
            name: s("builder"),
            namespace: s("ci"),
            ..Default::default()
        }),
        ..sa.clone()
    };
    let want = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": "ci", "creationTimestamp": null},
        "secrets": [{"name": "builder-token"}],
        "imagePullSecrets": [{"name": "registry"}],
        "automountServiceAccountToken": false,
    });
    check("v1", "ServiceAccount", &sa, &canonical, want);
}

#[test]
fn kubelet_lease_renewal() {
    let renew = MicroTime {
        seconds: Some(1_795_313_649),
        nanos: Some(252_001_999),
    };
    let sent = Lease {
        metadata: Some(ObjectMeta {
            resource_version: s("17"),
            uid: s("lease-uid"),
            ..new_meta("edge-1", "kube-node-lease").unwrap()
        }),
        spec: Some(LeaseSpec {
            holder_identity: s("edge-1"),
            lease_duration_seconds: Some(40),
            acquire_time: None,
            renew_time: Some(renew),
            lease_transitions: None,
            strategy: None,
            preferred_holder: None,
        }),
    };
    let want = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edge-1", "namespace": "kube-node-lease", "uid": "lease-uid",
            "resourceVersion": "17", "creationTimestamp": null},
        "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 40,
            "renewTime": "2026-11-22T02:14:09.252001Z"},
    });
    let body = client_go_bytes("coordination.k8s.io/v1", "Lease", &sent);
    assert_eq!(protobuf::decode(&body).unwrap(), want);
    let encoded = protobuf::encode(&want).unwrap();
    let lease = Lease::decode(&raw_of(&encoded)[..]).unwrap();
    // MicroTime keeps microseconds.
    assert_eq!(
        lease.spec.unwrap().renew_time,
        Some(MicroTime {
            seconds: Some(1_795_313_649),
            nanos: Some(252_001_000)
        })
    );
}

#[test]
fn kubelet_core_event_and_events_v1() {
    let t = Time {
        seconds: Some(1_795_313_649),
        nanos: Some(999_000_000),
    };
    let sent = core::Event {
        metadata: new_meta("web-0.1800", "apps"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            namespace: s("apps"),
            name: s("web-0"),
            uid: s("p-1"),
            api_version: s("v1"),
            resource_version: s(""),
            field_path: s("spec.containers{web}"),
        }),
        reason: s("Pulled"),
        message: s("Container image already present"),
        source: Some(core::EventSource {
            component: s("kubelet"),
            host: s("edge-1"),
        }),
        first_timestamp: Some(t),
        last_timestamp: Some(t),
        count: Some(1),
        r#type: s("Normal"),
        event_time: Some(MicroTime::default()),
        series: None,
        action: s(""),
        related: None,
        reporting_component: s("kubelet"),
        reporting_instance: s("edge-1"),
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-0.1800", "namespace": "apps", "creationTimestamp": null},
        "involvedObject": {"kind": "Pod", "namespace": "apps", "name": "web-0", "uid": "p-1",
            "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "Container image already present",
        "source": {"component": "kubelet", "host": "edge-1"},
        // metav1.Time keeps whole seconds.
        "firstTimestamp": "2026-11-22T02:14:09Z", "lastTimestamp": "2026-11-22T02:14:09Z",
        "count": 1, "type": "Normal", "eventTime": null,
        "reportingComponent": "kubelet", "reportingInstance": "edge-1",
    });
    let body = client_go_bytes("v1", "Event", &sent);
    let got = protobuf::decode(&body).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        protobuf::decode(&protobuf::encode(&got).unwrap()).unwrap(),
        want
    );

    let sent = events::Event {
        metadata: new_meta("edge-1.1801", "default"),
        event_time: Some(MicroTime {
            seconds: Some(1_795_313_649),
            nanos: Some(5_000),
        }),
        series: Some(events::EventSeries {
            count: Some(2),
            last_observed_time: None,
        }),
        reporting_controller: s("kubelet"),
        reporting_instance: s("edge-1"),
        action: s("Starting"),
        reason: s("Starting"),
        regarding: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("edge-1"),
            ..Default::default()
        }),
        related: Some(core::ObjectReference::default()),
        note: s("Starting kubelet."),
        r#type: s("Normal"),
        deprecated_source: Some(core::EventSource {
            component: s(""),
            host: s(""),
        }),
        deprecated_first_timestamp: Some(Time::default()),
        deprecated_last_timestamp: Some(Time::default()),
        deprecated_count: Some(0),
    };
    let want = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "edge-1.1801", "namespace": "default", "creationTimestamp": null},
        "eventTime": "2026-11-22T02:14:09.000005Z",
        "series": {"count": 2, "lastObservedTime": null},
        "reportingController": "kubelet", "reportingInstance": "edge-1",
        "action": "Starting", "reason": "Starting",
        "regarding": {"kind": "Node", "name": "edge-1"},
        "related": {},
        "note": "Starting kubelet.", "type": "Normal",
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": null, "deprecatedLastTimestamp": null,
    });
    let body = client_go_bytes("events.k8s.io/v1", "Event", &sent);
    let got = protobuf::decode(&body).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        protobuf::decode(&protobuf::encode(&got).unwrap()).unwrap(),
        want
    );
}

#[test]
fn unsupported_kinds_are_415_naming_the_kind() {
    let ds = apps::DaemonSet {
        metadata: new_meta("p", "default"),
        ..Default::default()
    };
    let err = protobuf::decode(&client_go_bytes("apps/v1", "DaemonSet", &ds)).unwrap_err();
    assert_eq!(
        err,
        ProtobufError::Unsupported {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into()
        }
    );
    let status = err.to_status();
    assert_eq!(
        (status.code, status.reason.as_ref().map(|r| r.as_str())),
        (415, Some("UnsupportedMediaType"))
    );
    assert!(
        status
            .message
            .starts_with("protobuf bodies are decoded for v1 ConfigMap, "),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("send JSON (apps/v1, Kind=DaemonSet is not one of them)"),
        "{}",
        status.message
    );
    // A kind of the right name in another group is not the same kind.
    let err = protobuf::encode(&json!({"apiVersion": "apps/v1", "kind": "ConfigMap"})).unwrap_err();
    assert_eq!(err.to_status().code, 415);
}

#[test]
fn malformed_bodies_are_400() {
    let err = protobuf::decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
    assert_eq!(err, ProtobufError::MissingMagic);
    assert_eq!(err.to_status().code, 400);
    assert_eq!(
        err.to_string(),
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    );
    // A truncated envelope.
    let mut body = client_go_bytes("v1", "ConfigMap", &core::ConfigMap::default());
    body.truncate(body.len() - 3);
    assert!(matches!(
        protobuf::decode(&body),
        Err(ProtobufError::Malformed { .. })
    ));
    // A ConfigMap whose raw bytes are not a ConfigMap.
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(vec![0x0a, 0x05, 0x01]),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    let err = protobuf::decode(&body).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unable to decode protobuf ConfigMap:"),
        "{err}"
    );
    // A gzip content encoding is not something clients send; refused by name.
    let unknown = Unknown {
        content_encoding: s("gzip"),
        ..unknown
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    assert_eq!(
        protobuf::decode(&body).unwrap_err(),
        ProtobufError::ContentEncoding("gzip".into())
    );
    // A time no RFC 3339 string can hold.
    let cm = core::ConfigMap {
        metadata: Some(ObjectMeta {
            creation_timestamp: Some(Time {
                seconds: Some(i64::MAX),
                nanos: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = protobuf::decode(&client_go_bytes("v1", "ConfigMap", &cm)).unwrap_err();
    assert!(err.to_string().contains("creationTimestamp"), "{err}");
}

#[test]
fn encoding_refuses_what_the_message_cannot_hold() {
    let cases = [
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "spec": {}}),
            "ConfigMap spec: unknown field",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"a": 1}}}),
            "ConfigMap metadata.labels.a: expected a string, got a number",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}}),
            "Secret data.k: illegal base64 data",
        ),
        (
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "spec": {"leaseDurationSeconds": 4_294_967_296_i64}}),
            "Lease spec.leaseDurationSeconds: expected an int32",
        ),
        (
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "spec": {"renewTime": "yesterday"}}),
            "Lease spec.renewTime: parsing time \"yesterday\" as RFC 3339 failed",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"ownerReferences": [{"bogus": 1}]}}),
            "Event metadata.ownerReferences[0].bogus: unknown field",
        ),
    ];
    for (object, want) in cases {
        let err = protobuf::encode(&object).unwrap_err();
        assert!(err.to_string().starts_with(want), "{object}: {err}");
        assert_eq!(err.to_status().code, 400);
    }
    assert!(protobuf::is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!protobuf::is_protobuf("application/json"));
    assert_eq!(
        protobuf::kind_for_resource("coordination.k8s.io", "v1", "leases").map(|k| k.kind),
        Some("Lease")
    );
}

/// The fuzz target's property over deterministic mutations of real bodies (every truncation and
/// every single-byte change to 0x00/0xff of each kind's body): decoding never panics, and what
/// decodes encodes and decodes back to itself.
#[test]
fn mutated_bodies_never_panic_and_round_trip() {
    let lease = Lease {
        metadata: new_meta("edge-1", "kube-node-lease"),
        spec: Some(LeaseSpec {
            holder_identity: s("edge-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime {
                seconds: Some(1_795_313_649),
                nanos: Some(1),
            }),
            ..Default::default()
        }),
    };
    let cm = core::ConfigMap {
        metadata: new_meta("cfg", "default"),
        data: BTreeMap::from([("k".into(), "v".into())]),
        binary_data: BTreeMap::from([("b".into(), vec![7])]),
        ..Default::default()
    };
    let mut c = container("web", "nginx", vec![port(80)]);
    c.resources = Some(core::ResourceRequirements {
        limits: BTreeMap::from([(
            "cpu".to_owned(),
            k8s_pb::apimachinery::pkg::api::resource::Quantity { string: s("1") },
        )]),
        ..Default::default()
    });
    let pod = core::Pod {
        metadata: new_meta("web", "default"),
        spec: Some(core::PodSpec {
            containers: vec![c],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            start_time: Some(Time {
                seconds: Some(1_795_313_649),
                nanos: Some(5),
            }),
            ..Default::default()
        }),
    };
    let bodies = [
        client_go_bytes("coordination.k8s.io/v1", "Lease", &lease),
        client_go_bytes("v1", "ConfigMap", &cm),
        client_go_bytes("v1", "Pod", &pod),
    ];
    let mut decoded = 0;
    for body in bodies {
        let mut variants: Vec<Vec<u8>> = (0..body.len()).map(|n| body[..n].to_vec()).collect();
        for i in 0..body.len() {
            for b in [0x00, 0xff] {
                let mut v = body.clone();
                v[i] = b;
                variants.push(v);
            }
        }
        for v in variants {
            if let Ok(object) = protobuf::decode(&v) {
                decoded += 1;
                let again = protobuf::encode(&object).expect("a decoded object encodes");
                assert_eq!(protobuf::decode(&again).expect("re-decodes"), object);
            }
        }
    }
    assert!(decoded > 10, "only {decoded} variants decoded");
}

/// A container as client-go writes it: every non-pointer field present, zero or not.
fn container(name: &str, image: &str, ports: Vec<core::ContainerPort>) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        working_dir: s(""),
        ports,
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

fn port(number: i32) -> core::ContainerPort {
    core::ContainerPort {
        name: s(""),
        host_port: Some(0),
        container_port: Some(number),
        protocol: s(""),
        host_ip: s(""),
    }
}

fn labels(k: &str, v: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(k.to_owned(), v.to_owned())])
}

/// Decodes client-go's bytes to `want`, and the JSON encodes to a body that decodes to it again.
fn round_trip(api_version: &str, kind: &str, sent: &impl Message, want: Value) {
    let got = protobuf::decode(&client_go_bytes(api_version, kind, sent)).expect("decode");
    assert_eq!(got, want);
    let encoded = protobuf::encode(&got).expect("encode");
    assert_eq!(protobuf::decode(&encoded).expect("decode again"), want);
}

#[test]
fn deployment_as_kubectl_create_deployment_sends_it() {
    let mut meta = new_meta("web", "default").unwrap();
    meta.labels = labels("app", "web");
    let mut template_meta = new_meta("", "").unwrap();
    template_meta.labels = labels("app", "web");
    let sent = apps::Deployment {
        metadata: Some(meta),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: labels("app", "web"),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(core::PodSpec {
                    containers: vec![container("nginx", "nginx:1.27", vec![port(80)])],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            ..Default::default()
        }),
    };
    round_trip(
        "apps/v1",
        "Deployment",
        &sent,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": null},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}], "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}}),
    );
    // `replicas: 0` is a Go pointer: kept, not treated as absent.
    let mut zero = sent.clone();
    zero.spec.as_mut().unwrap().replicas = Some(0);
    let got = protobuf::decode(&client_go_bytes("apps/v1", "Deployment", &zero)).unwrap();
    assert_eq!(got["spec"]["replicas"], json!(0));
}

#[test]
fn pod_as_kubectl_run_sends_it_with_probes_volumes_and_quantities() {
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let q = |v: &str| Quantity { string: s(v) };
    let mut c = container("web", "nginx", vec![port(8080)]);
    c.resources = Some(core::ResourceRequirements {
        limits: BTreeMap::from([
            ("cpu".to_owned(), q("500m")),
            ("memory".to_owned(), q("128Mi")),
        ]),
        requests: BTreeMap::new(),
        claims: vec![],
    });
    c.readiness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: s("http"),
                }),
                host: s(""),
                scheme: s(""),
                http_headers: vec![],
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(5),
        timeout_seconds: Some(0),
        period_seconds: Some(0),
        success_threshold: Some(0),
        failure_threshold: Some(0),
        termination_grace_period_seconds: None,
    });
    c.env = vec![core::EnvVar {
        name: s("TOKEN"),
        value: s(""),
        value_from: Some(core::EnvVarSource {
            secret_key_ref: Some(core::SecretKeySelector {
                local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                key: s("token"),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }];
    c.volume_mounts = vec![core::VolumeMount {
        name: s("cfg"),
        read_only: Some(true),
        mount_path: s("/etc/cfg"),
        sub_path: s(""),
        ..Default::default()
    }];
    c.security_context = Some(core::SecurityContext {
        run_as_non_root: Some(false),
        ..Default::default()
    });
    let mut meta = new_meta("web", "edge").unwrap();
    meta.labels = labels("run", "web");
    let sent = core::Pod {
        metadata: Some(meta),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("app") }),
                        items: vec![],
                        default_mode: Some(0o644),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![c],
            restart_policy: s("Always"),
            dns_policy: s("ClusterFirst"),
            automount_service_account_token: Some(false),
            node_name: s(""),
            host_network: Some(false),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    round_trip(
        "v1",
        "Pod",
        &sent,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "edge", "labels": {"run": "web"},
                "creationTimestamp": null},
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "app", "defaultMode": 420}}],
                "containers": [{
                    "name": "web", "image": "nginx",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef":
                        {"name": "creds", "key": "token", "optional": false}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                        "initialDelaySeconds": 5},
                    "securityContext": {"runAsNonRoot": false}
                }],
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "automountServiceAccountToken": false
            },
            "status": {}}),
    );
}

#[test]
fn generator_kinds_round_trip() {
    use k8s_pb::api::rbac::v1 as rbac;
    let role = rbac::Role {
        metadata: new_meta("reader", "default"),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            resource_names: vec![],
            non_resource_ur_ls: vec![],
        }],
    };
    round_trip(
        "rbac.authorization.k8s.io/v1",
        "Role",
        &role,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader", "namespace": "default", "creationTimestamp": null},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
    );
    let svc = core::Service {
        metadata: new_meta("web", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s("80-8080"),
                protocol: s("TCP"),
                app_protocol: None,
                port: Some(80),
                target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: s(""),
                }),
                node_port: Some(0),
            }],
            selector: labels("app", "web"),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    round_trip(
        "v1",
        "Service",
        &svc,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"}, "type": "ClusterIP"},
            "status": {}}),
    );
}

#[test]
fn priority_class_ingress_and_pdb_round_trip() {
    use k8s_pb::api::networking::v1 as net;
    use k8s_pb::api::policy::v1 as policy;
    use k8s_pb::api::scheduling::v1 as scheduling;
    let pc = scheduling::PriorityClass {
        metadata: new_meta("high", ""),
        value: Some(1000),
        global_default: Some(false),
        description: s(""),
        preemption_policy: s("Never"),
    };
    round_trip(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        &pc,
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high", "creationTimestamp": null},
            "value": 1000, "preemptionPolicy": "Never"}),
    );
    let ing = net::Ingress {
        metadata: new_meta("ing", "default"),
        spec: Some(net::IngressSpec {
            ingress_class_name: None,
            default_backend: None,
            tls: vec![],
            rules: vec![net::IngressRule {
                host: s("foo.com"),
                ingress_rule_value: Some(net::IngressRuleValue {
                    http: Some(net::HttpIngressRuleValue {
                        paths: vec![net::HttpIngressPath {
                            path: s("/bar"),
                            path_type: s("Exact"),
                            backend: Some(net::IngressBackend {
                                service: Some(net::IngressServiceBackend {
                                    name: s("svc1"),
                                    port: Some(net::ServiceBackendPort {
                                        name: s(""),
                                        number: Some(8080),
                                    }),
                                }),
                                resource: None,
                            }),
                        }],
                    }),
                }),
            }],
        }),
        // client-go writes non-pointer structs even when empty.
        status: Some(net::IngressStatus {
            load_balancer: Some(Default::default()),
        }),
    };
    round_trip(
        "networking.k8s.io/v1",
        "Ingress",
        &ing,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ing", "namespace": "default", "creationTimestamp": null},
            "spec": {"rules": [{"host": "foo.com", "http": {"paths": [{"path": "/bar",
                "pathType": "Exact",
                "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}}]},
            "status": {"loadBalancer": {}}}),
    );
    let pdb = policy::PodDisruptionBudget {
        metadata: new_meta("pdb", "default"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: s("50%"),
            }),
            selector: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: labels("app", "web"),
                match_expressions: vec![],
            }),
            max_unavailable: None,
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    };
    round_trip(
        "policy/v1",
        "PodDisruptionBudget",
        &pdb,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "pdb", "namespace": "default", "creationTimestamp": null},
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
    );
}
