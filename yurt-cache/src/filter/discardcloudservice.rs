//! `discardcloudservice` (kube-proxy; services list/watch): drops LoadBalancer Services
//! annotated `svc.openyurt.io/discard: "true"` (cloud-only) and the tunnel server's internal
//! Service `kube-system/x-tunnel-server-internal-svc`.

use serde_json::Value;
use yurt_core::wellknown;

use super::FilterContext;

/// The tunnel server's internal Service, meaningless at the edge.
const TUNNEL_INTERNAL_SVC: &str = "x-tunnel-server-internal-svc";

/// Drops the cloud-only Services.
pub(crate) fn apply(svc: Value, _cx: &FilterContext<'_>) -> Option<Value> {
    let m = &svc["metadata"];
    if m["namespace"] == "kube-system" && m["name"] == TUNNEL_INTERNAL_SVC {
        return None;
    }
    let discard = m["annotations"][wellknown::service::DISCARD_ANNOTATION] == "true";
    if discard && svc["spec"]["type"] == "LoadBalancer" {
        return None;
    }
    Some(svc)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ty: &str, discard: Option<&str>) -> Value {
        let mut s = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": ty, "ports": [{"port": 80}]}});
        if let Some(d) = discard {
            s["metadata"]["annotations"] = json!({"svc.openyurt.io/discard": d});
        }
        s
    }

    #[test]
    fn drops_cloud_services() {
        let (config, view) = cx();
        let cx = FilterContext::new(&config, &view);
        assert!(apply(svc("d", "lb", "LoadBalancer", Some("true")), &cx).is_none());
        assert!(apply(svc("d", "lb", "LoadBalancer", Some("false")), &cx).is_some());
        assert!(apply(svc("d", "lb", "LoadBalancer", None), &cx).is_some());
        assert!(apply(svc("d", "np", "NodePort", Some("true")), &cx).is_some());
        assert!(
            apply(
                svc("kube-system", TUNNEL_INTERNAL_SVC, "ClusterIP", None),
                &cx
            )
            .is_none()
        );
        assert!(apply(svc("default", TUNNEL_INTERNAL_SVC, "ClusterIP", None), &cx).is_some());
    }
}
