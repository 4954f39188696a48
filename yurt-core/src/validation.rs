//! Validation of written objects, the way kube-apiserver validates them, for the fields a cache
//! depends on.
//!
//! The hub applies offline writes to its cached copies and journals them for replay; whatever
//! it accepts is served to the node's agents until the cloud answers. If it accepts what the
//! apiserver refuses (a patch that removes a pod's spec, a ConfigMap value that is a number, a
//! label key with a space) the cache serves an object no client can decode, and replay fails
//! later. The test apiserver (`yurt-testkit`) calls the same functions, so the hub's offline
//! answers and the reference agree.
//!
//! Everything here is a pure function of JSON values, with no I/O, so it can be fuzzed. It
//! covers three layers, in the order the apiserver meets them:
//!
//! 1. **Decoding** ([`decode_error`]): kube-apiserver decodes a body, or a patched object, into
//!    the Go type of the resource; a value of the wrong JSON type fails there (`json: cannot
//!    unmarshal number into Go struct field ConfigMap.data of type string`), and so does a
//!    `kind`/`apiVersion` that is not the endpoint's. Checked for `metadata` of every kind and,
//!    per kind, for what kubelet writes while offline: Pod and Node status (and the pod's
//!    `spec.nodeName`), Lease spec, Events (core and `events.k8s.io`), ConfigMap `data` and
//!    `binaryData`, Secret `data` (which must be base64). A create or update answers such a
//!    failure with 400 ([`body_decode_status`]), a patch with 422 ([`patch_decode_status`]).
//! 2. **Identity** ([`check_patched_identity`]): the patched object must still name the URL's
//!    object (`$patch: delete` at the top of a strategic merge patch empties it: 400 `name must
//!    be provided`), keep its namespace and uid.
//! 3. **Metadata validity** ([`validate_metadata`]): names (RFC 1123 subdomain or label, or a
//!    path segment, per resource), the namespace, label keys and values, annotation keys and
//!    their total size (256 KiB), with apimachinery's messages; answered as 422 `Invalid` with
//!    one `details.causes` entry per problem ([`invalid_status`]).
//!
//! # Differences from kube-apiserver
//!
//! - Decoding checks the listed fields only; any other field is accepted as it is (the
//!   apiserver would check every field of the Go type, and drop unknown ones).
//! - Decode error texts follow Go's `encoding/json` wording, with the field path given as JSON
//!   names (`PodStatus.status.phase` style paths and Go type names are approximations), and
//!   `kind`/`apiVersion` mismatches in a patch are worded as the conversion failure the
//!   apiserver reports, which names its internal package (approximated as `core` or the
//!   group's first label).
//! - Timestamps are checked to be strings, not parsed.
//! - Per-kind semantic validation (a pod's containers, a node's taints) is not done: the
//!   cloud still decides on replay.

use serde_json::{Map, Value};

use crate::status::Status;

/// The type of a field-level problem (apimachinery's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `Invalid value`: the value is malformed.
    Invalid,
    /// `Required value`: the value is missing.
    Required,
    /// `Too long`: the value exceeds its size limit.
    TooLong,
}

impl ErrorType {
    /// The wording inside a message (`Invalid value`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "Invalid value",
            Self::Required => "Required value",
            Self::TooLong => "Too long",
        }
    }

    /// The `details.causes[].reason` of this type (`FieldValueInvalid`).
    pub fn cause(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::TooLong => "FieldValueTooLong",
        }
    }
}

/// One field-level problem, rendered as apimachinery renders a `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `metadata.labels`.
    pub field: String,
    /// What kind of problem.
    pub kind: ErrorType,
    /// The offending value, already quoted as Go's `%q` quotes it (`None`: not shown).
    pub value: Option<String>,
    /// Why it is refused.
    pub detail: String,
}

