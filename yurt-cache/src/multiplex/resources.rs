//! [`PoolScopeResources`]: the set of resources the multiplexer serves, in upstream's
//! `--pool-scope-resources` format.

use std::fmt;

use crate::store::Gvr;

/// The resources whose list and watch requests are multiplexed (upstream's "pool-scope"
/// resources). Parsed from a comma-separated list of `group/version/resource`, the core group
/// written empty: `/v1/services,discovery.k8s.io/v1/endpointslices` (the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolScopeResources(Vec<Gvr>);

/// The default `--pool-scope-resources`.
pub const DEFAULT_POOL_SCOPE_RESOURCES: &str = "/v1/services,discovery.k8s.io/v1/endpointslices";

/// A `--pool-scope-resources` entry that is not `group/version/resource`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool-scope resource {0:?}: expected group/version/resource, e.g. /v1/services")]
pub struct ParseResourcesError(pub String);

impl PoolScopeResources {
    /// The given resources.
    pub fn new(resources: impl IntoIterator<Item = Gvr>) -> Self {
        let mut v: Vec<Gvr> = Vec::new();
        for gvr in resources {
            if !v.contains(&gvr) {
                v.push(gvr);
            }
        }
        PoolScopeResources(v)
    }

    /// Parses `group/version/resource,...` (entries trimmed, empty entries ignored).
    ///
    /// ```
    /// use yurt_cache::multiplex::PoolScopeResources;
    ///
    /// let r = PoolScopeResources::parse("/v1/services, discovery.k8s.io/v1/endpointslices").unwrap();
    /// assert_eq!(r, PoolScopeResources::default());
    /// assert!(PoolScopeResources::parse("v1/services").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, ParseResourcesError> {
        let mut out = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parts: Vec<&str> = entry.split('/').collect();
            match parts.as_slice() {
                [group, version, resource] if !version.is_empty() && !resource.is_empty() => {
                    out.push(Gvr::new(group, version, resource));
                }
                _ => return Err(ParseResourcesError(entry.to_owned())),
            }
        }
        Ok(PoolScopeResources::new(out))
    }

    /// Whether `gvr` is multiplexed.
    pub fn contains(&self, group: &str, version: &str, resource: &str) -> bool {
        self.0
            .iter()
            .any(|g| g.group == group && g.version == version && g.resource == resource)
    }

    /// The resources.
    pub fn iter(&self) -> impl Iterator<Item = &Gvr> {
        self.0.iter()
    }
}

impl Default for PoolScopeResources {
    fn default() -> Self {
        PoolScopeResources::new([
            Gvr::new("", "v1", "services"),
            Gvr::new("discovery.k8s.io", "v1", "endpointslices"),
        ])
    }
}

impl fmt::Display for PoolScopeResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}/{}/{}", g.group, g.version, g.resource)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for PoolScopeResources {
    type Err = ParseResourcesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PoolScopeResources::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_display() {
        let d = PoolScopeResources::default();
        assert_eq!(d.to_string(), DEFAULT_POOL_SCOPE_RESOURCES);
        assert_eq!(PoolScopeResources::parse(&d.to_string()).unwrap(), d);
        assert!(d.contains("", "v1", "services"));
        assert!(!d.contains("", "v1", "pods"));
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in ["services", "/v1", "a/b/c/d", "g//r"] {
            assert!(PoolScopeResources::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PoolScopeResources::parse(" , ").unwrap(),
            PoolScopeResources::new([])
        );
    }
}
