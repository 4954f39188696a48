//! Which filters apply to a request: the seven filter names, upstream's default
//! (component, verb, resource) table, the `yurt-hub-cfg` extra components, and the flags.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use yurt_core::Verb;

/// One response filter, in chain (registration) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterName {
    /// Keeps only the endpoints of this node or pool (by the Service's topology annotation).
    ServiceTopology,
    /// Points Service `default/kubernetes` at the hub.
    MasterService,
    /// Drops cloud-only LoadBalancer Services and the tunnel server's internal Service.
    DiscardCloudService,
    /// Makes kube-proxy use its in-cluster config (comments out `kubeconfig:`).
    InClusterConfig,
    /// Drops NodePort/LoadBalancer Services not enabled for this node's pool.
    NodePortIsolation,
    /// Points EndpointSlice `default/kubernetes` at the hub.
    ForwardKubeSvcTraffic,
    /// Points pods' `KUBERNETES_SERVICE_HOST`/`PORT` env vars at the hub.
    ServiceEnvUpdater,
}

impl FilterName {
    /// Every filter, in chain order.
    pub const ALL: [FilterName; 7] = [
        FilterName::ServiceTopology,
        FilterName::MasterService,
        FilterName::DiscardCloudService,
        FilterName::InClusterConfig,
        FilterName::NodePortIsolation,
        FilterName::ForwardKubeSvcTraffic,
        FilterName::ServiceEnvUpdater,
    ];

    /// The upstream name (also the `yurt-hub-cfg` key).
    pub fn as_str(self) -> &'static str {
        match self {
            FilterName::ServiceTopology => "servicetopology",
            FilterName::MasterService => "masterservice",
            FilterName::DiscardCloudService => "discardcloudservice",
            FilterName::InClusterConfig => "inclusterconfig",
            FilterName::NodePortIsolation => "nodeportisolation",
            FilterName::ForwardKubeSvcTraffic => "forwardkubesvctraffic",
            FilterName::ServiceEnvUpdater => "serviceenvupdater",
        }
    }

    /// Components that always get this filter.
    pub fn default_components(self) -> &'static [&'static str] {
        match self {
            FilterName::ServiceTopology => &["kube-proxy", "coredns", "nginx-ingress-controller"],
            FilterName::MasterService
            | FilterName::InClusterConfig
            | FilterName::ServiceEnvUpdater => &["kubelet"],
            FilterName::DiscardCloudService
            | FilterName::NodePortIsolation
            | FilterName::ForwardKubeSvcTraffic => &["kube-proxy"],
        }
    }

    /// Whether the filter handles `verb` on `resource` (upstream's table).
    pub fn handles(self, verb: &Verb, resource: &str) -> bool {
        let list_watch = matches!(verb, Verb::List | Verb::Watch);
        match self {
            FilterName::ServiceTopology => {
                list_watch && matches!(resource, "endpoints" | "endpointslices")
            }
            FilterName::MasterService
            | FilterName::DiscardCloudService
            | FilterName::NodePortIsolation => list_watch && resource == "services",
            FilterName::InClusterConfig => {
                (list_watch || *verb == Verb::Get) && resource == "configmaps"
            }
            FilterName::ForwardKubeSvcTraffic => list_watch && resource == "endpointslices",
            FilterName::ServiceEnvUpdater => {
                (list_watch || matches!(verb, Verb::Get | Verb::Patch)) && resource == "pods"
            }
        }
    }

    /// Whether the filter's answer depends on the cluster view (pools, Services), so that an
    /// open watch re-filters the objects it sent when the view changes.
    pub fn uses_view(self) -> bool {
        matches!(
            self,
            FilterName::ServiceTopology | FilterName::NodePortIsolation
        )
    }
}

impl fmt::Display for FilterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown filter name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource filter {0:?}")]
pub struct UnknownFilter(pub String);

impl FromStr for FilterName {
    type Err = UnknownFilter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FilterName::ALL
            .into_iter()
            .find(|f| f.as_str() == s.trim())
            .ok_or_else(|| UnknownFilter(s.to_owned()))
    }
}

/// Extra components per filter, from the `yurt-hub-cfg` keys named after the filters (value:
/// comma-separated components, added to the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraComponents(BTreeMap<FilterName, Vec<String>>);

impl ExtraComponents {
    /// Reads the filter keys of a ConfigMap's `data` (absent or not an object: none).
    pub fn from_configmap_data(data: &Value) -> Self {
        let mut map = BTreeMap::new();
        for f in FilterName::ALL {
            if let Some(v) = data[f.as_str()].as_str() {
                let comps: Vec<String> = v
                    .split(',')
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty())
                    .collect();
                if !comps.is_empty() {
                    map.insert(f, comps);
                }
            }
        }
        ExtraComponents(map)
    }

    /// Adds `components` to `filter` (for composing without a ConfigMap).
    pub fn with(mut self, filter: FilterName, components: &[&str]) -> Self {
        self.0
            .entry(filter)
            .or_default()
            .extend(components.iter().map(|c| c.to_lowercase()));
        self
    }

    /// The extra components of `filter`.
    pub fn get(&self, filter: FilterName) -> &[String] {
        self.0.get(&filter).map_or(&[], Vec::as_slice)
    }
}

