//! Kubernetes `Status` bodies: the one way every yurt-rs crate answers an error.
//!
//! Clients of kube-apiserver (client-go, kube-rs, kubectl, the Python client) decode a failed
//! response as a `meta.k8s.io/v1` `Status` and branch on its `reason` and `code` (a 404 NotFound
//! is "absent", a 409 Conflict is "retry with a fresh read", a 410 Expired is "re-list"). A proxy
//! that answers on the apiserver's behalf, as the hub does offline, must therefore speak the same
//! shape with the same reasons and the same message wording, or clients take the wrong branch.
//! [`Status`] builds those bodies; the constructors mirror apimachinery's `errors.New*` helpers,
//! including their messages (`pods "web-0" not found`).
//!
//! ```
//! use yurt_core::status::{Status, StatusReason};
//!
//! let st = Status::not_found("", "pods", "web-0");
//! assert_eq!(st.code, 404);
//! assert_eq!(st.reason, Some(StatusReason::NotFound));
//! assert_eq!(st.message, r#"pods "web-0" not found"#);
//! let resp: http::Response<Vec<u8>> = st.to_response();
//! assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
//! ```

use serde::{Deserialize, Serialize};

/// Machine-readable reason of a failed request (`Status.reason`), as Kubernetes defines them.
///
/// Each reason has a conventional HTTP code ([`StatusReason::code`]); unknown reasons received from
/// an apiserver are kept verbatim in [`StatusReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusReason {
    /// 400: the request itself is malformed (bad query parameter, undecodable body).
    BadRequest,
    /// 401: no or invalid credentials.
    Unauthorized,
    /// 403: authenticated, but not allowed (the hub answers offline deletes with this).
    Forbidden,
    /// 404: the object or resource does not exist.
    NotFound,
    /// 405: the verb is not supported on this resource.
    MethodNotAllowed,
    /// 406: none of the accepted media types can be produced.
    NotAcceptable,
    /// 409: create of an object that already exists.
    AlreadyExists,
    /// 409: a resourceVersion precondition failed; re-read and retry.
    Conflict,
    /// 410: the requested resourceVersion is older than the kept history; re-list.
    Expired,
    /// 410: the resource is gone.
    Gone,
    /// 413: the request body is too large.
    RequestEntityTooLarge,
    /// 415: the request body's content type is not supported (e.g. an unknown patch type).
    UnsupportedMediaType,
    /// 422: the object or patch is semantically invalid.
    Invalid,
    /// 429: too many requests; retry later.
    TooManyRequests,
    /// 500: an unexpected server-side failure.
    InternalError,
    /// 500: the server could not finish in time but may still be processing.
    ServerTimeout,
    /// 503: the server (or every upstream apiserver) is temporarily unavailable.
    ServiceUnavailable,
    /// 504: the request timed out.
    Timeout,
    /// A reason this crate does not know, kept as received.
    Other(String),
}

