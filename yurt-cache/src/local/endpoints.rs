//! Stale endpoints after an offline reboot (upstream #2809, #2810): endpoints served locally
//! follow the addresses and readiness of this node's pods as kubelet last reported them here.
//!
//! After a reboot without the cloud, kubelet restarts the node's pods, they get new IPs, and
//! kubelet patches their status through the hub, which applies the patches to its cached pods.
//! The EndpointSlices and Endpoints that kube-proxy and coredns get from the cache were
//! recorded before the reboot and still name the old IPs, so Services on the node would point
//! at nothing until the cloud comes back. While serving locally, the hub therefore rewrites
//! every endpoint it sends (get, list, watch; any component):
//!
//! **Covered**
//! - `discovery.k8s.io/v1` and `v1beta1` EndpointSlices: an endpoint whose `targetRef` is a
//!   Pod that kubelet's cache holds for this node gets that pod's current IPs of the slice's
//!   address family (`IPv4`/`IPv6`) as `addresses`, and `conditions.ready` / `serving` from
//!   the pod's `Ready` condition.
//! - core `v1` Endpoints: the same for `subsets[].addresses[]` and `notReadyAddresses[]`
//!   (`ip` replaced; the address moves between the two lists when the pod's readiness says so).
//! - Open offline watches of those resources get a MODIFIED event for every endpoint object
//!   that refers to a pod whose addresses or readiness changed by an offline write, and a
//!   watch that starts offline first gets every object the node's pods rewrite (its client may
//!   hold a copy from before). These re-sent events carry the watch's current resourceVersion
//!   (a real one, not older than the object's), so a consumer that ignores events older than
//!   what it holds, such as the multiplexer's watch cache, takes them: kube-proxy behind the
//!   multiplexer sees the new addresses too.
//!
//! **Not covered** (the hub cannot know)
//! - pods of other nodes: their addresses stay as last cached;
//! - pods created offline that no endpoint refers to yet (membership is computed by the cloud's
//!   endpoint controllers from Service selectors; the hub does not re-run them);
//! - endpoints without a `targetRef`, FQDN slices, and pods kubelet no longer reports (they
//!   keep their last addresses);
//! - the cached objects themselves: the rewrite happens on the way out; the store keeps what
//!   the apiserver sent, and after reconnect clients re-list the cloud's truth.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::store::{Gvr, ListScope, Snapshot, StoreError};

/// What kubelet's cache says about this node's pods: (namespace, name) -> addresses/readiness.
#[derive(Debug, Default, Clone)]
pub struct PodView {
    pods: HashMap<(String, String), PodState>,
}

/// One pod's addresses and readiness.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodState {
    /// `status.podIPs` (or `status.podIP`).
    pub ips: Vec<String>,
    /// The `Ready` condition, when reported.
    pub ready: Option<bool>,
}

impl PodView {
    /// A view of explicit pods (tests, tools).
    pub fn from_pods(pods: impl IntoIterator<Item = ((String, String), PodState)>) -> Self {
        PodView {
            pods: pods.into_iter().collect(),
        }
    }

    /// Whether no pod is known.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    fn get(&self, ns: &str, name: &str) -> Option<&PodState> {
        self.pods.get(&(ns.to_owned(), name.to_owned()))
    }
}

