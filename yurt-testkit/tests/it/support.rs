//! Helpers for the test apiserver's integration tests: raw HTTP/1.1 and h2 requests (to see
//! exact status codes, headers and bodies), watch stream readers, and a bounded wait.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use yurt_testkit::TestApiServer;

/// Skips a test whose external tool (kubectl, the Python client, a built example) is missing,
/// except in CI (`CI` set), where the tool is installed by `.ci/run` and a skip would hide a
/// broken setup: there it fails the test.
pub(crate) fn skip_without(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI (.ci/run installs it)");
    }
    // Written to stderr directly (libtest captures `eprintln!` of passing tests), so the skip
    // shows in ordinary `cargo test` output and `.ci/run` counts it.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "skipping: {what}");
}

/// Every await in these tests is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`].
pub(crate) async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("timed out waiting")
}

/// A plain-HTTP test server.
pub(crate) async fn server() -> TestApiServer {
    TestApiServer::start().await.expect("server starts")
}

/// Sends one HTTP/1.1 request on a new connection; returns the response with its streaming body.
pub(crate) async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    bounded(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("response")
    })
    .await
}

/// Sends one h2 (prior knowledge) request on a new connection.
pub(crate) async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    bounded(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("response")
    })
    .await
}

/// Builds a request with an optional JSON (or other) body.
pub(crate) fn request(
    method: &str,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("request")
}

/// One request; the status and the body parsed as JSON (`Null` if it is not JSON).
pub(crate) async fn call(
    server: &TestApiServer,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = send(
        server.addr(),
        request(method, path, "application/json", bytes),
    )
    .await;
    let status = resp.status();
    let body = bounded(resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A PATCH with the given patch content type.
pub(crate) async fn patch(
    server: &TestApiServer,
    path: &str,
    content_type: &str,
    body: &str,
) -> (StatusCode, Value) {
    let resp = send(
        server.addr(),
        request("PATCH", path, content_type, body.to_owned()),
    )
    .await;
    let status = resp.status();
    let body = bounded(resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Reads newline-delimited watch events from a streaming body.
pub(crate) struct Events {
    body: Incoming,
    buf: Vec<u8>,
}

impl Events {
    /// Wraps a watch response (asserting 200).
    pub(crate) fn new(resp: Response<Incoming>) -> Events {
        assert_eq!(resp.status(), StatusCode::OK, "watch status");
        Events {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        bounded(async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line).expect("event is JSON"));
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            self.buf.extend_from_slice(d);
                        }
                    }
                    _ => return None,
                }
            }
        })
        .await
    }

    /// The next event that is not a BOOKMARK.
    pub(crate) async fn next_change(&mut self) -> Option<Value> {
        loop {
            let ev = self.next().await?;
            if ev["type"] != "BOOKMARK" {
                return Some(ev);
            }
        }
    }
}

/// Opens a watch at `path` (query included) over HTTP/1.1.
pub(crate) async fn watch(server: &TestApiServer, path: &str) -> Events {
    Events::new(send(server.addr(), request("GET", path, "application/json", "")).await)
}

/// A minimal ConfigMap.
pub(crate) fn configmap(ns: &str, name: &str, data: Value) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": data})
}

/// A minimal Pod.
pub(crate) fn pod(ns: &str, name: &str, node: &str) -> Value {
    let mut p = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
    if !node.is_empty() {
        p["spec"]["nodeName"] = serde_json::json!(node);
    }
    p
}