impl StatusReason {
    /// The reason as it appears on the wire (`"NotFound"`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Expired => "Expired",
            Self::Gone => "Gone",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::Invalid => "Invalid",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
            Self::ServerTimeout => "ServerTimeout",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Timeout => "Timeout",
            Self::Other(s) => s,
        }
    }

    /// The HTTP status code Kubernetes pairs with this reason (500 for unknown reasons).
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable => 406,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::Expired | Self::Gone => 410,
            Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Invalid => 422,
            Self::TooManyRequests => 429,
            Self::InternalError | Self::ServerTimeout | Self::Other(_) => 500,
            Self::ServiceUnavailable => 503,
            Self::Timeout => 504,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "BadRequest" => Self::BadRequest,
            "Unauthorized" => Self::Unauthorized,
            "Forbidden" => Self::Forbidden,
            "NotFound" => Self::NotFound,
            "MethodNotAllowed" => Self::MethodNotAllowed,
            "NotAcceptable" => Self::NotAcceptable,
            "AlreadyExists" => Self::AlreadyExists,
            "Conflict" => Self::Conflict,
            "Expired" => Self::Expired,
            "Gone" => Self::Gone,
            "RequestEntityTooLarge" => Self::RequestEntityTooLarge,
            "UnsupportedMediaType" => Self::UnsupportedMediaType,
            "Invalid" => Self::Invalid,
            "TooManyRequests" => Self::TooManyRequests,
            "InternalError" => Self::InternalError,
            "ServerTimeout" => Self::ServerTimeout,
            "ServiceUnavailable" => Self::ServiceUnavailable,
            "Timeout" => Self::Timeout,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for StatusReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StatusReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StatusReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// One field-level problem inside [`StatusDetails`] (`Status.details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusCause {
    /// Machine-readable cause, e.g. `FieldValueInvalid`.
    #[serde(default, rename = "reason", skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The offending field path, e.g. `spec.replicas`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// Which object a failure is about (`Status.details`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusDetails {
    /// Object name, when one is involved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group of the resource (`""` for the core group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource (Kubernetes fills this field with the plural resource name, e.g. `pods`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// UID of the object, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Field-level causes (validation failures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds the client should wait before retrying (429, 503, 504).
    #[serde(
        default,
        rename = "retryAfterSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after_seconds: Option<u32>,
}

impl StatusDetails {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A Kubernetes `meta.k8s.io/v1` `Status` body.
///
/// Build one with a constructor ([`Status::not_found`], [`Status::conflict`], ...) or
/// [`Status::failure`], adjust it with the builder methods, and send it with
/// [`Status::to_response`]. It also deserializes Status bodies received from an apiserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Always `"Status"`.
    pub kind: String,
    /// Always `"v1"`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// List metadata; always empty for errors but present, as the apiserver sends it.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `"Failure"` or `"Success"`.
    #[serde(default)]
    pub status: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason; absent when the failure has no specific reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StatusReason>,
    /// What the failure is about.
    #[serde(default, skip_serializing_if = "StatusDetails::is_empty")]
    pub details: StatusDetails,
    /// The HTTP status code, repeated in the body.
    #[serde(default)]
    pub code: u16,
}

/// `pods` or `nodepools.apps.openyurt.io`: how apimachinery names a group-resource in messages.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

