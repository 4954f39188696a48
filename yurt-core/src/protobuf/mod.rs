//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) to and from the JSON
//! objects the apiserver stores, for the kinds an edge node writes and those kubectl's generators
//! send.
//!
//! client-go sends protobuf by default for built-in kinds (kubelet always does, kubectl does for
//! `create configmap`, `create deployment`, `run` and friends), so anything that reads a request
//! body must understand it. A protobuf body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope whose
//! `typeMeta` names the apiVersion and kind and whose `raw` bytes are the object's own message.
//! [`decode`] turns such a body into the JSON object the apiserver would store (Go's
//! `encoding/json` rules: `omitempty` strings vanish, pointers are written when set, `metav1.Time`
//! is RFC 3339 with `Z`, `MicroTime` has six fractional digits, bytes are base64), and [`encode`]
//! does the reverse so a server can answer protobuf clients and tests can produce the exact bytes
//! client-go sends.
//!
//! The message types come from `k8s-pb` (kube-rs's generated bindings), which has no serde and no
//! descriptors. The kinds an edge node writes (ConfigMap, Secret, Namespace, ServiceAccount,
//! Lease, Events) are converted by hand, field by field. The kinds `kubectl create <generator>`
//! and `kubectl run` send (Deployment, Pod, Service, Job, CronJob, the four RBAC kinds,
//! ResourceQuota, PriorityClass, PodDisruptionBudget, Ingress) go through k8s-openapi's structs:
//! a generated conversion per message (see `typed`) and k8s-openapi's serde for the JSON, so
//! unknown JSON fields are dropped on encoding for those kinds rather than refused, and an
//! optional field holding its Go zero value (`""`, `0`, `false`) decodes as absent unless it is a
//! Go pointer. Either way every protobuf struct is destructured exhaustively, so a field added
//! upstream is a compile error, not a dropped field. Encoding of the hand-converted kinds refuses
//! JSON fields the message does not have. Any other kind is [`ProtobufError::Unsupported`], a 415
//! whose message lists what is decoded and asks for JSON.
//!
//! This module is behind the `protobuf` feature (k8s-pb's generated code is large), so crates that
//! never see protobuf, and the parser fuzzers, do not compile it.
//!
//! ```
//! use serde_json::json;
//! use yurt_core::protobuf;
//!
//! let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": null},
//!     "data": {"k": "v"}, "binaryData": {"b": "AAE="}});
//! let bytes = protobuf::encode(&cm).unwrap();
//! assert!(bytes.starts_with(b"k8s\0"));
//! assert_eq!(protobuf::decode(&bytes).unwrap(), cm);
//!
//! let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}});
//! assert_eq!(protobuf::encode(&ds).unwrap_err().to_status().code, 415);
//! ```

mod json;
mod kinds;
mod meta;
mod time;
mod typed;
mod typed_gen;

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::Value;

use crate::status::{Status, StatusReason};
use json::{In, Out};

/// The protobuf media type, as in `Content-Type` and `Accept`.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// A kind this module converts, with the resource it is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// Kind (`ConfigMap`).
    pub kind: &'static str,
    /// Plural resource (`configmaps`).
    pub resource: &'static str,
}

impl Kind {
    /// `v1` or `group/version`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn matches(&self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            None => self.group.is_empty() && self.version == api_version,
            Some((g, v)) => self.group == g && self.version == v,
        }
    }
}

/// Every kind [`decode`] and [`encode`] convert.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Secret",
        resource: "secrets",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        resource: "namespaces",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        resource: "serviceaccounts",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Event",
        resource: "events",
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        resource: "leases",
    },
    Kind {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        resource: "events",
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        resource: "pods",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Service",
        resource: "services",
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "Job",
        resource: "jobs",
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        resource: "cronjobs",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        resource: "roles",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        resource: "rolebindings",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        resource: "clusterroles",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        resource: "clusterrolebindings",
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ResourceQuota",
        resource: "resourcequotas",
    },
    Kind {
        group: "scheduling.k8s.io",
        version: "v1",
        kind: "PriorityClass",
        resource: "priorityclasses",
    },
    Kind {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        resource: "poddisruptionbudgets",
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        resource: "ingresses",
    },
];

