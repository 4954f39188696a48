//! `serviceenvupdater` (kubelet; pods get/list/watch/patch): in every container (and init
//! container), an existing `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` env var gets the
//! hub's host / port. Absent variables are not added.

use serde_json::{Value, json};

use super::FilterContext;

/// Rewrites the pod's existing service env vars.
pub(crate) fn apply(mut pod: Value, cx: &FilterContext<'_>) -> Option<Value> {
    let port = cx.config.hub_port.to_string();
    for key in ["containers", "initContainers"] {
        let Some(containers) = pod
            .get_mut("spec")
            .and_then(|s| s.get_mut(key))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) else {
                continue;
            };
            for e in env {
                if e["name"] == "KUBERNETES_SERVICE_HOST" {
                    e["value"] = json!(cx.config.hub_host);
                } else if e["name"] == "KUBERNETES_SERVICE_PORT" {
                    e["value"] = json!(port);
                }
            }
        }
    }
    Some(pod)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;

    #[test]
    fn overwrites_existing_vars_only() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"nodeName": "edge-1", "containers": [
                {"name": "a", "image": "x", "env": [
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": "443"},
                    {"name": "OTHER", "value": "1"}]},
                {"name": "b", "image": "y"},
                {"name": "c", "image": "z", "env": [{"name": "KUBERNETES_SERVICE_PORT", "value": "443"}]}]}});
        let (config, view) = cx();
        let out = apply(pod, &FilterContext::new(&config, &view)).unwrap();
        let c = &out["spec"]["containers"];
        assert_eq!(c[0]["env"][0]["value"], "169.254.2.1");
        assert_eq!(c[0]["env"][1]["value"], "10268");
        assert_eq!(c[0]["env"][2]["value"], "1");
        assert!(c[1].get("env").is_none());
        assert_eq!(c[2]["env"].as_array().unwrap().len(), 1);
        assert_eq!(c[2]["env"][0]["value"], "10268");
    }
}
