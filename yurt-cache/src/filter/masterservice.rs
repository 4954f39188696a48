//! `masterservice` (kubelet; services list/watch): Service `default/kubernetes` gets the hub's
//! host as its cluster IP(s) and the hub's port on its `https` port, so pods' in-cluster
//! `KUBERNETES_SERVICE_HOST`/`PORT` lead to the hub.

use serde_json::{Value, json};

use super::FilterContext;

/// Rewrites Service `default/kubernetes`; every other object passes unchanged.
pub(crate) fn apply(mut svc: Value, cx: &FilterContext<'_>) -> Option<Value> {
    let m = &svc["metadata"];
    if m["namespace"] != "default" || m["name"] != "kubernetes" {
        return Some(svc);
    }
    let host = cx.config.hub_host.as_str();
    if let Some(spec) = svc.get_mut("spec").filter(|s| s.is_object()) {
        spec["clusterIP"] = json!(host);
        spec["clusterIPs"] = json!([host]);
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter(|p| p["name"] == "https") {
                p["port"] = json!(cx.config.hub_port);
            }
        }
    }
    Some(svc)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;

    #[test]
    fn rewrites_the_kubernetes_service_only() {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "resourceVersion": "9"},
            "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "type": "ClusterIP",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443},
                          {"name": "other", "port": 80}]},
        });
        let (config, view) = cx();
        let out = apply(svc.clone(), &FilterContext::new(&config, &view)).unwrap();
        assert_eq!(out["spec"]["clusterIP"], "169.254.2.1");
        assert_eq!(out["spec"]["clusterIPs"], json!(["169.254.2.1"]));
        assert_eq!(out["spec"]["ports"][0]["port"], 10268);
        assert_eq!(out["spec"]["ports"][0]["targetPort"], 6443);
        assert_eq!(out["spec"]["ports"][1]["port"], 80);
        let mut other = svc;
        other["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(
            apply(other.clone(), &FilterContext::new(&config, &view)),
            Some(other)
        );
    }
}
