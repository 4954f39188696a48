//! Protobuf request bodies built with k8s-pb exactly as client-go writes them (kubelet's default
//! `Content-Type: application/vnd.kubernetes.protobuf`), for the lease and offline tests: every
//! Go string written even when empty, zero times as empty messages, the `k8s\0` magic and the
//! `runtime.Unknown` envelope around the object's message.

use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;

/// kubelet's `Content-Type`.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// kubelet's `Accept`.
pub(crate) const ACCEPT: &str = "application/vnd.kubernetes.protobuf, application/json";

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// A body as client-go's protobuf serializer writes it.
pub(crate) fn client_go_bytes(api_version: &str, kind: &str, msg: &impl Message) -> Vec<u8> {
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

/// ObjectMeta as client-go fills it: every string written, creationTimestamp the zero time.
fn meta(name: &str, generate_name: &str, namespace: &str, resource_version: &str) -> ObjectMeta {
    ObjectMeta {
        name: s(name),
        generate_name: s(generate_name),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(resource_version),
        generation: Some(0),
        creation_timestamp: Some(Time::default()),
        ..Default::default()
    }
}

/// kubelet's node Lease renewal: holder `node`, 40 s, renewed at `renew_seconds` (Unix) + 123456 µs.
pub(crate) fn lease(node: &str, resource_version: &str, renew_seconds: i64) -> Vec<u8> {
    let lease = Lease {
        metadata: Some(meta(node, "", "kube-node-lease", resource_version)),
        spec: Some(LeaseSpec {
            holder_identity: s(node),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime {
                seconds: Some(renew_seconds),
                nanos: Some(123_456_000),
            }),
            ..Default::default()
        }),
    };
    client_go_bytes("coordination.k8s.io/v1", "Lease", &lease)
}

/// kubelet's core/v1 Event about pod `pod` (generateName `<pod>.`), with `message`.
pub(crate) fn event(pod: &str, message: &str) -> Vec<u8> {
    let event = core::Event {
        metadata: Some(meta("", &format!("{pod}."), "default", "")),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            namespace: s("default"),
            name: s(pod),
            uid: s(""),
            api_version: s("v1"),
            resource_version: s(""),
            field_path: s(""),
        }),
        reason: s("Started"),
        message: s(message),
        source: Some(core::EventSource {
            component: s("kubelet"),
            host: s("edge-1"),
        }),
        first_timestamp: Some(Time::default()),
        last_timestamp: Some(Time::default()),
        count: Some(1),
        r#type: s("Normal"),
        event_time: Some(MicroTime::default()),
        action: s(""),
        reporting_component: s("kubelet"),
        reporting_instance: s("edge-1"),
        ..Default::default()
    };
    client_go_bytes("v1", "Event", &event)
}

/// A DaemonSet create: a kind the hub's protobuf decoder does not convert (kubelet never
/// writes one), so offline it must be refused with a 415 naming it.
pub(crate) fn daemon_set(name: &str) -> Vec<u8> {
    let ds = k8s_pb::api::apps::v1::DaemonSet {
        metadata: Some(meta(name, "", "default", "")),
        ..Default::default()
    };
    client_go_bytes("apps/v1", "DaemonSet", &ds)
}

/// A ConfigMap update: `data` `k` = `value` at `resource_version`.
pub(crate) fn configmap(name: &str, resource_version: &str, value: &str) -> Vec<u8> {
    let cm = core::ConfigMap {
        metadata: Some(meta(name, "", "default", resource_version)),
        data: [("k".to_owned(), value.to_owned())].into(),
        ..Default::default()
    };
    client_go_bytes("v1", "ConfigMap", &cm)
}
