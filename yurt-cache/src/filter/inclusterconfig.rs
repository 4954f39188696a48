//! `inclusterconfig` (kubelet; configmaps get/list/watch): in ConfigMap `kube-system/kube-proxy`,
//! key `config.conf`, comments out the `kubeconfig:` line so kube-proxy falls back to its
//! in-cluster config (which `masterservice` points at the hub).

use serde_json::{Value, json};

use super::FilterContext;

/// Comments out kube-proxy's `kubeconfig:` setting.
pub(crate) fn apply(mut cm: Value, _cx: &FilterContext<'_>) -> Option<Value> {
    let m = &cm["metadata"];
    if m["namespace"] != "kube-system" || m["name"] != "kube-proxy" {
        return Some(cm);
    }
    let Some(conf) = cm["data"]["config.conf"].as_str() else {
        return Some(cm);
    };
    if !conf.lines().any(is_kubeconfig_line) {
        return Some(cm);
    }
    let mut out: String = conf
        .lines()
        .map(|l| {
            if is_kubeconfig_line(l) {
                let indent = l.len() - l.trim_start().len();
                format!("{}#{}", &l[..indent], &l[indent..])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if conf.ends_with('\n') {
        out.push('\n');
    }
    cm["data"]["config.conf"] = json!(out);
    Some(cm)
}

fn is_kubeconfig_line(line: &str) -> bool {
    line.trim_start().starts_with("kubeconfig:")
}

#[cfg(test)]
mod tests {
    use super::super::tests::cx;
    use super::*;

    #[test]
    fn comments_out_kubeconfig() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nclientConnection:\n  acceptContentTypes: \"\"\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n  qps: 5\nmode: iptables\n",
                     "kubeconfig.conf": "kubeconfig: x"}});
        let (config, view) = cx();
        let out = apply(cm.clone(), &FilterContext::new(&config, &view)).unwrap();
        assert_eq!(
            out["data"]["config.conf"],
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nclientConnection:\n  acceptContentTypes: \"\"\n  #kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n  qps: 5\nmode: iptables\n"
        );
        assert_eq!(out["data"]["kubeconfig.conf"], "kubeconfig: x");
        let mut other = cm;
        other["metadata"]["name"] = json!("coredns");
        assert_eq!(
            apply(other.clone(), &FilterContext::new(&config, &view)),
            Some(other)
        );
    }
}