impl Status {
    /// A failure with `reason`, its conventional code, and `message`.
    pub fn failure(reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: serde_json::Map::new(),
            status: "Failure".into(),
            message: message.into(),
            code: reason.code(),
            reason: Some(reason),
            details: StatusDetails::default(),
        }
    }

    /// A `Success` status, as returned by some deletes.
    pub fn success() -> Self {
        Self {
            status: "Success".into(),
            reason: None,
            code: 200,
            ..Self::failure(StatusReason::InternalError, "")
        }
    }

    /// Overrides the HTTP code (e.g. 429 with `reason` TooManyRequests is already the default;
    /// use this for the rare pairing Kubernetes itself varies).
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = code;
        self
    }

    /// Sets the object the failure is about.
    pub fn with_details(mut self, group: &str, resource: &str, name: &str) -> Self {
        self.details.group = group.to_owned();
        self.details.kind = resource.to_owned();
        self.details.name = name.to_owned();
        self
    }

    /// Adds a field-level cause.
    pub fn with_cause(mut self, reason: &str, field: &str, message: &str) -> Self {
        self.details.causes.push(StatusCause {
            reason: reason.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        });
        self
    }

    /// Tells the client when to retry.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.details.retry_after_seconds = Some(seconds);
        self
    }

    /// 400 BadRequest with a free-form message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::BadRequest, message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::Unauthorized, message)
    }

    /// 403 Forbidden: `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let what = qualified(group, resource);
        let message = if name.is_empty() {
            format!("{what} is forbidden: {why}")
        } else {
            format!("{what} \"{name}\" is forbidden: {why}")
        };
        Self::failure(StatusReason::Forbidden, message).with_details(group, resource, name)
    }

    /// 404 NotFound: `<resource> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", qualified(group, resource));
        Self::failure(StatusReason::NotFound, message).with_details(group, resource, name)
    }

    /// 404 NotFound for a path that names no known resource (`the server could not find the
    /// requested resource`), as the apiserver answers unknown API paths.
    pub fn path_not_found() -> Self {
        Self::failure(
            StatusReason::NotFound,
            "the server could not find the requested resource",
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Self {
        let message = format!(
            "{verb} is not supported on resources of kind \"{}\"",
            qualified(group, resource)
        );
        Self::failure(StatusReason::MethodNotAllowed, message).with_details(group, resource, "")
    }

    /// 409 AlreadyExists: `<resource> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", qualified(group, resource));
        Self::failure(StatusReason::AlreadyExists, message).with_details(group, resource, name)
    }

    /// 409 Conflict: `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            qualified(group, resource)
        );
        Self::failure(StatusReason::Conflict, message).with_details(group, resource, name)
    }

    /// 410 Expired: the resourceVersion is older than the kept history; the client must re-list.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::Expired, message)
    }

    /// 410 Gone.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::Gone, message)
    }

    /// 415 UnsupportedMediaType for a body in a media type the endpoint does not take, worded
    /// as kube-apiserver words it, listing the `accepted` media types.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::failure(
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 422 Invalid: `<Kind> "<name>" is invalid: <why>`.
    pub fn invalid(group: &str, kind: &str, name: &str, why: &str) -> Self {
        let what = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let message = format!("{what} \"{name}\" is invalid: {why}");
        Self::failure(StatusReason::Invalid, message).with_details(group, kind, name)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        Self::failure(StatusReason::TooManyRequests, message).with_retry_after(retry_after)
    }

    /// 500 InternalError: `Internal error occurred: <why>`.
    pub fn internal(why: impl std::fmt::Display) -> Self {
        Self::failure(
            StatusReason::InternalError,
            format!("Internal error occurred: {why}"),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::ServiceUnavailable, message)
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::failure(StatusReason::Timeout, message)
    }

    /// The HTTP status code, falling back to 500 if the code is not a valid HTTP status.
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing this struct cannot fail: every field is a string, number or string map.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The body as a JSON value, for embedding in other documents (e.g. a watch ERROR event).
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Parses a body as a Status, returning `None` unless it is one (`kind: Status`).
    pub fn from_json(body: &[u8]) -> Option<Self> {
        let st: Self = serde_json::from_slice(body).ok()?;
        (st.kind == "Status").then_some(st)
    }

    /// A complete HTTP response: the code, `Content-Type: application/json`, the JSON body.
    pub fn to_response<B: From<Vec<u8>>>(&self) -> http::Response<B> {
        let mut resp = http::Response::new(B::from(self.to_json()));
        *resp.status_mut() = self.http_status();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(r) => write!(f, "{} ({r}): {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for Status {}

/// A malformed request (bad query parameter or path) is a 400 BadRequest, as kube-apiserver
/// answers it.
impl From<crate::request::RequestError> for Status {
    fn from(e: crate::request::RequestError) -> Self {
        Status::bad_request(e.to_string())
    }
}

/// A selector that does not parse is a 400 BadRequest naming the offending token.
impl From<crate::selector::SelectorError> for Status {
    fn from(e: crate::selector::SelectorError) -> Self {
        Status::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_apiserver_wire_shape() {
        let st = Status::not_found("apps.openyurt.io", "nodepools", "hangzhou");
        let v: serde_json::Value = serde_json::from_slice(&st.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "nodepools.apps.openyurt.io \"hangzhou\" not found",
                "reason": "NotFound",
                "details": {"name": "hangzhou", "group": "apps.openyurt.io", "kind": "nodepools"},
                "code": 404
            })
        );
    }

    #[test]
    fn every_reason_round_trips_with_its_code() {
        let reasons = [
            (Status::bad_request("x"), 400, "BadRequest"),
            (Status::unauthorized("x"), 401, "Unauthorized"),
            (
                Status::forbidden("", "pods", "p", "offline"),
                403,
                "Forbidden",
            ),
            (
                Status::method_not_supported("", "pods", "watch"),
                405,
                "MethodNotAllowed",
            ),
            (
                Status::already_exists("", "pods", "p"),
                409,
                "AlreadyExists",
            ),
            (Status::conflict("", "pods", "p", "stale"), 409, "Conflict"),
            (
                Status::expired("too old resource version: 1 (5)"),
                410,
                "Expired",
            ),
            (Status::gone("x"), 410, "Gone"),
            (
                Status::unsupported_media_type(&["application/json"]),
                415,
                "UnsupportedMediaType",
            ),
            (
                Status::invalid("", "Pod", "p", "spec: Required value"),
                422,
                "Invalid",
            ),
            (
                Status::too_many_requests("slow down", 1),
                429,
                "TooManyRequests",
            ),
            (Status::internal("boom"), 500, "InternalError"),
            (
                Status::service_unavailable("no healthy upstream"),
                503,
                "ServiceUnavailable",
            ),
            (Status::timeout("x"), 504, "Timeout"),
        ];
        for (st, code, reason) in reasons {
            assert_eq!(st.code, code, "{st}");
            let json = st.to_json();
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(v["reason"], reason);
            assert_eq!(v["code"], code);
            let back = Status::from_json(&json).unwrap();
            assert_eq!(back, st);
            let resp: http::Response<Vec<u8>> = st.to_response();
            assert_eq!(resp.status().as_u16(), code);
            assert_eq!(resp.headers()["content-type"], "application/json");
        }
    }

    #[test]
    fn messages_follow_apimachinery_wording() {
        assert_eq!(
            Status::conflict("", "pods", "web-0", "the object has been modified").message,
            "Operation cannot be fulfilled on pods \"web-0\": the object has been modified"
        );
        assert_eq!(
            Status::already_exists("coordination.k8s.io", "leases", "n1").message,
            "leases.coordination.k8s.io \"n1\" already exists"
        );
        assert_eq!(
            Status::forbidden("", "pods", "", "cluster is unreachable").message,
            "pods is forbidden: cluster is unreachable"
        );
    }

    #[test]
    fn parses_apiserver_status_and_rejects_objects() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"x","reason":"SomethingNew","code":418}"#;
        let st = Status::from_json(body).unwrap();
        assert_eq!(st.reason, Some(StatusReason::Other("SomethingNew".into())));
        assert_eq!(st.code, 418);
        assert!(Status::from_json(br#"{"kind":"Pod","apiVersion":"v1"}"#).is_none());
        assert!(Status::from_json(b"not json").is_none());
    }

    #[test]
    fn parse_errors_become_bad_request() {
        let err = crate::RequestInfo::parse("GET", "/api/v1/pods", Some("limit=ten")).unwrap_err();
        let st = Status::from(err);
        assert_eq!(
            (st.code, st.reason.clone()),
            (400, Some(StatusReason::BadRequest))
        );
        assert!(st.message.contains("limit"), "{}", st.message);
        let st = Status::from(crate::LabelSelector::parse("a in (b").unwrap_err());
        assert_eq!(st.code, 400);
        assert!(st.message.contains("a in (b"), "{}", st.message);
    }

    #[test]
    fn retry_after_and_causes_serialize_in_camel_case() {
        let st =
            Status::too_many_requests("slow", 3).with_cause("FieldValueInvalid", "spec", "bad");
        let v: serde_json::Value = serde_json::from_slice(&st.to_json()).unwrap();
        assert_eq!(v["details"]["retryAfterSeconds"], 3);
        assert_eq!(v["details"]["causes"][0]["field"], "spec");
    }
}
