use tower::Layer;

use super::RequestInfoService;

/// Wraps a service in [`RequestInfoService`]; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfoLayer {
    _priv: (),
}

impl RequestInfoLayer {
    /// A new layer.
    pub fn new() -> Self {
        RequestInfoLayer { _priv: () }
    }
}

impl<S> Layer<S> for RequestInfoLayer {
    type Service = RequestInfoService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestInfoService::new(inner)
    }
}