impl FieldError {
    /// `Invalid value: "<value>": <detail>` at `field`.
    pub fn invalid(field: &str, value: &str, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            kind: ErrorType::Invalid,
            value: Some(go_quote(value)),
            detail: detail.into(),
        }
    }

    /// `Required value: <detail>` at `field`.
    pub fn required(field: &str, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            kind: ErrorType::Required,
            value: None,
            detail: detail.into(),
        }
    }

    /// `Too long: may not be more than <max> bytes` at `field`.
    pub fn too_long(field: &str, max: usize) -> Self {
        FieldError {
            field: field.to_owned(),
            kind: ErrorType::TooLong,
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// The message without the field path (`Invalid value: "x": why`), as in a Status cause.
    pub fn body(&self) -> String {
        let mut s = self.kind.as_str().to_owned();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Go's `%q` of a string: double-quoted, with `"`, `\` and control characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// apimachinery's aggregate of several errors: one message alone, several as `[a, b]`, with
/// repeated messages dropped.
fn aggregate(errors: &[FieldError]) -> String {
    let mut seen = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// The 422 `Invalid` Status kube-apiserver answers for `errors` about object `name` of `kind`
/// in `group`: `<Kind> "<name>" is invalid: <errors>`, with one cause per error.
///
/// ```
/// use yurt_core::validation::{invalid_status, FieldError};
///
/// let e = FieldError::invalid("metadata.labels", "a b", "name part must be non-empty");
/// let st = invalid_status("", "ConfigMap", "cm1", &[e]);
/// assert_eq!(st.code, 422);
/// assert_eq!(st.message, r#"ConfigMap "cm1" is invalid: metadata.labels: Invalid value: "a b": name part must be non-empty"#);
/// assert_eq!(st.details.causes[0].field, "metadata.labels");
/// ```
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Status {
    let mut st = Status::invalid(group, kind, name, &aggregate(errors));
    for e in errors {
        st = st.with_cause(e.kind.cause(), &e.field, &e.body());
    }
    st
}

// ---------------------------------------------------------------------------------------------
// Names, labels, annotations.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The most bytes all annotations of an object may hold together (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 << 10;

/// apimachinery's `RegexError`: `msg (e.g. 'a',  or 'b', regex used for validation is 'r')`.
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = msg.to_owned();
    out.push_str(" (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(e);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(re);
    out.push_str("')");
    out
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(is_dns_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_key_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Why `value` is not an RFC 1123 subdomain (apimachinery's `IsDNS1123Subdomain`).
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if !is_dns_subdomain(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Why `value` is not an RFC 1123 label (apimachinery's `IsDNS1123Label`).
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_dns_label(value) {
        if is_dns_subdomain(value) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Why `value` is not a qualified name, i.e. a label key (apimachinery's `IsQualifiedName`).
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for m in dns1123_subdomain(prefix) {
                    // The newer content package words lengths in bytes.
                    let m = m.replace("253 characters", "253 bytes");
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".to_owned());
    }
    if !is_label_key_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Why `value` is not a label value (apimachinery's `IsValidLabelValue`).
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 bytes".to_owned());
    }
    if !value.is_empty() && !is_label_key_name(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Which rule a resource's object names follow (apimachinery's name validation functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most resources.
    Subdomain,
    /// RFC 1123 label: namespaces and services.
    Label,
    /// Only a valid path segment (not `.`/`..`, no `/` or `%`): core Events, RBAC objects.
    PathSegment,
}

impl NameRule {
    /// The rule of `resource` in `group`.
    pub fn of(group: &str, resource: &str) -> NameRule {
        match (group, resource) {
            ("", "namespaces" | "services") => NameRule::Label,
            // core/v1 Events keep their legacy rules: no name format beyond the path.
            ("", "events") => NameRule::PathSegment,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }

    /// Why `name` breaks this rule, in apimachinery's words (empty: valid).
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::PathSegment => {
                if name == "." || name == ".." {
                    return vec![format!("may not be '{name}'")];
                }
                ["/", "%"]
                    .iter()
                    .filter(|bad| name.contains(**bad))
                    .map(|bad| format!("may not contain '{bad}'"))
                    .collect()
            }
        }
    }
}

/// Validates `metadata` of `obj` as kube-apiserver's `ValidateObjectMeta` does: name (or
/// `generateName` on create, when `creating`), namespace, labels, annotations. Values of the
/// wrong JSON type are [`decode_error`]'s job and are skipped here.
pub fn validate_metadata(obj: &Value, rule: NameRule, creating: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Map::new();
    let meta = obj
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let name = s("name");
    if name.is_empty() {
        if !creating || s("generateName").is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for m in rule.check(name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    let namespace = s("namespace");
    if !namespace.is_empty() {
        for m in dns1123_label(namespace) {
            errs.push(FieldError::invalid("metadata.namespace", namespace, m));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for m in qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", k, m));
            }
            if let Some(v) = v.as_str() {
                for m in label_value(v) {
                    errs.push(FieldError::invalid("metadata.labels", v, m));
                }
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in annotations {
            for m in qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k, m));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_SIZE_LIMIT,
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Decoding into the Go types.

/// The shape a field decodes into.
enum Ty {
    Str,
    Bool,
    Int,
    Int32,
    /// A `resource.Quantity`: a string or a number.
    Quantity,
    /// A `[]byte`: a base64 string.
    Bytes,
    /// A struct with the listed fields (others unchecked).
    Obj(&'static str, &'static [(&'static str, Ty)]),
    /// Any JSON object.
    AnyObj(&'static str),
    Arr(&'static Ty),
    Map(&'static Ty),
}

impl Ty {
    fn go_name(&self) -> String {
        match self {
            Ty::Str => "string".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int64".into(),
            Ty::Int32 => "int32".into(),
            Ty::Quantity => "resource.Quantity".into(),
            Ty::Bytes => "[]uint8".into(),
            Ty::Obj(n, _) | Ty::AnyObj(n) => (*n).into(),
            Ty::Arr(t) => format!("[]{}", t.go_name()),
            Ty::Map(t) => format!("map[string]{}", t.go_name()),
        }
    }
}

const TIME: Ty = Ty::Str;

const OWNER_REFERENCE: Ty = Ty::Obj(
    "v1.OwnerReference",
    &[
        ("apiVersion", Ty::Str),
        ("kind", Ty::Str),
        ("name", Ty::Str),
        ("uid", Ty::Str),
        ("controller", Ty::Bool),
        ("blockOwnerDeletion", Ty::Bool),
    ],
);

const OBJECT_META: Ty = Ty::Obj(
    "v1.ObjectMeta",
    &[
        ("name", Ty::Str),
        ("generateName", Ty::Str),
        ("namespace", Ty::Str),
        ("uid", Ty::Str),
        ("resourceVersion", Ty::Str),
        ("generation", Ty::Int),
        ("creationTimestamp", TIME),
        ("deletionTimestamp", TIME),
        ("deletionGracePeriodSeconds", Ty::Int),
        ("labels", Ty::Map(&Ty::Str)),
        ("annotations", Ty::Map(&Ty::Str)),
        ("finalizers", Ty::Arr(&Ty::Str)),
        ("ownerReferences", Ty::Arr(&OWNER_REFERENCE)),
    ],
);

const OBJECT_REFERENCE: Ty = Ty::Obj(
    "v1.ObjectReference",
    &[
        ("kind", Ty::Str),
        ("namespace", Ty::Str),
        ("name", Ty::Str),
        ("uid", Ty::Str),
        ("apiVersion", Ty::Str),
        ("resourceVersion", Ty::Str),
        ("fieldPath", Ty::Str),
    ],
);

const POD_CONDITION: Ty = Ty::Obj(
    "v1.PodCondition",
    &[
        ("type", Ty::Str),
        ("status", Ty::Str),
        ("reason", Ty::Str),
        ("message", Ty::Str),
        ("lastProbeTime", TIME),
        ("lastTransitionTime", TIME),
        ("observedGeneration", Ty::Int),
    ],
);

const CONTAINER_STATUS: Ty = Ty::Obj(
    "v1.ContainerStatus",
    &[
        ("name", Ty::Str),
        ("ready", Ty::Bool),
        ("started", Ty::Bool),
        ("restartCount", Ty::Int32),
        ("image", Ty::Str),
        ("imageID", Ty::Str),
        ("containerID", Ty::Str),
        ("state", Ty::AnyObj("v1.ContainerState")),
        ("lastState", Ty::AnyObj("v1.ContainerState")),
    ],
);

const IP: Ty = Ty::Obj("v1.PodIP", &[("ip", Ty::Str)]);

const POD: &[(&str, Ty)] = &[
    (
        "spec",
        Ty::Obj(
            "v1.PodSpec",
            &[
                ("nodeName", Ty::Str),
                ("hostname", Ty::Str),
                ("containers", Ty::Arr(&Ty::AnyObj("v1.Container"))),
            ],
        ),
    ),
    (
        "status",
        Ty::Obj(
            "v1.PodStatus",
            &[
                ("phase", Ty::Str),
                ("message", Ty::Str),
                ("reason", Ty::Str),
                ("hostIP", Ty::Str),
                ("podIP", Ty::Str),
                ("nominatedNodeName", Ty::Str),
                ("qosClass", Ty::Str),
                ("startTime", TIME),
                ("hostIPs", Ty::Arr(&IP)),
                ("podIPs", Ty::Arr(&IP)),
                ("conditions", Ty::Arr(&POD_CONDITION)),
                ("containerStatuses", Ty::Arr(&CONTAINER_STATUS)),
                ("initContainerStatuses", Ty::Arr(&CONTAINER_STATUS)),
                ("ephemeralContainerStatuses", Ty::Arr(&CONTAINER_STATUS)),
            ],
        ),
    ),
];

const NODE: &[(&str, Ty)] = &[
    (
        "spec",
        Ty::Obj(
            "v1.NodeSpec",
            &[
                ("podCIDR", Ty::Str),
                ("podCIDRs", Ty::Arr(&Ty::Str)),
                ("providerID", Ty::Str),
                ("unschedulable", Ty::Bool),
                (
                    "taints",
                    Ty::Arr(&Ty::Obj(
                        "v1.Taint",
                        &[
                            ("key", Ty::Str),
                            ("value", Ty::Str),
                            ("effect", Ty::Str),
                            ("timeAdded", TIME),
                        ],
                    )),
                ),
            ],
        ),
    ),
    (
        "status",
        Ty::Obj(
            "v1.NodeStatus",
            &[
                ("phase", Ty::Str),
                ("capacity", Ty::Map(&Ty::Quantity)),
                ("allocatable", Ty::Map(&Ty::Quantity)),
                (
                    "conditions",
                    Ty::Arr(&Ty::Obj(
                        "v1.NodeCondition",
                        &[
                            ("type", Ty::Str),
                            ("status", Ty::Str),
                            ("reason", Ty::Str),
                            ("message", Ty::Str),
                            ("lastHeartbeatTime", TIME),
                            ("lastTransitionTime", TIME),
                        ],
                    )),
                ),
                (
                    "addresses",
                    Ty::Arr(&Ty::Obj(
                        "v1.NodeAddress",
                        &[("type", Ty::Str), ("address", Ty::Str)],
                    )),
                ),
                ("nodeInfo", Ty::AnyObj("v1.NodeSystemInfo")),
                ("daemonEndpoints", Ty::AnyObj("v1.NodeDaemonEndpoints")),
                ("images", Ty::Arr(&Ty::AnyObj("v1.ContainerImage"))),
                ("volumesInUse", Ty::Arr(&Ty::Str)),
            ],
        ),
    ),
];

const LEASE: &[(&str, Ty)] = &[(
    "spec",
    Ty::Obj(
        "v1.LeaseSpec",
        &[
            ("holderIdentity", Ty::Str),
            ("leaseDurationSeconds", Ty::Int32),
            ("acquireTime", TIME),
            ("renewTime", TIME),
            ("leaseTransitions", Ty::Int32),
            ("strategy", Ty::Str),
            ("preferredHolder", Ty::Str),
        ],
    ),
)];

const CORE_EVENT: &[(&str, Ty)] = &[
    ("involvedObject", OBJECT_REFERENCE),
    ("reason", Ty::Str),
    ("message", Ty::Str),
    (
        "source",
        Ty::Obj(
            "v1.EventSource",
            &[("component", Ty::Str), ("host", Ty::Str)],
        ),
    ),
    ("firstTimestamp", TIME),
    ("lastTimestamp", TIME),
    ("eventTime", TIME),
    ("count", Ty::Int32),
    ("type", Ty::Str),
    ("action", Ty::Str),
    ("related", OBJECT_REFERENCE),
    ("reportingComponent", Ty::Str),
    ("reportingInstance", Ty::Str),
    ("series", Ty::AnyObj("v1.EventSeries")),
];

const EVENTS_EVENT: &[(&str, Ty)] = &[
    ("eventTime", TIME),
    ("series", Ty::AnyObj("v1.EventSeries")),
    ("reportingController", Ty::Str),
    ("reportingInstance", Ty::Str),
    ("action", Ty::Str),
    ("reason", Ty::Str),
    ("regarding", OBJECT_REFERENCE),
    ("related", OBJECT_REFERENCE),
    ("note", Ty::Str),
    ("type", Ty::Str),
    ("deprecatedCount", Ty::Int32),
    ("deprecatedFirstTimestamp", TIME),
    ("deprecatedLastTimestamp", TIME),
];

const CONFIG_MAP: &[(&str, Ty)] = &[
    ("data", Ty::Map(&Ty::Str)),
    ("binaryData", Ty::Map(&Ty::Bytes)),
    ("immutable", Ty::Bool),
];

const SECRET: &[(&str, Ty)] = &[
    ("data", Ty::Map(&Ty::Bytes)),
    ("stringData", Ty::Map(&Ty::Str)),
    ("type", Ty::Str),
    ("immutable", Ty::Bool),
];

/// The checked top-level fields of a kind (besides `apiVersion`, `kind`, `metadata`).
fn kind_fields(group: &str, kind: &str) -> &'static [(&'static str, Ty)] {
    match (group, kind) {
        ("", "Pod") => POD,
        ("", "Node") => NODE,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("", "Event") => CORE_EVENT,
        ("events.k8s.io", "Event") => EVENTS_EVENT,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "Secret") => SECRET,
        _ => &[],
    }
}

/// Go's name of a JSON value's kind in decode errors; numbers carry their text when the
/// target is numeric.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unmarshal_error(got: &str, path: &str, ty: &Ty) -> String {
    format!(
        "json: cannot unmarshal {got} into Go struct field {path} of type {}",
        ty.go_name()
    )
}

/// Go's standard base64 decoding: why `s` is not valid (`illegal base64 data at input byte
/// N`), ignoring `\r` and `\n` as Go does.
fn base64_error(s: &str) -> Option<String> {
    let chars: Vec<(usize, u8)> = s
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b != b'\r' && *b != b'\n')
        .collect();
    let illegal = |i: usize| Some(format!("illegal base64 data at input byte {i}"));
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut k = 0;
    while k < chars.len() {
        let quantum = &chars[k..(k + 4).min(chars.len())];
        for (j, (i, b)) in quantum.iter().enumerate() {
            if *b == b'=' {
                // Padding closes the last quantum: from its third character on, in full.
                if j < 2 || (j == 2 && quantum.get(3).map(|x| x.1) != Some(b'=')) {
                    return illegal(*i);
                }
                if let Some((after, _)) = chars.get(k + 4) {
                    return illegal(*after);
                }
                return None;
            }
            if !valid(*b) {
                return illegal(*i);
            }
        }
        if quantum.len() < 4 {
            return illegal(s.len());
        }
        k += 4;
    }
    None
}

/// Checks `v` against `ty`; `path` is the Go-style path so far (`ConfigMap.data`).
fn check(v: &Value, ty: &Ty, path: &str) -> Result<(), String> {
    if v.is_null() {
        // Go leaves the zero value for a null.
        return Ok(());
    }
    let wrong = || Err(unmarshal_error(json_kind(v), path, ty));
    match ty {
        Ty::Str => {
            if !v.is_string() {
                return wrong();
            }
        }
        Ty::Bool => {
            if !v.is_boolean() {
                return wrong();
            }
        }
        Ty::Int | Ty::Int32 => {
            let Value::Number(n) = v else {
                return wrong();
            };
            let fits = match n.as_i64() {
                Some(i) => matches!(ty, Ty::Int) || i32::try_from(i).is_ok(),
                None => false,
            };
            if !fits {
                return Err(unmarshal_error(&format!("number {n}"), path, ty));
            }
        }
        Ty::Quantity => {
            if !(v.is_string() || v.is_number()) {
                return wrong();
            }
        }
        Ty::Bytes => {
            let Value::String(s) = v else {
                return wrong();
            };
            if let Some(e) = base64_error(s) {
                return Err(e);
            }
        }
        Ty::AnyObj(_) => {
            if !v.is_object() {
                return wrong();
            }
        }
        Ty::Obj(_, fields) => {
            let Value::Object(m) = v else {
                return wrong();
            };
            for (name, fty) in fields.iter() {
                if let Some(fv) = m.get(*name) {
                    check(fv, fty, &format!("{path}.{name}"))?;
                }
            }
        }
        Ty::Arr(item) => {
            let Value::Array(items) = v else {
                return wrong();
            };
            for i in items {
                check(i, item, path)?;
            }
        }
        Ty::Map(val) => {
            let Value::Object(m) = v else {
                return wrong();
            };
            for fv in m.values() {
                check(fv, val, path)?;
            }
        }
    }
    Ok(())
}

/// The internal package kube-apiserver converts a group's objects into (for messages).
fn internal_package(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    }
}

/// Why `obj` could not be decoded into the Go type of `kind` in `group`/`version`: a
/// `kind` or `apiVersion` that is not the endpoint's, or a checked field of the wrong JSON
/// type (see the [module docs](self)); `None` when it decodes. An absent `kind` or
/// `apiVersion` is fine: the endpoint supplies them.
pub fn decode_error(obj: &Value, group: &str, version: &str, kind: &str) -> Option<String> {
    let Value::Object(m) = obj else {
        return Some(format!(
            "json: cannot unmarshal {} into Go value of type {}.{kind}",
            json_kind(obj),
            internal_package(group)
        ));
    };
    let want_av = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    for (field, ty) in [("apiVersion", &Ty::Str), ("kind", &Ty::Str)] {
        if let Some(v) = m.get(field)
            && let Err(e) = check(v, ty, &format!("{kind}.{field}"))
        {
            return Some(e);
        }
    }
    let av = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = m.get("kind").and_then(Value::as_str).unwrap_or("");
    if !av.is_empty() && av != want_av {
        return Some(format!(
            "no kind {} is registered for version {}",
            go_quote(if k.is_empty() { kind } else { k }),
            go_quote(av)
        ));
    }
    if !k.is_empty() && !kind.is_empty() && k != kind {
        return Some(format!(
            "converting ({version}.{k}) to ({}.{kind}): unknown conversion",
            internal_package(group)
        ));
    }
    if let Some(meta) = m.get("metadata")
        && let Err(e) = check(meta, &OBJECT_META, &format!("{kind}.metadata"))
    {
        return Some(e);
    }
    for (field, ty) in kind_fields(group, kind) {
        if let Some(v) = m.get(*field)
            && let Err(e) = check(v, ty, &format!("{kind}.{field}"))
        {
            return Some(e);
        }
    }
    None
}

/// The 400 kube-apiserver answers a create or update body that does not decode (`reason`
/// from [`decode_error`]): `<Kind> in version "<v>" cannot be handled as a <Kind>: <reason>`.
pub fn body_decode_status(obj: &Value, version: &str, kind: &str, reason: &str) -> Status {
    let field = |f: &str| obj.get(f).and_then(Value::as_str).filter(|k| !k.is_empty());
    let sent = field("kind").unwrap_or(kind);
    let sent_version = field("apiVersion")
        .and_then(|av| av.rsplit('/').next())
        .unwrap_or(version);
    Status::bad_request(format!(
        "{sent} in version {} cannot be handled as a {kind}: {reason}",
        go_quote(sent_version)
    ))
}

/// The 422 kube-apiserver answers a patch whose result does not decode (`reason` from
/// [`decode_error`]): `"" is invalid: patch: Invalid value: "<value>": <reason>`, where
/// `value` is the patched JSON (JSON and merge patch) or the patch itself in Go's `%v` form
/// (strategic merge patch; see [`go_map_text`]).
pub fn patch_decode_status(value: &str, reason: &str) -> Status {
    invalid_status("", "", "", &[FieldError::invalid("patch", value, reason)])
}

/// A JSON value in Go's `%v` form (`map[a:1 b:[x y]]`), as the apiserver prints a strategic
/// merge patch in its errors.
pub fn go_map_text(v: &Value) -> String {
    crate::patch::go_fmt_v(v)
}

/// Identity checks of a patched (or replacing) object against the URL: the name must be the
/// URL's (400 `name must be provided` when the patch removed it), the namespace, when both
/// are set, the request's (400), and the uid, when set, the stored object's (409 precondition).
/// `resource`/`group` name the resource for the 409 message.
pub fn check_patched_identity(
    obj: &Value,
    group: &str,
    resource: &str,
    url_namespace: &str,
    url_name: &str,
    stored_uid: &str,
) -> Result<(), Box<Status>> {
    let meta = obj.get("metadata");
    let s = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let uid = s("uid");
    if !uid.is_empty() && !stored_uid.is_empty() && uid != stored_uid {
        return Err(Box::new(Status::conflict(
            group,
            resource,
            url_name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored_uid}"
            ),
        )));
    }
    let ns = s("namespace");
    // On a cluster-scoped URL a namespace is cleared, not refused.
    if !ns.is_empty() && !url_namespace.is_empty() && ns != url_namespace {
        return Err(Box::new(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )));
    }
    let name = s("name");
    if name.is_empty() {
        return Err(Box::new(Status::bad_request(format!(
            "the name of the object ({url_name} based on URL) was undeterminable: name must be provided"
        ))));
    }
    if name != url_name {
        return Err(Box::new(Status::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        ))));
    }
    Ok(())
}

/// Whether kube-apiserver serves a `status` subresource for `resource` in `group`: false for
/// the built-in resources known to have none (ConfigMaps, Secrets, Events, Leases, ...),
/// where `<name>/status` is an unknown path (404); true otherwise.
pub fn has_status_subresource(group: &str, resource: &str) -> bool {
    !matches!(
        (group, resource),
        (
            "",
            "configmaps"
                | "secrets"
                | "events"
                | "endpoints"
                | "serviceaccounts"
                | "limitranges"
                | "podtemplates"
                | "bindings"
        ) | ("coordination.k8s.io", "leases")
            | ("discovery.k8s.io", "endpointslices")
            | ("events.k8s.io", "events")
            | ("rbac.authorization.k8s.io", _)
            | (
                "storage.k8s.io",
                "storageclasses" | "csidrivers" | "csinodes"
            )
            | ("node.k8s.io", "runtimeclasses")
            | ("scheduling.k8s.io", "priorityclasses")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_keys_and_values_have_apimachinerys_words() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/App_1").is_empty());
        assert_eq!(
            qualified_name("bad key"),
            vec![
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(qualified_name("a/b/c")[0].starts_with("a valid label key must consist"));
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 bytes"]
        );
        assert!(label_value("").is_empty());
        assert_eq!(label_value("-x").len(), 1);
        assert_eq!(
            label_value(&"a".repeat(64)),
            vec!["must be no more than 63 bytes"]
        );
    }

    #[test]
    fn names_follow_their_rule() {
        assert!(dns1123_subdomain("web-0.a").is_empty());
        // A 5,000-character name of valid characters breaks only the length.
        assert_eq!(
            dns1123_subdomain(&"a".repeat(5000)),
            vec!["must be no more than 253 characters"]
        );
        assert_eq!(dns1123_subdomain("Web").len(), 1);
        assert_eq!(dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            NameRule::PathSegment.check("a/b%"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        assert_eq!(NameRule::of("", "services"), NameRule::Label);
    }

    #[test]
    fn metadata_errors_become_one_invalid_status() {
        let cm = json!({"metadata": {"name": "cm1", "labels": {"bad key": "ok", "k": "-bad"},
            "annotations": {"a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)}}});
        let errs = validate_metadata(&cm, NameRule::Subdomain, false);
        assert_eq!(errs.len(), 3);
        let st = invalid_status("", "ConfigMap", "cm1", &errs);
        assert_eq!(st.code, 422);
        assert!(st.message.starts_with(
            "ConfigMap \"cm1\" is invalid: [metadata.labels: Invalid value: \"bad key\": name part"
        ));
        assert!(
            st.message
                .ends_with("metadata.annotations: Too long: may not be more than 262144 bytes]")
        );
        assert_eq!(st.details.causes.len(), 3);
        assert_eq!(st.details.causes[2].reason, "FieldValueTooLong");
        let nameless = validate_metadata(&json!({}), NameRule::Subdomain, false);
        assert_eq!(
            nameless[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let generated = json!({"metadata": {"generateName": "x-"}});
        assert!(validate_metadata(&generated, NameRule::Subdomain, true).is_empty());
    }

    #[test]
    fn decoding_checks_types_and_identity() {
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "b"}},
            "data": {"k": "v"}, "binaryData": {"b": "aGk="}});
        assert_eq!(decode_error(&ok, "", "v1", "ConfigMap"), None);
        let number = json!({"data": {"k": 1}});
        assert_eq!(
            decode_error(&number, "", "v1", "ConfigMap").unwrap(),
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
        let kind = json!({"kind": "Secret"});
        assert_eq!(
            decode_error(&kind, "", "v1", "ConfigMap").unwrap(),
            "converting (v1.Secret) to (core.ConfigMap): unknown conversion"
        );
        let av = json!({"apiVersion": "v2"});
        assert!(
            decode_error(&av, "", "v1", "ConfigMap")
                .unwrap()
                .starts_with("no kind \"ConfigMap\" is registered for version \"v2\"")
        );
        let secret = json!({"data": {"k": "not base64!"}});
        assert_eq!(
            decode_error(&secret, "", "v1", "Secret").unwrap(),
            "illegal base64 data at input byte 3"
        );
        let lease = json!({"spec": {"leaseDurationSeconds": 5_000_000_000i64}});
        assert!(
            decode_error(&lease, "coordination.k8s.io", "v1", "Lease")
                .unwrap()
                .contains("number 5000000000")
        );
        let pod = json!({"status": {"conditions": [{"type": 1}]}});
        assert!(decode_error(&pod, "", "v1", "Pod").is_some());
        let labels = json!({"metadata": {"labels": {"a": true}}});
        assert!(decode_error(&labels, "", "v1", "Pod").is_some());
        assert_eq!(
            decode_error(&json!({"data": null}), "", "v1", "ConfigMap"),
            None
        );
    }

    #[test]
    fn base64_follows_go() {
        assert_eq!(base64_error(""), None);
        assert_eq!(base64_error("aGk="), None);
        assert_eq!(base64_error("aGVsbG8="), None);
        assert_eq!(base64_error("aA=="), None);
        assert_eq!(base64_error("aGk\n="), None);
        assert!(base64_error("a===").is_some());
        assert!(base64_error("aGk").is_some());
        assert!(base64_error("a=bc").is_some());
    }

    #[test]
    fn identity_of_a_patched_object() {
        let empty = json!({});
        let st = check_patched_identity(&empty, "", "pods", "default", "web-0", "u1").unwrap_err();
        assert_eq!(
            (st.code, st.message.as_str()),
            (
                400,
                "the name of the object (web-0 based on URL) was undeterminable: name must be provided"
            )
        );
        let other = json!({"metadata": {"name": "web-1"}});
        assert_eq!(
            check_patched_identity(&other, "", "pods", "default", "web-0", "u1")
                .unwrap_err()
                .code,
            400
        );
        let uid = json!({"metadata": {"name": "web-0", "uid": "u2"}});
        assert_eq!(
            check_patched_identity(&uid, "", "pods", "default", "web-0", "u1")
                .unwrap_err()
                .code,
            409
        );
        let moved = json!({"metadata": {"name": "web-0", "namespace": "other"}});
        assert_eq!(
            check_patched_identity(&moved, "", "pods", "default", "web-0", "u1")
                .unwrap_err()
                .code,
            400
        );
        // A cluster-scoped URL clears a namespace instead of refusing it.
        assert!(check_patched_identity(&moved, "", "nodes", "", "web-0", "").is_ok());
        let fine = json!({"metadata": {"name": "web-0", "namespace": "default", "uid": "u1"}});
        assert!(check_patched_identity(&fine, "", "pods", "default", "web-0", "u1").is_ok());
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
    }
}