/// The supported kind named by `apiVersion` and `kind`, if any.
pub fn kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.matches(api_version))
}

/// The supported kind served as `group`/`version`/`resource`, if any (to decide before reading
/// a response whether a protobuf answer is possible).
pub fn kind_for_resource(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// Whether a `Content-Type` value is the protobuf media type (parameters ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Why a body could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with [`MAGIC`] (apimachinery's wording).
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    MissingMagic,
    /// The `runtime.Unknown` envelope or the object's message is not valid protobuf.
    #[error("unable to decode protobuf {what}: {message}")]
    Malformed {
        /// `runtime.Unknown` or the kind.
        what: String,
        /// prost's description.
        message: String,
    },
    /// The envelope declares a `contentEncoding` (none is defined for request bodies).
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
    /// A kind this module does not convert.
    #[error(
        "protobuf bodies are decoded for {}; send JSON ({api_version}, Kind={kind} is not one of them)",
        supported_list()
    )]
    Unsupported {
        /// The envelope's or object's apiVersion.
        api_version: String,
        /// The envelope's or object's kind.
        kind: String,
    },
    /// A field cannot be converted (a JSON field the kind lacks, a wrong JSON type, a time
    /// outside what RFC 3339 can write).
    #[error("{kind} {field}: {message}")]
    Field {
        /// The kind being converted.
        kind: String,
        /// The JSON path of the field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ProtobufError {
    fn field(kind: &str, field: &str, message: impl Into<String>) -> Self {
        Self::Field {
            kind: kind.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The `Status` an apiserver answers: 415 UnsupportedMediaType for an unsupported kind,
    /// 400 BadRequest for a malformed body.
    pub fn to_status(&self) -> Status {
        match self {
            Self::Unsupported { .. } => {
                Status::failure(StatusReason::UnsupportedMediaType, self.to_string())
            }
            _ => Status::bad_request(self.to_string()),
        }
    }
}

impl From<ProtobufError> for Status {
    fn from(e: ProtobufError) -> Self {
        e.to_status()
    }
}

fn supported_list() -> String {
    KINDS
        .iter()
        .map(|k| format!("{} {}", k.api_version(), k.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a protobuf body (magic + `runtime.Unknown`) into the JSON object the apiserver would
/// store, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(&MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let Unknown {
        type_meta,
        raw,
        content_encoding,
        content_type: _,
    } = Unknown::decode(rest).map_err(|e| malformed("runtime.Unknown", &e))?;
    if let Some(enc) = content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(enc));
    }
    let TypeMeta {
        api_version,
        kind: kind_name,
    } = type_meta.unwrap_or_default();
    let (api_version, kind_name) = (
        api_version.unwrap_or_default(),
        kind_name.unwrap_or_default(),
    );
    let k = kind(&api_version, &kind_name).ok_or_else(|| ProtobufError::Unsupported {
        api_version: api_version.clone(),
        kind: kind_name.clone(),
    })?;
    let raw = raw.unwrap_or_default();
    let mut o = Out::new(k.kind);
    o.required_string("apiVersion", Some(k.api_version()));
    o.required_string("kind", Some(k.kind.to_owned()));
    let bad = |e: prost::DecodeError| malformed(k.kind, &e);
    match (k.group, k.kind) {
        ("", "ConfigMap") => {
            kinds::config_map_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("", "Secret") => kinds::secret_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?,
        ("", "Namespace") => {
            kinds::namespace_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("", "ServiceAccount") => {
            kinds::service_account_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("", "Event") => {
            kinds::core_event_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("coordination.k8s.io", "Lease") => {
            kinds::lease_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("events.k8s.io", "Event") => {
            kinds::events_event_to_json(&mut o, Message::decode(&raw[..]).map_err(bad)?)?
        }
        ("apps", "Deployment") => {
            return typed::decode::<
                k8s_pb::api::apps::v1::Deployment,
                k8s_openapi::api::apps::v1::Deployment,
            >(k, &raw);
        }
        ("", "Pod") => {
            return typed::decode::<k8s_pb::api::core::v1::Pod, k8s_openapi::api::core::v1::Pod>(
                k, &raw,
            );
        }
        ("", "Service") => {
            return typed::decode::<
                k8s_pb::api::core::v1::Service,
                k8s_openapi::api::core::v1::Service,
            >(k, &raw);
        }
        ("batch", "Job") => {
            return typed::decode::<k8s_pb::api::batch::v1::Job, k8s_openapi::api::batch::v1::Job>(
                k, &raw,
            );
        }
        ("batch", "CronJob") => {
            return typed::decode::<
                k8s_pb::api::batch::v1::CronJob,
                k8s_openapi::api::batch::v1::CronJob,
            >(k, &raw);
        }
        ("rbac.authorization.k8s.io", "Role") => {
            return typed::decode::<k8s_pb::api::rbac::v1::Role, k8s_openapi::api::rbac::v1::Role>(
                k, &raw,
            );
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            return typed::decode::<
                k8s_pb::api::rbac::v1::RoleBinding,
                k8s_openapi::api::rbac::v1::RoleBinding,
            >(k, &raw);
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            return typed::decode::<
                k8s_pb::api::rbac::v1::ClusterRole,
                k8s_openapi::api::rbac::v1::ClusterRole,
            >(k, &raw);
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            return typed::decode::<
                k8s_pb::api::rbac::v1::ClusterRoleBinding,
                k8s_openapi::api::rbac::v1::ClusterRoleBinding,
            >(k, &raw);
        }
        ("", "ResourceQuota") => {
            return typed::decode::<
                k8s_pb::api::core::v1::ResourceQuota,
                k8s_openapi::api::core::v1::ResourceQuota,
            >(k, &raw);
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            return typed::decode::<
                k8s_pb::api::scheduling::v1::PriorityClass,
                k8s_openapi::api::scheduling::v1::PriorityClass,
            >(k, &raw);
        }
        ("policy", "PodDisruptionBudget") => {
            return typed::decode::<
                k8s_pb::api::policy::v1::PodDisruptionBudget,
                k8s_openapi::api::policy::v1::PodDisruptionBudget,
            >(k, &raw);
        }
        ("networking.k8s.io", "Ingress") => {
            return typed::decode::<
                k8s_pb::api::networking::v1::Ingress,
                k8s_openapi::api::networking::v1::Ingress,
            >(k, &raw);
        }
        _ => {
            return Err(ProtobufError::Unsupported {
                api_version,
                kind: kind_name,
            });
        }
    }
    Ok(o.into_value())
}

/// Encodes a JSON object of a supported kind as client-go would send it (magic +
/// `runtime.Unknown` with `typeMeta` and the object's message in `raw`).
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind_name) = (text("apiVersion"), text("kind"));
    let k = kind(&api_version, &kind_name).ok_or(ProtobufError::Unsupported {
        api_version,
        kind: kind_name,
    })?;
    let raw = match (k.group, k.kind) {
        ("apps", "Deployment") => typed::encode::<
            k8s_pb::api::apps::v1::Deployment,
            k8s_openapi::api::apps::v1::Deployment,
        >(k, object)?,
        ("", "Pod") => {
            typed::encode::<k8s_pb::api::core::v1::Pod, k8s_openapi::api::core::v1::Pod>(k, object)?
        }
        ("", "Service") => typed::encode::<
            k8s_pb::api::core::v1::Service,
            k8s_openapi::api::core::v1::Service,
        >(k, object)?,
        ("batch", "Job") => typed::encode::<
            k8s_pb::api::batch::v1::Job,
            k8s_openapi::api::batch::v1::Job,
        >(k, object)?,
        ("batch", "CronJob") => typed::encode::<
            k8s_pb::api::batch::v1::CronJob,
            k8s_openapi::api::batch::v1::CronJob,
        >(k, object)?,
        ("rbac.authorization.k8s.io", "Role") => typed::encode::<
            k8s_pb::api::rbac::v1::Role,
            k8s_openapi::api::rbac::v1::Role,
        >(k, object)?,
        ("rbac.authorization.k8s.io", "RoleBinding") => typed::encode::<
            k8s_pb::api::rbac::v1::RoleBinding,
            k8s_openapi::api::rbac::v1::RoleBinding,
        >(k, object)?,
        ("rbac.authorization.k8s.io", "ClusterRole") => typed::encode::<
            k8s_pb::api::rbac::v1::ClusterRole,
            k8s_openapi::api::rbac::v1::ClusterRole,
        >(k, object)?,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => typed::encode::<
            k8s_pb::api::rbac::v1::ClusterRoleBinding,
            k8s_openapi::api::rbac::v1::ClusterRoleBinding,
        >(k, object)?,
        ("", "ResourceQuota") => typed::encode::<
            k8s_pb::api::core::v1::ResourceQuota,
            k8s_openapi::api::core::v1::ResourceQuota,
        >(k, object)?,
        ("scheduling.k8s.io", "PriorityClass") => typed::encode::<
            k8s_pb::api::scheduling::v1::PriorityClass,
            k8s_openapi::api::scheduling::v1::PriorityClass,
        >(k, object)?,
        ("policy", "PodDisruptionBudget") => typed::encode::<
            k8s_pb::api::policy::v1::PodDisruptionBudget,
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
        >(k, object)?,
        ("networking.k8s.io", "Ingress") => typed::encode::<
            k8s_pb::api::networking::v1::Ingress,
            k8s_openapi::api::networking::v1::Ingress,
        >(k, object)?,
        _ => encode_by_hand(k, object)?,
    };
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(k.api_version()),
            kind: Some(k.kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = Vec::with_capacity(MAGIC.len() + envelope.encoded_len());
    out.extend_from_slice(&MAGIC);
    envelope
        .encode(&mut out)
        .map_err(|e| ProtobufError::Malformed {
            what: "runtime.Unknown".into(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// The message bytes of a kind converted by hand in `kinds`.
fn encode_by_hand(k: &Kind, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let mut i = In::new(k.kind, String::new(), object.clone())?;
    let _ = (i.string("apiVersion")?, i.string("kind")?);
    let raw = match (k.group, k.kind) {
        ("", "ConfigMap") => kinds::config_map_from_json(&mut i)?.encode_to_vec(),
        ("", "Secret") => kinds::secret_from_json(&mut i)?.encode_to_vec(),
        ("", "Namespace") => kinds::namespace_from_json(&mut i)?.encode_to_vec(),
        ("", "ServiceAccount") => kinds::service_account_from_json(&mut i)?.encode_to_vec(),
        ("", "Event") => kinds::core_event_from_json(&mut i)?.encode_to_vec(),
        ("coordination.k8s.io", "Lease") => kinds::lease_from_json(&mut i)?.encode_to_vec(),
        ("events.k8s.io", "Event") => kinds::events_event_from_json(&mut i)?.encode_to_vec(),
        _ => {
            return Err(ProtobufError::Unsupported {
                api_version: k.api_version(),
                kind: k.kind.to_owned(),
            });
        }
    };
    i.finish()?;
    Ok(raw)
}

fn malformed(what: &str, e: &prost::DecodeError) -> ProtobufError {
    ProtobufError::Malformed {
        what: what.to_owned(),
        message: e.to_string(),
    }
}
