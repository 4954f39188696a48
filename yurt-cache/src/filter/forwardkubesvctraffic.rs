//! `forwardkubesvctraffic` (kube-proxy; endpointslices list/watch): EndpointSlice
//! `default/kubernetes` (of the same address family as the hub's host) gets one ready endpoint,
//! the hub's host, and the hub's port on its `https` port, so Service traffic to the apiserver
//! goes through the hub.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::FilterContext;

/// Rewrites the `kubernetes` EndpointSlice.
pub(crate) fn apply(mut slice: Value, cx: &FilterContext<'_>) -> Option<Value> {
    let m = &slice["metadata"];
    let is_kubernetes = m["namespace"] == "default"
        && m["labels"]["kubernetes.io/service-name"] == "kubernetes"
        && m["name"] == "kubernetes";
    if !is_kubernetes {
        return Some(slice);
    }
    let family = match cx.config.hub_host.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "IPv4",
        Ok(IpAddr::V6(_)) => "IPv6",
        Err(_) => return Some(slice),
    };
    if slice["addressType"] != family {
        return Some(slice);
    }
    slice["endpoints"] = json!([{
        "addresses": [cx.config.hub_host],
        "conditions": {"ready": true},
    }]);
    if let Some(ports) = slice.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter(|p| p["name"] == "https") {
            p["port"] = json!(cx.config.hub_port);
        }
    }
    Some(slice)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;

    fn slice(family: &str) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": family,
            "endpoints": [{"addresses": ["172.16.0.10"], "conditions": {"ready": true}},
                          {"addresses": ["172.16.0.11"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]})
    }

    #[test]
    fn points_the_kubernetes_slice_at_the_hub() {
        let (config, view) = cx();
        let cx = FilterContext::new(&config, &view);
        let out = apply(slice("IPv4"), &cx).unwrap();
        assert_eq!(
            out["endpoints"],
            json!([{"addresses": ["169.254.2.1"], "conditions": {"ready": true}}])
        );
        assert_eq!(out["ports"][0]["port"], 10268);
        // Another family, another slice: unchanged.
        assert_eq!(apply(slice("IPv6"), &cx), Some(slice("IPv6")));
        let mut other = slice("IPv4");
        other["metadata"]["name"] = json!("kubernetes-x");
        assert_eq!(apply(other.clone(), &cx), Some(other));
    }
}
