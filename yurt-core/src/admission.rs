//! Decoding of the review documents kube-apiserver sends to webhooks: `AdmissionReview`
//! (`admission.k8s.io/v1`, for mutating and validating admission webhooks) and
//! `ConversionReview` (`apiextensions.k8s.io/v1`, for CRD conversion webhooks).
//!
//! A webhook server reads untrusted bytes from the network, so decoding is strict and total: any
//! body that is not a well-formed review with everything a handler relies on (a `uid`, a known
//! `operation`, the object for CREATE/UPDATE, the old object for UPDATE, objects that are JSON
//! objects with an `apiVersion` for a conversion) is a [`ReviewError`] whose message says what is
//! wrong, for a `400 Bad Request` answer. Objects stay as `serde_json::Value`, so a handler that
//! mutates them produces JSON patches against exactly what the apiserver sent.
//!
//! ```
//! use yurt_core::admission::{Operation, decode_admission_review};
//!
//! let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
//!     "uid":"1","kind":{"group":"","version":"v1","kind":"Node"},
//!     "resource":{"group":"","version":"v1","resource":"nodes"},
//!     "name":"edge-1","operation":"CREATE","userInfo":{"username":"admin"},
//!     "object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"edge-1"}}}}"#;
//! let review = decode_admission_review(body).unwrap();
//! assert_eq!(review.request.operation, Operation::Create);
//! assert!(decode_admission_review(b"{}").is_err());
//! ```

use serde::Deserialize;
use serde_json::Value;

/// Why a review body was refused; the message is meant for the caller (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// The admission operation being reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// An object is being created.
    Create,
    /// An object is being updated (including patches).
    Update,
    /// An object is being deleted.
    Delete,
    /// A connect request (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    /// The wire name (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// A group/version/kind as the review names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReviewKind {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind, such as `Node`.
    #[serde(default)]
    pub kind: String,
}

/// A group/version/resource as the review names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReviewResource {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Plural resource, such as `nodes`.
    #[serde(default)]
    pub resource: String,
}

/// Who sent the request under review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// User name, such as `system:node:edge-1` or `system:serviceaccount:kube-system:x`.
    #[serde(default)]
    pub username: String,
    /// Group memberships.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The `request` of an `AdmissionReview`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Identifies this review; the response must echo it.
    pub uid: String,
    /// Kind of the object (as the webhook registered for it).
    pub kind: ReviewKind,
    /// Resource being requested.
    pub resource: ReviewResource,
    /// Subresource, such as `status`, if any.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// Object name (may be empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// What is being done.
    pub operation: Operation,
    /// Who is doing it.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The new object (CREATE, UPDATE); `None` for DELETE.
    #[serde(default)]
    pub object: Option<Value>,
    /// The existing object (UPDATE, DELETE); `None` for CREATE.
    #[serde(default)]
    pub old_object: Option<Value>,
    /// The request is a dry run: a webhook with side effects must not make them.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// A decoded `AdmissionReview`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1` or `admission.k8s.io/v1beta1`; the response uses the same.
    pub api_version: String,
    /// The request.
    pub request: AdmissionRequest,
}

/// The `request` of a `ConversionReview`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionRequest {
    /// Identifies this review; the response must echo it.
    pub uid: String,
    /// The `apiVersion` every object must be converted to, such as `apps.openyurt.io/v1beta1`.
    pub desired_api_version: String,
    /// The objects to convert; each is a JSON object with an `apiVersion`.
    pub objects: Vec<Value>,
}

/// A decoded `ConversionReview`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionReview {
    /// Always `apiextensions.k8s.io/v1`.
    pub api_version: String,
    /// The request.
    pub request: ConversionRequest,
}

fn envelope<'a>(
    doc: &'a Value,
    kind: &str,
    versions: &[&str],
) -> Result<(&'a str, &'a Value), ReviewError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| ReviewError(format!("a {kind} must be a JSON object")))?;
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ReviewError(format!("{kind}: apiVersion is missing")))?;
    if !versions.contains(&api_version) {
        return Err(ReviewError(format!(
            "{kind}: unsupported apiVersion {api_version:?} (expected {})",
            versions.join(" or ")
        )));
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k == kind => {}
        Some(other) => {
            return Err(ReviewError(format!("expected kind {kind}, got {other:?}")));
        }
        None => return Err(ReviewError(format!("{kind}: kind is missing"))),
    }
    let request = obj
        .get("request")
        .filter(|r| !r.is_null())
        .ok_or_else(|| ReviewError(format!("{kind}: request is missing")))?;
    Ok((api_version, request))
}