/// Whether endpoints of this resource type are rewritten.
pub fn applies_to(gvr: &Gvr) -> bool {
    (gvr.group == "discovery.k8s.io" && gvr.resource == "endpointslices")
        || (gvr.group.is_empty() && gvr.resource == "endpoints")
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodHead {
    metadata: PodMeta,
    spec: PodSpec,
    status: PodStatus,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct PodMeta {
    name: String,
    namespace: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    node_name: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    #[serde(rename = "podIP")]
    pod_ip: String,
    #[serde(rename = "podIPs")]
    pod_ips: Vec<PodIp>,
    conditions: Vec<Condition>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct PodIp {
    ip: String,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct Condition {
    r#type: String,
    status: String,
}

/// The state of one pod's JSON, with its namespace and name; `None` if it is not a pod of
/// `node`.
pub fn pod_state(json: &[u8], node: &str) -> Option<((String, String), PodState)> {
    let p: PodHead = serde_json::from_slice(json).ok()?;
    if p.spec.node_name != node || p.metadata.name.is_empty() {
        return None;
    }
    let mut ips: Vec<String> = p.status.pod_ips.into_iter().map(|i| i.ip).collect();
    if ips.is_empty() && !p.status.pod_ip.is_empty() {
        ips.push(p.status.pod_ip);
    }
    let ready = p
        .status
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
        .map(|c| c.status == "True");
    Some((
        (p.metadata.namespace, p.metadata.name),
        PodState { ips, ready },
    ))
}

/// The namespace and name of an object's JSON.
pub fn pod_key(json: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct H {
        metadata: PodMeta,
    }
    let h: H = serde_json::from_slice(json).ok()?;
    (!h.metadata.name.is_empty()).then_some((h.metadata.namespace, h.metadata.name))
}

/// Reads kubelet's cached pods of `node`.
pub fn load_pods(snap: &Snapshot, node: &str) -> Result<PodView, StoreError> {
    let scope = ListScope::parse("kubelet", &Gvr::new("", "v1", "pods"), "", "", "")?;
    let mut pods = HashMap::new();
    snap.scan(&scope, |_, json| {
        if let Some((k, s)) = pod_state(json, node) {
            pods.insert(k, s);
        }
        true
    })?;
    Ok(PodView { pods })
}

/// Whether an endpoint object (of [`applies_to`] type) refers to the pod `ns/name`.
pub fn refers_to(json: &[u8], ns: &str, name: &str) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return false;
    };
    let own_ns = v["metadata"]["namespace"].as_str().unwrap_or("");
    let hit = |r: &Value| {
        r["kind"] == "Pod" && r["name"] == name && r["namespace"].as_str().unwrap_or(own_ns) == ns
    };
    if let Some(eps) = v["endpoints"].as_array() {
        return eps.iter().any(|e| hit(&e["targetRef"]));
    }
    v["subsets"].as_array().is_some_and(|subsets| {
        subsets.iter().any(|s| {
            ["addresses", "notReadyAddresses"].iter().any(|k| {
                s[*k]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| hit(&a["targetRef"])))
            })
        })
    })
}

/// The object rewritten from `pods`, or `None` when nothing changes.
pub fn rewrite(gvr: &Gvr, json: &[u8], pods: &PodView) -> Option<Vec<u8>> {
    if pods.is_empty() || !applies_to(gvr) {
        return None;
    }
    let mut v: Value = serde_json::from_slice(json).ok()?;
    let changed = if gvr.resource == "endpointslices" {
        rewrite_slice(&mut v, pods)
    } else {
        rewrite_endpoints(&mut v, pods)
    };
    changed.then(|| serde_json::to_vec(&v).ok()).flatten()
}

fn family_matches(ip: &str, ipv6: bool) -> bool {
    ip.contains(':') == ipv6
}

fn target<'a>(r: &Value, own_ns: &str, pods: &'a PodView) -> Option<&'a PodState> {
    if r["kind"] != "Pod" {
        return None;
    }
    let name = r["name"].as_str()?;
    let ns = r["namespace"].as_str().unwrap_or(own_ns);
    pods.get(ns, name)
}

