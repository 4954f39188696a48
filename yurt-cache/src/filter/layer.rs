use std::sync::Arc;

use tokio::sync::watch;
use tower::Layer;

use super::seen::Seen;
use super::{ClusterView, ExtraComponents, FilterConfig, FilterService, FilterSwitches};

/// Default largest single object, list item or watch event a filter decodes.
const DEFAULT_MAX_BYTES: usize = 32 << 20;
/// Default number of objects an open watch keeps for re-filtering.
const DEFAULT_MAX_TRACKED: usize = 4096;
/// Default number of objects per resource the layer keeps for seeding new watches.
const DEFAULT_MAX_SEEN: usize = 16384;

/// Wraps a service in [`FilterService`]; see the [module docs](super). Clones share the
/// channels.
#[derive(Debug, Clone)]
pub struct FilterLayer {
    pub(super) config: Arc<FilterConfig>,
    pub(super) switches: FilterSwitches,
    pub(super) extra: watch::Receiver<ExtraComponents>,
    pub(super) view: watch::Receiver<Arc<ClusterView>>,
    pub(super) max_bytes: usize,
    pub(super) max_tracked: usize,
    pub(super) seen: Seen,
}

impl FilterLayer {
    /// Filters with `config`, `switches` (the flags), the extra components `extra` names
    /// (`yurt-hub-cfg`, read per request) and the cluster `view` (from
    /// [`ViewWatcher::view`](super::ViewWatcher::view)).
    pub fn new(
        config: FilterConfig,
        switches: FilterSwitches,
        extra: watch::Receiver<ExtraComponents>,
        view: watch::Receiver<Arc<ClusterView>>,
    ) -> Self {
        FilterLayer {
            config: Arc::new(config),
            switches,
            extra,
            view,
            max_bytes: DEFAULT_MAX_BYTES,
            max_tracked: DEFAULT_MAX_TRACKED,
            seen: Seen::new(DEFAULT_MAX_SEEN),
        }
    }

    /// The largest object, list item or watch event decoded (default 32 MiB); a larger list
    /// item or event ends the stream with an error, a larger single object passes unchanged.
    pub fn max_object_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How many objects one open watch keeps to re-filter on a view change (default 4096);
    /// objects beyond are filtered when they change, not when the view does.
    pub fn max_tracked(mut self, objects: usize) -> Self {
        self.max_tracked = objects;
        self
    }

    /// How many objects per resource the layer keeps (the last unfiltered copy of what lists
    /// and watches of view-dependent resources sent) so that a watch opened after a list is
    /// re-filtered on a view change too (default 16384).
    pub fn max_seen(mut self, objects: usize) -> Self {
        self.seen = Seen::new(objects);
        self
    }
}

impl<S> Layer<S> for FilterLayer {
    type Service = FilterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FilterService::new(inner, self.clone())
    }
}