fn parse(body: &[u8]) -> Result<Value, ReviewError> {
    if body.is_empty() {
        return Err(ReviewError("request body is empty".into()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ReviewError(format!("request body is not valid JSON: {e}")))
}

fn is_object(v: &Option<Value>) -> bool {
    v.as_ref().is_some_and(Value::is_object)
}

/// Decodes and checks an `AdmissionReview` body.
pub fn decode_admission_review(body: &[u8]) -> Result<AdmissionReview, ReviewError> {
    let doc = parse(body)?;
    let (api_version, request) = envelope(
        &doc,
        "AdmissionReview",
        &["admission.k8s.io/v1", "admission.k8s.io/v1beta1"],
    )?;
    let request = AdmissionRequest::deserialize(request)
        .map_err(|e| ReviewError(format!("AdmissionReview: invalid request: {e}")))?;
    if request.uid.is_empty() {
        return Err(ReviewError("AdmissionReview: request.uid is empty".into()));
    }
    let needs_object = matches!(request.operation, Operation::Create | Operation::Update);
    if needs_object && !is_object(&request.object) {
        return Err(ReviewError(format!(
            "AdmissionReview: request.object is required for {}",
            request.operation.as_str()
        )));
    }
    if request.operation == Operation::Update && !is_object(&request.old_object) {
        return Err(ReviewError(
            "AdmissionReview: request.oldObject is required for UPDATE".into(),
        ));
    }
    for (field, v) in [
        ("object", &request.object),
        ("oldObject", &request.old_object),
    ] {
        if v.as_ref().is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err(ReviewError(format!(
                "AdmissionReview: request.{field} must be a JSON object"
            )));
        }
    }
    Ok(AdmissionReview {
        api_version: api_version.to_owned(),
        request,
    })
}

/// Decodes and checks a `ConversionReview` body.
pub fn decode_conversion_review(body: &[u8]) -> Result<ConversionReview, ReviewError> {
    let doc = parse(body)?;
    let (api_version, request) = envelope(&doc, "ConversionReview", &["apiextensions.k8s.io/v1"])?;
    let request = request
        .as_object()
        .ok_or_else(|| ReviewError("ConversionReview: request must be a JSON object".into()))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReviewError("ConversionReview: request.uid is missing".into()))?;
    let desired = request
        .get("desiredAPIVersion")
        .and_then(Value::as_str)
        .filter(|s| s.contains('/'))
        .ok_or_else(|| {
            ReviewError(
                "ConversionReview: request.desiredAPIVersion must be <group>/<version>".into(),
            )
        })?;
    let objects = match request.get("objects") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ReviewError(
                "ConversionReview: request.objects must be a list".into(),
            ));
        }
    };
    for (i, o) in objects.iter().enumerate() {
        if o.get("apiVersion").and_then(Value::as_str).is_none() {
            return Err(ReviewError(format!(
                "ConversionReview: request.objects[{i}] is not an object with an apiVersion"
            )));
        }
    }
    Ok(ConversionReview {
        api_version: api_version.to_owned(),
        request: ConversionRequest {
            uid: uid.to_owned(),
            desired_api_version: desired.to_owned(),
            objects,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
        }))
        .unwrap()
    }

    fn base(op: &str) -> Value {
        json!({"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Node"},
               "resource": {"group": "", "version": "v1", "resource": "nodes"},
               "operation": op, "object": {"metadata": {"name": "a"}},
               "oldObject": {"metadata": {"name": "a"}}})
    }

    #[test]
    fn accepts_well_formed_reviews() {
        let r = decode_admission_review(&review(base("UPDATE"))).unwrap();
        assert_eq!(r.request.operation, Operation::Update);
        assert_eq!(r.api_version, "admission.k8s.io/v1");
        let mut del = base("DELETE");
        del["object"] = Value::Null;
        assert!(decode_admission_review(&review(del)).is_ok());
    }

    #[test]
    fn refuses_malformed_reviews_with_a_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (b"{".to_vec(), "not valid JSON"),
            (b"[]".to_vec(), "JSON object"),
            (
                br#"{"kind":"AdmissionReview"}"#.to_vec(),
                "apiVersion is missing",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{}}"#
                    .to_vec(),
                "unsupported apiVersion",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{}}"#.to_vec(),
                "expected kind AdmissionReview",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                "request is missing",
            ),
            (review(json!({"uid": "u"})), "invalid request"),
            (
                review({
                    let mut b = base("CREATE");
                    b["uid"] = json!("");
                    b
                }),
                "uid is empty",
            ),
            (
                review({
                    let mut b = base("PATCH");
                    b["uid"] = json!("x");
                    b
                }),
                "invalid request",
            ),
            (
                review({
                    let mut b = base("CREATE");
                    b["object"] = Value::Null;
                    b
                }),
                "object is required",
            ),
            (
                review({
                    let mut b = base("UPDATE");
                    b["oldObject"] = json!(3);
                    b
                }),
                "oldObject is required",
            ),
            (
                review({
                    let mut b = base("DELETE");
                    b["object"] = json!("x");
                    b
                }),
                "must be a JSON object",
            ),
        ];
        for (body, want) in cases {
            let err = decode_admission_review(&body).unwrap_err();
            assert!(
                err.0.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn conversion_reviews() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "c", "desiredAPIVersion": "apps.openyurt.io/v1beta1",
                        "objects": [{"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool"}]}});
        let r = decode_conversion_review(&serde_json::to_vec(&ok).unwrap()).unwrap();
        assert_eq!(r.request.desired_api_version, "apps.openyurt.io/v1beta1");
        assert_eq!(r.request.objects.len(), 1);
        for (mutate, want) in [
            (json!({"uid": ""}), "uid is missing"),
            (json!({"desiredAPIVersion": "v1beta1"}), "desiredAPIVersion"),
            (json!({"objects": {}}), "must be a list"),
            (json!({"objects": [1]}), "objects[0]"),
        ] {
            let mut doc = ok.clone();
            for (k, v) in mutate.as_object().unwrap() {
                doc["request"][k] = v.clone();
            }
            let err = decode_conversion_review(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
            assert!(err.0.contains(want), "{doc}: {err}");
        }
    }
}