fn rewrite_slice(v: &mut Value, pods: &PodView) -> bool {
    let ipv6 = match v["addressType"].as_str() {
        Some("IPv4") => false,
        Some("IPv6") => true,
        _ => return false,
    };
    let own_ns = v["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
    let mut changed = false;
    let Some(eps) = v.get_mut("endpoints").and_then(Value::as_array_mut) else {
        return false;
    };
    for ep in eps {
        let Some(pod) = target(&ep["targetRef"], &own_ns, pods) else {
            continue;
        };
        let ips: Vec<Value> = pod
            .ips
            .iter()
            .filter(|ip| family_matches(ip, ipv6))
            .map(|ip| Value::String(ip.clone()))
            .collect();
        if !ips.is_empty() && ep["addresses"].as_array() != Some(&ips) {
            ep["addresses"] = Value::Array(ips);
            changed = true;
        }
        if let Some(ready) = pod.ready {
            if !ep["conditions"].is_object() {
                ep["conditions"] = Value::Object(Default::default());
            }
            for k in ["ready", "serving"] {
                if ep["conditions"][k].as_bool() != Some(ready) {
                    ep["conditions"][k] = Value::Bool(ready);
                    changed = true;
                }
            }
        }
    }
    changed
}

fn rewrite_endpoints(v: &mut Value, pods: &PodView) -> bool {
    let own_ns = v["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
    let mut changed = false;
    let Some(subsets) = v.get_mut("subsets").and_then(Value::as_array_mut) else {
        return false;
    };
    for subset in subsets {
        let mut ready_list = Vec::new();
        let mut not_ready_list = Vec::new();
        for (list, was_ready) in [("addresses", true), ("notReadyAddresses", false)] {
            let Some(addrs) = subset.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for mut a in std::mem::take(addrs) {
                let mut ready = was_ready;
                if let Some(pod) = target(&a["targetRef"], &own_ns, pods) {
                    let old = a["ip"].as_str().unwrap_or("").to_owned();
                    let ipv6 = old.contains(':');
                    if let Some(ip) = pod.ips.iter().find(|ip| family_matches(ip, ipv6))
                        && *ip != old
                    {
                        a["ip"] = Value::String(ip.clone());
                        changed = true;
                    }
                    if let Some(r) = pod.ready
                        && r != was_ready
                    {
                        ready = r;
                        changed = true;
                    }
                }
                if ready {
                    ready_list.push(a);
                } else {
                    not_ready_list.push(a);
                }
            }
        }
        for (list, items) in [
            ("addresses", ready_list),
            ("notReadyAddresses", not_ready_list),
        ] {
            if items.is_empty() {
                if let Some(o) = subset.as_object_mut() {
                    o.remove(list);
                }
            } else {
                subset[list] = Value::Array(items);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> PodView {
        PodView::from_pods([(
            ("web".to_owned(), "web-1".to_owned()),
            PodState {
                ips: vec!["10.1.0.9".into(), "fd00::9".into()],
                ready: Some(true),
            },
        )])
    }

    #[test]
    fn pod_state_reads_ips_and_readiness() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "web"},
            "spec": {"nodeName": "edge-1"},
            "status": {"podIP": "10.1.0.9", "podIPs": [{"ip": "10.1.0.9"}, {"ip": "fd00::9"}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        let bytes = serde_json::to_vec(&pod).unwrap();
        let (k, s) = pod_state(&bytes, "edge-1").unwrap();
        assert_eq!(k, ("web".into(), "web-1".into()));
        assert_eq!(s.ips, vec!["10.1.0.9", "fd00::9"]);
        assert_eq!(s.ready, Some(true));
        assert!(pod_state(&bytes, "edge-2").is_none());
    }

    #[test]
    fn slice_addresses_follow_the_pod() {
        let slice = json!({
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "web-abc", "namespace": "web"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "web"}, "nodeName": "edge-1"},
                {"addresses": ["10.2.0.7"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "web"}, "nodeName": "edge-2"},
            ],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        });
        let gvr = Gvr::new("discovery.k8s.io", "v1", "endpointslices");
        let out = rewrite(&gvr, &serde_json::to_vec(&slice).unwrap(), &view()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["endpoints"][0]["addresses"], json!(["10.1.0.9"]));
        assert_eq!(v["endpoints"][0]["conditions"]["ready"], json!(true));
        assert_eq!(v["endpoints"][0]["conditions"]["serving"], json!(true));
        // The other node's pod is untouched.
        assert_eq!(v["endpoints"][1], slice["endpoints"][1]);
        // Idempotent: the rewritten slice needs no further change.
        assert!(rewrite(&gvr, &out, &view()).is_none());
        assert!(refers_to(&out, "web", "web-1"));
        assert!(!refers_to(&out, "web", "web-3"));
    }

    #[test]
    fn ipv6_slices_take_ipv6_addresses() {
        let slice = json!({
            "metadata": {"name": "s", "namespace": "web"}, "addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00::1"], "targetRef": {"kind": "Pod", "name": "web-1"}}],
        });
        let gvr = Gvr::new("discovery.k8s.io", "v1", "endpointslices");
        let v: Value = serde_json::from_slice(
            &rewrite(&gvr, &serde_json::to_vec(&slice).unwrap(), &view()).unwrap(),
        )
        .unwrap();
        assert_eq!(v["endpoints"][0]["addresses"], json!(["fd00::9"]));
    }

    #[test]
    fn core_endpoints_move_between_lists() {
        let eps = json!({
            "kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "web"},
            "subsets": [{
                "notReadyAddresses": [{"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "web"}}],
                "addresses": [{"ip": "10.2.0.7", "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "web"}}],
                "ports": [{"port": 80}],
            }],
        });
        let gvr = Gvr::new("", "v1", "endpoints");
        let v: Value = serde_json::from_slice(
            &rewrite(&gvr, &serde_json::to_vec(&eps).unwrap(), &view()).unwrap(),
        )
        .unwrap();
        let ips: Vec<&str> = v["subsets"][0]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap())
            .collect();
        assert_eq!(ips, vec!["10.2.0.7", "10.1.0.9"]);
        assert!(v["subsets"][0].get("notReadyAddresses").is_none());
    }

    #[test]
    fn nothing_known_nothing_rewritten() {
        let gvr = Gvr::new("discovery.k8s.io", "v1", "endpointslices");
        assert!(rewrite(&gvr, b"{}", &PodView::default()).is_none());
        assert!(rewrite(&Gvr::new("", "v1", "services"), b"{}", &view()).is_none());
    }
}
