//! Which components the hub caches: upstream YurtHub's "cache agents".
//!
//! By default the hub caches kubelet, kube-proxy, flanneld, coredns, raven-agent-ds,
//! yurttunnel-agent, yurthub and its own multiplexer (`multiplexer-proxy-<node>`). Operators add
//! more with key `cache_agents` of ConfigMap `kube-system/yurt-hub-cfg`: a comma-separated list
//! of components, `*` for every component, and (beyond upstream, OpenYurt #1351) `-name` to
//! exclude one, e.g. `*,-go-http-client`. The defaults are always kept unless excluded by name.
//! Matching is on the [`Component`] (the `User-Agent` lower-cased and cut at `/`). A request
//! without a `User-Agent` (the empty component) is never cached.

use std::collections::BTreeSet;

use yurt_core::Component;
use yurt_core::wellknown::hub::{DEFAULT_CACHE_AGENTS, MULTIPLEXER_AGENT_PREFIX};

/// The set of cached components, built from the defaults and the `cache_agents` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheAgents {
    all: bool,
    included: BTreeSet<String>,
    excluded: BTreeSet<String>,
}

impl CacheAgents {
    /// The defaults for `node_name` (the built-in agents plus `multiplexer-proxy-<node>`).
    pub fn defaults(node_name: &str) -> Self {
        Self::from_setting(None, node_name)
    }

    /// The defaults plus what the `cache_agents` value says (`None`: the key is absent).
    /// Entries are trimmed and lower-cased; empty entries are ignored.
    pub fn from_setting(value: Option<&str>, node_name: &str) -> Self {
        let mut included: BTreeSet<String> = DEFAULT_CACHE_AGENTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        included.insert(format!("{MULTIPLEXER_AGENT_PREFIX}{node_name}").to_lowercase());
        let mut all = false;
        let mut excluded = BTreeSet::new();
        for entry in value.unwrap_or("").split(',') {
            let entry = entry.trim().to_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                all = true;
            } else if let Some(name) = entry.strip_prefix('-') {
                let name = name.trim();
                if !name.is_empty() {
                    excluded.insert(name.to_owned());
                }
            } else {
                included.insert(entry);
            }
        }
        Self {
            all,
            included,
            excluded,
        }
    }

    /// Whether responses to `component` are cached.
    pub fn is_cached(&self, component: &Component) -> bool {
        let name = component.as_str();
        !name.is_empty()
            && !self.excluded.contains(name)
            && (self.all || self.included.contains(name))
    }

    /// True when `*` is set.
    pub fn caches_all(&self) -> bool {
        self.all
    }

    /// The explicitly cached components (defaults and additions, before exclusions).
    pub fn included(&self) -> impl Iterator<Item = &str> {
        self.included.iter().map(String::as_str)
    }

    /// The excluded components.
    pub fn excluded(&self) -> impl Iterator<Item = &str> {
        self.excluded.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(agents: &CacheAgents, ua: &str) -> bool {
        agents.is_cached(&Component::from_user_agent(Some(ua)))
    }

    #[test]
    fn defaults_cover_node_agents_and_the_multiplexer() {
        let a = CacheAgents::defaults("Edge-1");
        for ua in [
            "kubelet/v1.36.0 (linux/amd64)",
            "kube-proxy/v1.36.0",
            "flanneld/0.26",
            "coredns/1.11",
            "raven-agent-ds/0.4",
            "yurttunnel-agent/1.0",
            "yurthub/v1.6",
            "multiplexer-proxy-edge-1",
        ] {
            assert!(cached(&a, ua), "{ua}");
        }
        assert!(!cached(&a, "kubectl/v1.36.0"));
        assert!(!cached(&a, "Go-http-client/2.0"));
        assert!(!a.is_cached(&Component::from_user_agent(None)));
    }

    #[test]
    fn setting_adds_trims_and_lowercases() {
        let a = CacheAgents::from_setting(Some(" Calico-Node , go-http-client,,"), "n");
        assert!(cached(&a, "calico-node/3.28"));
        assert!(cached(&a, "Go-http-client/2.0"));
        assert!(cached(&a, "kubelet/v1"));
        assert!(!cached(&a, "kubectl/v1"));
    }

    #[test]
    fn star_caches_everything_but_exclusions() {
        let a = CacheAgents::from_setting(Some("*, -go-http-client, -kube-proxy"), "n");
        assert!(a.caches_all());
        assert!(cached(&a, "kubectl/v1"));
        assert!(cached(&a, "kubelet/v1"));
        assert!(!cached(&a, "Go-http-client/2.0"));
        assert!(!cached(&a, "kube-proxy/v1"), "exclusion beats a default");
        assert!(!a.is_cached(&Component::from_user_agent(Some(""))));
    }
}
