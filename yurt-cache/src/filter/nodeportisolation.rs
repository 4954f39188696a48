//! `nodeportisolation` (kube-proxy; services list/watch): a NodePort or LoadBalancer Service
//! annotated `nodeport.openyurt.io/listen` (comma-separated pool names, `-<pool>` excludes one,
//! `*` means every pool) is kept only if this node's pool is enabled by it. A node without a
//! pool, and Services without the annotation, are left alone.

use serde_json::Value;
use yurt_core::wellknown;

use super::FilterContext;

/// Drops the node-port Services not enabled for this node's pool.
pub(crate) fn apply(svc: Value, cx: &FilterContext<'_>) -> Option<Value> {
    let ty = &svc["spec"]["type"];
    if ty != "NodePort" && ty != "LoadBalancer" {
        return Some(svc);
    }
    let Some(listen) =
        svc["metadata"]["annotations"][wellknown::service::NODEPORT_LISTEN_ANNOTATION].as_str()
    else {
        return Some(svc);
    };
    let Some(pool) = cx.view.pool_of(cx.config) else {
        return Some(svc);
    };
    let mut enabled = false;
    let mut wildcard = false;
    for item in listen.split(',').map(str::trim) {
        if item == pool {
            enabled = true;
        } else if item.strip_prefix('-') == Some(pool) {
            return None;
        } else if item == "*" {
            wildcard = true;
        }
    }
    (enabled || wildcard).then_some(svc)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;
    use crate::filter::FilterConfig;
    use serde_json::json;

    fn svc(ty: &str, listen: Option<&str>) -> Value {
        let mut s = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "np", "namespace": "d"},
            "spec": {"type": ty, "ports": [{"port": 80, "nodePort": 30080}]}});
        if let Some(l) = listen {
            s["metadata"]["annotations"] = json!({"nodeport.openyurt.io/listen": l});
        }
        s
    }

    #[test]
    fn keeps_services_enabled_for_the_pool() {
        let (config, view) = cx(); // edge-1 in pool hangzhou
        let cx = FilterContext::new(&config, &view);
        assert!(apply(svc("NodePort", Some("hangzhou")), &cx).is_some());
        assert!(apply(svc("NodePort", Some("beijing, hangzhou")), &cx).is_some());
        assert!(apply(svc("NodePort", Some("beijing")), &cx).is_none());
        assert!(apply(svc("LoadBalancer", Some("*")), &cx).is_some());
        assert!(apply(svc("NodePort", Some("*,-hangzhou")), &cx).is_none());
        assert!(apply(svc("NodePort", Some("-beijing")), &cx).is_none());
        assert!(apply(svc("NodePort", None), &cx).is_some());
        assert!(apply(svc("ClusterIP", Some("beijing")), &cx).is_some());
        // No pool: unchanged.
        let lone = FilterConfig::new("lonely");
        let cx = FilterContext::new(&lone, &view);
        assert!(apply(svc("NodePort", Some("beijing")), &cx).is_some());
    }
}
