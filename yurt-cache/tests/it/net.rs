//! Helpers for the tests that talk to a `TestApiServer` over loopback through the hub's layers.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use yurt_cache::body::Body;
use yurt_cache::upstream::{UpstreamClient, UpstreamConfig};
use yurt_testkit::TestApiServer;

/// Bound for every wait in these tests: a hang fails the test instead of stalling the run.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A client trusting `server`'s CA and presenting a certificate for `user` issued by it.
pub(crate) fn hub_client(server: &TestApiServer, user: &str, groups: &[&str]) -> UpstreamClient {
    let cert = server.ca().issue_client_cert(user, groups).unwrap();
    let config = UpstreamConfig::from_ca_pem(server.ca().ca_pem().as_bytes())
        .unwrap()
        .client_cert_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
        .unwrap();
    UpstreamClient::new(config).unwrap()
}

/// A client for plain-HTTP test servers (trusts no CA at all).
pub(crate) fn plain_client() -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig::new(Vec::new())).unwrap()
}

pub(crate) fn uri(server: &TestApiServer) -> http::Uri {
    server.url().parse().unwrap()
}

pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("user-agent", "kubelet/v1.36.0")
        .header("accept", "application/json")
        .body(Body::empty())
        .unwrap()
}

/// The whole body (test side only; the proxy path never collects).
pub(crate) async fn bytes(resp: Response<Body>) -> Bytes {
    tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("body within the wait bound")
        .unwrap()
        .to_bytes()
}

pub(crate) async fn json(resp: Response<Body>) -> Value {
    serde_json::from_slice(&bytes(resp).await).unwrap()
}

/// A SelfSubjectReview request: the testkit answers with the identity it authenticated.
pub(crate) fn whoami() -> Request<Body> {
    Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("user-agent", "kubelet/v1.36.0")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        ))
        .unwrap()
}

/// [`UpstreamClient::send`], bounded by [`WAIT`].
pub(crate) async fn send(
    client: &UpstreamClient,
    server: &http::Uri,
    req: Request<Body>,
) -> Result<Response<Body>, yurt_cache::upstream::Error> {
    tokio::time::timeout(WAIT, client.send(server, req))
        .await
        .expect("an answer within the wait bound")
}
