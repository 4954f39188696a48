//! The filter layer: per-client rewriting of the apiserver's answers (upstream YurtHub's response
//! filters, reference §1.13), so that edge components see the cluster as an edge node should:
//! Services and EndpointSlices narrowed to the node's pool, the apiserver reached through the
//! hub, cloud-only Services hidden.
//!
//! [`FilterLayer`] sits outside the [`CacheLayer`](crate::cache::CacheLayer): the store keeps
//! what the apiserver sent and each client gets its own filtered view, online or offline alike.
//! For each request it picks a chain of [`FilterName`]s by (component, verb, resource):
//! upstream's defaults ([`FilterName::default_components`], [`FilterName::handles`]), plus the
//! extra components of the `yurt-hub-cfg` keys named after the filters ([`ExtraComponents`],
//! published live by [`HubConfigWatcher`](crate::hubconfig::HubConfigWatcher)), minus the
//! filters switched off by `--enable-resource-filter=false` or `--disabled-resource-filters`
//! ([`FilterSwitches`]). Requests from the hub itself (component `yurthub`) and from this
//! node's multiplexer (`multiplexer-proxy-<node>`) are never filtered, nor are responses that
//! are not 2xx, not JSON (the layer asks upstream for JSON when the client accepts it) or
//! content-encoded.
//!
//! # Streams stay streams
//!
//! - **list**: the list body is split item by item as it arrives
//!   ([`json_stream::ListStream`](crate::cache::json_stream::ListStream)); each item runs
//!   through the chain and is written out at once, dropped ones are left out. The rewritten
//!   body leads with `"items"` and ends with the list's `kind`, `apiVersion` and `metadata`
//!   (member order carries no meaning in JSON); only one item is held at a time.
//! - **watch**: each event is filtered on its own; an object the chain drops goes out as
//!   `DELETED` so the client forgets it; `BOOKMARK` and `ERROR` events pass unchanged.
//! - **get/patch**: the one object is buffered (up to [`FilterLayer::max_object_bytes`];
//!   larger ones pass unchanged) and filtered.
//!
//! # Following the cluster
//!
//! The filters read this node's fixed settings ([`FilterConfig`]) and a [`ClusterView`] (pool
//! memberships from NodePools or NodeBuckets, the Services' topology annotations) published on a
//! watch channel by [`ViewWatcher`], which lists and watches through the hub's own stack as
//! `yurthub`. When the view changes, every open watch whose chain depends on it
//! ([`FilterName::uses_view`]) re-filters the objects it has sent (it keeps their last
//! unfiltered copy, at most [`FilterLayer::max_tracked`] per watch) and sends what changed:
//! `MODIFIED` for a narrowed or widened EndpointSlice, `DELETED` for an object now dropped,
//! `ADDED` for one now let through, without waiting for the object itself to change. Re-sent
//! objects keep their resourceVersion (nothing changed upstream); a watch opened after a list
//! starts out knowing what the layer's lists sent within its namespace and selectors.
//!
//! # Readiness
//!
//! [`FilterService`] is ready exactly when its inner service is. The hub's readiness should wait
//! for [`ViewWatcher::synced`] (see [`AdminService::ready_gate`](crate::admin::AdminService::ready_gate)).
//!
//! # Failure
//!
//! The layer adds no error of its own: the inner service's errors pass through. A body that is
//! not the JSON it claims to be (or has an item above the size limit) ends the client's stream
//! with an error, as a broken upstream stream would.

mod body;
mod chain;
mod discardcloudservice;
mod forwardkubesvctraffic;
mod future;
mod inclusterconfig;
mod layer;
mod masterservice;
mod nodeportisolation;
mod seen;
mod service;
mod serviceenvupdater;
mod servicetopology;
mod view;
mod watcher;

pub use chain::{ExtraComponents, FilterName, FilterSwitches, UnknownFilter};
pub use future::ResponseFuture;
pub use layer::FilterLayer;
pub use service::FilterService;
pub use view::{ClusterView, FilterConfig};
pub use watcher::{PoolSource, ViewWatcher, ViewWatcherConfig};

use serde_json::Value;

/// What a filter reads besides the object: the node's settings and the cluster view.
#[derive(Debug, Clone, Copy)]
pub struct FilterContext<'a> {
    pub(crate) config: &'a FilterConfig,
    pub(crate) view: &'a ClusterView,
    /// The request's `apiVersion` (`v1`, `discovery.k8s.io/v1beta1`); empty when unknown.
    pub(crate) api_version: &'a str,
    /// The request's resource (`endpoints`, `endpointslices`); empty when unknown.
    pub(crate) resource: &'a str,
}

impl<'a> FilterContext<'a> {
    /// A context over `config` and `view`.
    pub fn new(config: &'a FilterConfig, view: &'a ClusterView) -> Self {
        FilterContext {
            config,
            view,
            api_version: "",
            resource: "",
        }
    }

    /// The request's `apiVersion` and resource (list items carry no `kind` or `apiVersion`).
    pub fn for_resource(mut self, api_version: &'a str, resource: &'a str) -> Self {
        self.api_version = api_version;
        self.resource = resource;
        self
    }
}

impl FilterName {
    /// Runs this filter on one object: `None` drops it.
    pub fn apply(self, obj: Value, cx: &FilterContext<'_>) -> Option<Value> {
        match self {
            FilterName::ServiceTopology => servicetopology::apply(obj, cx),
            FilterName::MasterService => masterservice::apply(obj, cx),
            FilterName::DiscardCloudService => discardcloudservice::apply(obj, cx),
            FilterName::InClusterConfig => inclusterconfig::apply(obj, cx),
            FilterName::NodePortIsolation => nodeportisolation::apply(obj, cx),
            FilterName::ForwardKubeSvcTraffic => forwardkubesvctraffic::apply(obj, cx),
            FilterName::ServiceEnvUpdater => serviceenvupdater::apply(obj, cx),
        }
    }
}

/// Runs `chain` in order on `obj`; the first filter that drops it ends the chain.
pub fn run_chain(chain: &[FilterName], obj: Value, cx: &FilterContext<'_>) -> Option<Value> {
    chain.iter().try_fold(obj, |o, f| f.apply(o, cx))
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// `edge-1` in pool `hangzhou` (with `edge-2`), `cloud-1` in pool `cloud`.
    pub(crate) fn cx() -> (FilterConfig, ClusterView) {
        let mut view = ClusterView::new();
        view.set_nodepool(&json!({"metadata": {"name": "hangzhou"},
            "status": {"nodes": ["edge-1", "edge-2"]}}));
        view.set_nodepool(&json!({"metadata": {"name": "cloud"},
            "status": {"nodes": ["cloud-1"]}}));
        (FilterConfig::new("edge-1"), view)
    }

    #[test]
    fn chain_stops_at_the_first_drop() {
        let (config, view) = cx();
        let cx = FilterContext::new(&config, &view);
        let svc = json!({"metadata": {"name": "x-tunnel-server-internal-svc", "namespace": "kube-system"},
            "spec": {"type": "NodePort"}});
        let chain = [
            FilterName::DiscardCloudService,
            FilterName::NodePortIsolation,
        ];
        assert_eq!(run_chain(&chain, svc.clone(), &cx), None);
        assert_eq!(run_chain(&chain[1..], svc.clone(), &cx), Some(svc));
    }
}
