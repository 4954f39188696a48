//! Response bodies: one boxed body type for whole documents and streams (lists, watches), and
//! helpers that build the JSON and Status responses every handler sends.
//!
//! Every response carries the headers a real kube-apiserver sends on API responses
//! (`Content-Type`, `Cache-Control: no-cache, private`, an `Audit-Id`).

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use futures::StreamExt as _;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use yurt_core::status::Status;

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body streamed chunk by chunk.
pub(crate) fn stream(s: impl Stream<Item = Bytes> + Send + 'static) -> Body {
    StreamBody::new(s.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
}

/// A response with the apiserver's standard headers.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    if let Ok(v) = HeaderValue::from_str(&crate::meta::new_uid()) {
        h.insert("audit-id", v);
    }
    resp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, bytes: impl Into<Bytes>) -> Response<Body> {
    response(status, "application/json", full(bytes))
}

/// A JSON response from a value.
pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A Status response with the Status's code.
pub(crate) fn status(st: &Status) -> Response<Body> {
    json(st.http_status(), st.to_json())
}

/// A plain-text response (health checks).
pub(crate) fn text(status: StatusCode, text: &'static str) -> Response<Body> {
    response(
        status,
        "text/plain; charset=utf-8",
        full(Bytes::from_static(text.as_bytes())),
    )
}
