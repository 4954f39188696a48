//! What the filters know: the node's fixed settings ([`FilterConfig`]) and the cluster state they
//! follow ([`ClusterView`]: pool memberships and Services' topology annotations).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use yurt_core::wellknown;

/// The node's fixed filter settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's pool when configured (`--nodepool-name`); otherwise the pool whose members
    /// include the node.
    pub nodepool_name: Option<String>,
    /// The address clients should use to reach the hub (upstream: the dummy interface's
    /// `169.254.2.1`, or the proxy host).
    pub hub_host: String,
    /// The hub's secure port (upstream 10268).
    pub hub_port: u16,
}

impl FilterConfig {
    /// Settings for `node_name` with the upstream defaults: hub at `169.254.2.1:10268`, pool
    /// from membership.
    pub fn new(node_name: &str) -> Self {
        FilterConfig {
            node_name: node_name.to_owned(),
            nodepool_name: None,
            hub_host: wellknown::hub::DUMMY_IF_IP.to_owned(),
            hub_port: wellknown::hub::PROXY_SECURE_PORT,
        }
    }

    /// Sets [`FilterConfig::nodepool_name`] (empty: none).
    pub fn nodepool_name(mut self, pool: Option<&str>) -> Self {
        self.nodepool_name = pool.filter(|p| !p.is_empty()).map(str::to_owned);
        self
    }

    /// Sets [`FilterConfig::hub_host`] and [`FilterConfig::hub_port`].
    pub fn hub(mut self, host: &str, port: u16) -> Self {
        self.hub_host = host.to_owned();
        self.hub_port = port;
        self
    }
}

/// One source of pool membership: a NodePool (pool = its name) or a NodeBucket (pool = its
/// `openyurt.io/pool-name` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) pool: String,
    pub(crate) nodes: BTreeSet<String>,
}

/// The cluster state the filters follow, published on a watch channel by
/// [`ViewWatcher`](super::ViewWatcher) (or by hand). Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Membership sources by object name.
    pub(crate) groups: HashMap<String, Group>,
    /// `openyurt.io/topologyKeys` of the Services that have it, by (namespace, name).
    pub(crate) topology: HashMap<(String, String), String>,
}

impl ClusterView {
    /// An empty view.
    pub fn new() -> Self {
        ClusterView::default()
    }

    /// Records a NodePool object (its `status.nodes`); `false` if nothing changed.
    pub fn set_nodepool(&mut self, pool: &Value) -> bool {
        let name = pool["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let nodes = strings(&pool["status"]["nodes"]);
        self.set_group(name.clone(), Group { pool: name, nodes })
    }

    /// Records a NodeBucket object (its top-level `nodes[].name`, pool from its label).
    pub fn set_nodebucket(&mut self, bucket: &Value) -> bool {
        let name = bucket["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let pool = bucket["metadata"]["labels"][wellknown::pool::POOL_NAME_LABEL]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let nodes = bucket["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect();
        self.set_group(name, Group { pool, nodes })
    }

    fn set_group(&mut self, name: String, group: Group) -> bool {
        if self.groups.get(&name) == Some(&group) {
            return false;
        }
        self.groups.insert(name, group);
        true
    }

    /// Forgets a NodePool or NodeBucket by name; `false` if it was unknown.
    pub fn remove_group(&mut self, name: &str) -> bool {
        self.groups.remove(name).is_some()
    }

    /// Records a Service's topology annotation; `false` if nothing changed.
    pub fn set_service(&mut self, service: &Value) -> bool {
        let key = ns_name(service);
        let keys = service["metadata"]["annotations"][wellknown::service::TOPOLOGY_KEYS_ANNOTATION]
            .as_str()
            .map(str::to_owned);
        match keys {
            Some(k) => {
                if self.topology.get(&key) == Some(&k) {
                    return false;
                }
                self.topology.insert(key, k);
                true
            }
            None => self.topology.remove(&key).is_some(),
        }
    }

    /// Forgets a Service; `false` if it had no annotation recorded.
    pub fn remove_service(&mut self, service: &Value) -> bool {
        self.topology.remove(&ns_name(service)).is_some()
    }

    /// The topology annotation of Service `ns/name`.
    pub fn topology_keys(&self, ns: &str, name: &str) -> Option<&str> {
        self.topology
            .get(&(ns.to_owned(), name.to_owned()))
            .map(String::as_str)
    }

    /// The pool of `config`'s node: the configured one, else one whose members include it.
    pub fn pool_of<'a>(&'a self, config: &'a FilterConfig) -> Option<&'a str> {
        if let Some(p) = &config.nodepool_name {
            return Some(p);
        }
        let mut pools: Vec<&str> = self
            .groups
            .values()
            .filter(|g| !g.pool.is_empty() && g.nodes.contains(&config.node_name))
            .map(|g| g.pool.as_str())
            .collect();
        pools.sort_unstable();
        pools.first().copied()
    }

    /// The members of `pool` (union of its NodePool and NodeBuckets).
    pub fn pool_members(&self, pool: &str) -> BTreeSet<&str> {
        self.groups
            .values()
            .filter(|g| g.pool == pool)
            .flat_map(|g| g.nodes.iter().map(String::as_str))
            .collect()
    }
}

/// `(namespace, name)` of an object.
pub(crate) fn ns_name(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_owned(),
        m["name"].as_str().unwrap_or("").to_owned(),
    )
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pools_from_nodepools_and_buckets() {
        let mut v = ClusterView::new();
        assert!(
            v.set_nodepool(&json!({"metadata": {"name": "hz"}, "status": {"nodes": ["a", "b"]}}))
        );
        assert!(
            !v.set_nodepool(&json!({"metadata": {"name": "hz"}, "status": {"nodes": ["b", "a"]}}))
        );
        assert!(v.set_nodebucket(&json!({
            "metadata": {"name": "bj-x1", "labels": {"openyurt.io/pool-name": "bj"}},
            "numNodes": 1, "nodes": [{"name": "c"}],
        })));
        let cfg = FilterConfig::new("c");
        assert_eq!(v.pool_of(&cfg), Some("bj"));
        assert_eq!(v.pool_members("hz"), ["a", "b"].into_iter().collect());
        assert_eq!(v.pool_of(&FilterConfig::new("z")), None);
        assert_eq!(
            v.pool_of(&FilterConfig::new("z").nodepool_name(Some("hz"))),
            Some("hz")
        );
        assert!(v.remove_group("bj-x1"));
        assert_eq!(v.pool_of(&cfg), None);
    }

    #[test]
    fn services_keep_only_the_annotation() {
        let mut v = ClusterView::new();
        let svc = json!({"metadata": {"namespace": "d", "name": "web",
            "annotations": {"openyurt.io/topologyKeys": "openyurt.io/nodepool"}}});
        assert!(v.set_service(&svc));
        assert!(!v.set_service(&svc));
        assert_eq!(v.topology_keys("d", "web"), Some("openyurt.io/nodepool"));
        assert!(v.set_service(&json!({"metadata": {"namespace": "d", "name": "web"}})));
        assert!(!v.set_service(&json!({"metadata": {"namespace": "d", "name": "other"}})));
        assert_eq!(v.topology_keys("d", "web"), None);
    }
}
