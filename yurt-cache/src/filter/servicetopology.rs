//! `servicetopology` (kube-proxy, coredns, nginx-ingress-controller; endpointslices and
//! endpoints list/watch): for the endpoints of a Service annotated `openyurt.io/topologyKeys`,
//! keeps only those on this node (`kubernetes.io/hostname`) or in this node's pool
//! (`openyurt.io/nodepool`, `kubernetes.io/zone`; a node without a pool falls back to the node
//! itself). EndpointSlices `discovery.k8s.io/v1` (endpoint `nodeName`; endpoints without one are
//! dropped) and `v1beta1` (`topology["kubernetes.io/hostname"]`) are filtered, and, unlike
//! upstream, core `Endpoints` too (addresses by `nodeName`, emptied subsets removed). A slice
//! left without endpoints is still sent.

use std::collections::BTreeSet;

use serde_json::Value;
use yurt_core::wellknown::service::{TOPOLOGY_HOSTNAME, TOPOLOGY_NODEPOOL, TOPOLOGY_ZONE};

use super::FilterContext;

/// Label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The nodes whose endpoints Service `ns/name` may use here; `None`: no restriction.
fn allowed_nodes<'a>(cx: &FilterContext<'a>, ns: &str, name: &str) -> Option<BTreeSet<&'a str>> {
    let keys = cx.view.topology_keys(ns, name)?;
    let node = cx.config.node_name.as_str();
    match keys.trim() {
        TOPOLOGY_HOSTNAME => Some([node].into_iter().collect()),
        TOPOLOGY_NODEPOOL | TOPOLOGY_ZONE => {
            let members = cx
                .view
                .pool_of(cx.config)
                .map(|p| cx.view.pool_members(p))
                .unwrap_or_default();
            if members.contains(node) {
                Some(members)
            } else {
                Some([node].into_iter().collect())
            }
        }
        _ => None,
    }
}

/// Filters an EndpointSlice or Endpoints object by its Service's topology.
pub(crate) fn apply(mut obj: Value, cx: &FilterContext<'_>) -> Option<Value> {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if cx.resource == "endpoints" || obj["kind"] == "Endpoints" {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let Some(allowed) = allowed_nodes(cx, &ns, &name) else {
            return Some(obj);
        };
        filter_endpoints(&mut obj, &allowed);
        return Some(obj);
    }
    let Some(svc) = obj["metadata"]["labels"][SERVICE_NAME_LABEL]
        .as_str()
        .map(str::to_owned)
    else {
        return Some(obj);
    };
    let Some(allowed) = allowed_nodes(cx, &ns, &svc) else {
        return Some(obj);
    };
    let v1beta1 = cx.api_version == "discovery.k8s.io/v1beta1"
        || obj["apiVersion"] == "discovery.k8s.io/v1beta1";
    if let Some(eps) = obj.get_mut("endpoints").and_then(Value::as_array_mut) {
        eps.retain(|e| {
            let node = if v1beta1 {
                e["topology"][TOPOLOGY_HOSTNAME].as_str()
            } else {
                e["nodeName"].as_str()
            };
            node.is_some_and(|n| allowed.contains(n))
        });
    }
    Some(obj)
}