/// The flags: `--enable-resource-filter` and `--disabled-resource-filters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSwitches {
    enabled: bool,
    disabled: Vec<FilterName>,
}

impl Default for FilterSwitches {
    fn default() -> Self {
        FilterSwitches {
            enabled: true,
            disabled: Vec::new(),
        }
    }
}

impl FilterSwitches {
    /// From the flags: `enabled` is `--enable-resource-filter`; `disabled` the names of
    /// `--disabled-resource-filters` (`*` alone disables all). Unknown names are an error.
    pub fn new<S: AsRef<str>>(enabled: bool, disabled: &[S]) -> Result<Self, UnknownFilter> {
        let mut switches = FilterSwitches {
            enabled,
            disabled: Vec::new(),
        };
        for name in disabled {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if name == "*" {
                switches.enabled = false;
                continue;
            }
            switches.disabled.push(name.parse()?);
        }
        Ok(switches)
    }

    /// Whether any filter may run (else the layer can be left out).
    pub fn any_enabled(&self) -> bool {
        FilterName::ALL.into_iter().any(|f| self.is_enabled(f))
    }

    /// Whether `filter` may run at all.
    pub fn is_enabled(&self, filter: FilterName) -> bool {
        self.enabled && !self.disabled.contains(&filter)
    }

    /// The chain for `component` doing `verb` on `resource`: the enabled filters whose table
    /// matches and whose components (defaults plus `extra`) include `component`, in order.
    pub fn chain(
        &self,
        component: &str,
        verb: &Verb,
        resource: &str,
        extra: &ExtraComponents,
    ) -> Vec<FilterName> {
        if !self.enabled || component.is_empty() {
            return Vec::new();
        }
        FilterName::ALL
            .into_iter()
            .filter(|f| self.is_enabled(*f) && f.handles(verb, resource))
            .filter(|f| {
                f.default_components().contains(&component)
                    || extra.get(*f).iter().any(|c| c == component)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_chains() {
        let s = FilterSwitches::default();
        let none = ExtraComponents::default();
        assert_eq!(
            s.chain("kube-proxy", &Verb::Watch, "services", &none),
            vec![
                FilterName::DiscardCloudService,
                FilterName::NodePortIsolation
            ]
        );
        assert_eq!(
            s.chain("kube-proxy", &Verb::List, "endpointslices", &none),
            vec![
                FilterName::ServiceTopology,
                FilterName::ForwardKubeSvcTraffic
            ]
        );
        assert_eq!(
            s.chain("kubelet", &Verb::List, "services", &none),
            vec![FilterName::MasterService]
        );
        assert_eq!(
            s.chain("kubelet", &Verb::Patch, "pods", &none),
            vec![FilterName::ServiceEnvUpdater]
        );
        assert_eq!(
            s.chain("kubelet", &Verb::Get, "configmaps", &none),
            vec![FilterName::InClusterConfig]
        );
        assert!(s.chain("kubelet", &Verb::Get, "services", &none).is_empty());
        assert!(
            s.chain("coredns", &Verb::Get, "endpointslices", &none)
                .is_empty()
        );
        assert!(
            s.chain("kubectl", &Verb::List, "services", &none)
                .is_empty()
        );
    }

    #[test]
    fn configmap_keys_add_components() {
        let extra = ExtraComponents::from_configmap_data(&json!({
            "servicetopology": " cilium-agent , Envoy ",
            "cache_agents": "x",
            "masterservice": "",
        }));
        assert_eq!(
            extra.get(FilterName::ServiceTopology),
            &["cilium-agent".to_owned(), "envoy".to_owned()]
        );
        assert!(extra.get(FilterName::MasterService).is_empty());
        let s = FilterSwitches::default();
        assert_eq!(
            s.chain("envoy", &Verb::Watch, "endpoints", &extra),
            vec![FilterName::ServiceTopology]
        );
        // Defaults are kept.
        assert_eq!(
            s.chain("coredns", &Verb::Watch, "endpoints", &extra),
            vec![FilterName::ServiceTopology]
        );
    }

    #[test]
    fn switches() {
        let none = ExtraComponents::default();
        let s = FilterSwitches::new(true, &["nodeportisolation"]).unwrap();
        assert_eq!(
            s.chain("kube-proxy", &Verb::Watch, "services", &none),
            vec![FilterName::DiscardCloudService]
        );
        let s = FilterSwitches::new(true, &["*"]).unwrap();
        assert!(
            s.chain("kubelet", &Verb::List, "services", &none)
                .is_empty()
        );
        assert!(!s.any_enabled());
        assert!(FilterSwitches::default().any_enabled());
        let s = FilterSwitches::new(false, &[""]).unwrap();
        assert!(
            s.chain("kubelet", &Verb::List, "services", &none)
                .is_empty()
        );
        assert!(FilterSwitches::new(true, &["nope"]).is_err());
    }
}
