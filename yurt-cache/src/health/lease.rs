//! The two probes: Lease renewal and `/readyz`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use yurt_core::wellknown::hub::DELEGATE_HEARTBEAT_ANNOTATION;

use super::LeaseProbe;
use crate::body::Body;
use crate::upstream::UpstreamClient;

const USER_AGENT: &str = concat!("yurthub/", env!("CARGO_PKG_VERSION"));

/// Why a probe failed (logged, never returned to callers).
pub(super) type ProbeResult = Result<(), String>;

/// One request and its whole (small) answer, bounded by `timeout`.
async fn exchange(
    client: &UpstreamClient,
    server: &Uri,
    method: Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "application/json");
    let body = match body {
        Some(v) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let req = req.body(body).map_err(|e| e.to_string())?;
    let work = async {
        let resp = client.send(server, req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// `GET /readyz` answers 2xx.
pub(super) async fn readyz(
    client: &UpstreamClient,
    server: &Uri,
    timeout: Duration,
) -> ProbeResult {
    let (status, _) = exchange(client, server, Method::GET, "/readyz", None, timeout).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("/readyz answered {status}"))
    }
}

/// Renews (or creates) the node Lease; see the [module docs](super).
pub(super) async fn renew(
    client: &UpstreamClient,
    server: &Uri,
    lease: &LeaseProbe,
    timeout: Duration,
) -> ProbeResult {
    let collection = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        lease.namespace
    );
    let object = format!("{collection}/{}", lease.node_name);
    let mut last = String::new();
    for _ in 0..=lease.retries {
        let (status, body) = exchange(client, server, Method::GET, &object, None, timeout).await?;
        let (method, path, desired) = match status {
            StatusCode::OK => {
                let mut current: Value =
                    serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                renewed(&mut current, lease);
                (Method::PUT, &object, current)
            }
            StatusCode::NOT_FOUND => {
                let mut fresh = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": lease.node_name, "namespace": lease.namespace},
                });
                renewed(&mut fresh, lease);
                (Method::POST, &collection, fresh)
            }
            other => return Err(format!("reading the lease answered {other}")),
        };
        let mut desired = desired;
        if desired.pointer("/metadata/ownerReferences").is_none() {
            own_by_node(client, server, lease, timeout, &mut desired).await;
        }
        let (status, _) = exchange(client, server, method, path, Some(&desired), timeout).await?;
        if status.is_success() {
            return Ok(());
        }
        last = format!("writing the lease answered {status}");
        if status != StatusCode::CONFLICT {
            break;
        }
    }
    Err(last)
}

/// Makes the Node the Lease's owner (so the Lease goes when the Node goes), if the Node can
/// be read; a Lease whose Node is missing or unreadable is written without an owner.
async fn own_by_node(
    client: &UpstreamClient,
    server: &Uri,
    lease: &LeaseProbe,
    timeout: Duration,
    lease_object: &mut Value,
) {
    let path = format!("/api/v1/nodes/{}", lease.node_name);
    let Ok((StatusCode::OK, body)) =
        exchange(client, server, Method::GET, &path, None, timeout).await
    else {
        return;
    };
    let Some(uid) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|node| {
            node.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    else {
        return;
    };
    lease_object["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1",
        "kind": "Node",
        "name": lease.node_name,
        "uid": uid,
    }]);
}

/// Sets the renewal fields and drops the legacy delegate-heartbeat annotation.
fn renewed(lease_object: &mut Value, lease: &LeaseProbe) {
    if let Some(annotations) = lease_object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(DELEGATE_HEARTBEAT_ANNOTATION);
    }
    lease_object["spec"]["holderIdentity"] = json!(lease.node_name);
    lease_object["spec"]["leaseDurationSeconds"] = json!(lease.lease_duration_seconds);
    lease_object["spec"]["renewTime"] = json!(micro_time(SystemTime::now()));
}

/// A Kubernetes MicroTime (`2006-01-02T15:04:05.000000Z`, UTC).
pub(super) fn micro_time(t: SystemTime) -> String {
    yurt_core::time::format_micro_time(t)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn micro_time_formats_utc() {
        assert_eq!(micro_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456);
        assert_eq!(micro_time(t), "2024-02-29T23:59:59.123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(micro_time(t), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn renewal_sets_the_holder_and_strips_the_delegate_annotation() {
        let mut obj = json!({"metadata": {"name": "edge-1", "annotations": {
            DELEGATE_HEARTBEAT_ANNOTATION: "true", "keep": "me"}},
            "spec": {"holderIdentity": "x"}});
        renewed(&mut obj, &LeaseProbe::new("edge-1"));
        assert_eq!(obj["spec"]["holderIdentity"], "edge-1");
        assert_eq!(obj["spec"]["leaseDurationSeconds"], 40);
        assert!(obj["spec"]["renewTime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(obj["metadata"]["annotations"], json!({"keep": "me"}));
    }
}