/// Keeps the core Endpoints addresses on allowed nodes; drops subsets left empty.
fn filter_endpoints(obj: &mut Value, allowed: &BTreeSet<&str>) {
    let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) else {
        return;
    };
    for s in subsets.iter_mut() {
        for key in ["addresses", "notReadyAddresses"] {
            if let Some(addrs) = s.get_mut(key).and_then(Value::as_array_mut) {
                addrs.retain(|a| a["nodeName"].as_str().is_some_and(|n| allowed.contains(n)));
                if addrs.is_empty()
                    && let Some(m) = s.as_object_mut()
                {
                    m.remove(key);
                }
            }
        }
    }
    subsets.retain(|s| s.get("addresses").is_some() || s.get("notReadyAddresses").is_some());
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;
    use crate::filter::{ClusterView, FilterConfig};
    use serde_json::json;

    fn slice_v1(svc: &str) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-abcde"), "namespace": "d",
                "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "edge-1"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "nodeName": "edge-2"},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "nodeName": "cloud-1"},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})
    }

    fn slice_v1beta1(svc: &str) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-abcde"), "namespace": "d",
                "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "topology": {"kubernetes.io/hostname": "edge-1"}},
                {"addresses": ["10.0.0.3"], "topology": {"kubernetes.io/hostname": "cloud-1"}}]})
    }

    fn endpoints(svc: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": svc, "namespace": "d"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1", "nodeName": "edge-1"}, {"ip": "10.0.0.3", "nodeName": "cloud-1"}],
                 "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "edge-2"}],
                 "ports": [{"port": 80}]},
                {"addresses": [{"ip": "10.0.1.3", "nodeName": "cloud-1"}], "ports": [{"port": 81}]}]})
    }

    fn view_with(keys: &[(&str, &str)]) -> ClusterView {
        let (_, mut view) = cx();
        for (svc, k) in keys {
            view.set_service(&json!({"metadata": {"namespace": "d", "name": svc,
                "annotations": {"openyurt.io/topologyKeys": k}}}));
        }
        view
    }

    fn ips(v: &Value) -> Vec<&str> {
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["addresses"][0].as_str().unwrap())
            .collect()
    }

    #[test]
    fn slices_by_node_pool_and_zone() {
        let config = FilterConfig::new("edge-1");
        let view = view_with(&[
            ("host", "kubernetes.io/hostname"),
            ("pool", "openyurt.io/nodepool"),
            ("zone", "kubernetes.io/zone"),
        ]);
        let cx = FilterContext::new(&config, &view);
        assert_eq!(ips(&apply(slice_v1("host"), &cx).unwrap()), ["10.0.0.1"]);
        assert_eq!(
            ips(&apply(slice_v1("pool"), &cx).unwrap()),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert_eq!(
            ips(&apply(slice_v1("zone"), &cx).unwrap()),
            ["10.0.0.1", "10.0.0.2"]
        );
        // No annotation: untouched.
        assert_eq!(apply(slice_v1("plain"), &cx), Some(slice_v1("plain")));
        assert_eq!(
            ips(&apply(slice_v1beta1("host"), &cx).unwrap()),
            ["10.0.0.1"]
        );
        // A list item carries no apiVersion: the request's tells.
        let mut item = slice_v1beta1("host");
        item.as_object_mut().unwrap().remove("apiVersion");
        let cx = cx.for_resource("discovery.k8s.io/v1beta1", "endpointslices");
        assert_eq!(ips(&apply(item, &cx).unwrap()), ["10.0.0.1"]);
    }

    #[test]
    fn node_without_pool_falls_back_to_itself_and_empty_slices_stay() {
        let config = FilterConfig::new("lonely");
        let view = view_with(&[("pool", "openyurt.io/nodepool")]);
        let cx = FilterContext::new(&config, &view);
        let out = apply(slice_v1("pool"), &cx).unwrap();
        assert_eq!(out["endpoints"], json!([]));
        assert_eq!(out["ports"][0]["port"], 80);
    }

    #[test]
    fn core_endpoints_are_filtered() {
        let config = FilterConfig::new("edge-1");
        let view = view_with(&[("pool", "openyurt.io/nodepool")]);
        let cx = FilterContext::new(&config, &view);
        let out = apply(endpoints("pool"), &cx).unwrap();
        assert_eq!(
            out["subsets"],
            json!([{"addresses": [{"ip": "10.0.0.1", "nodeName": "edge-1"}],
                    "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "edge-2"}],
                    "ports": [{"port": 80}]}])
        );
        assert_eq!(apply(endpoints("x"), &cx), Some(endpoints("x")));
        // A list item carries no kind: the request's resource tells.
        let mut item = endpoints("pool");
        item.as_object_mut().unwrap().remove("kind");
        let cx = cx.for_resource("v1", "endpoints");
        assert_eq!(apply(item, &cx).unwrap()["subsets"], out["subsets"]);
    }
}
