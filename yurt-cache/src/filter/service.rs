use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower::Service;
use yurt_core::wellknown::hub::MULTIPLEXER_AGENT_PREFIX;
use yurt_core::{Component, RequestInfo, Verb};

use super::body::{FilterBody, Mode, Setup};
use super::seen::Scope;
use super::{FilterLayer, FilterName, ResponseFuture};
use crate::body::Body;
use crate::cache::policy::{self, Accept};

/// What a filtered request's response gets.
struct Plan {
    chain: Vec<FilterName>,
    mode: Mode,
    api_version: String,
    resource: String,
    scope: Option<Scope>,
}

/// The filter layer's service; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct FilterService<S> {
    inner: S,
    config: FilterLayer,
}

impl<S> FilterService<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: FilterLayer) -> Self {
        FilterService {
            inner,
            config: layer,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The chain and response shape for a request; `None`: not filtered.
    fn plan<B>(&self, req: &Request<B>) -> Option<Plan> {
        let info = req.extensions().get::<RequestInfo>()?;
        let component = req.extensions().get::<Component>()?.as_str();
        if !info.is_resource_request
            || !(info.subresource.is_empty() || info.subresource == "status")
            || component == "yurthub"
            || component
                .strip_prefix(MULTIPLEXER_AGENT_PREFIX)
                .is_some_and(|node| node == self.config.config.node_name)
            || req.headers().contains_key(header::UPGRADE)
            || policy::accept(req.headers()) != Accept::Json
        {
            return None;
        }
        let mode = match info.verb {
            Verb::List => Mode::List,
            Verb::Watch => Mode::Watch,
            Verb::Get | Verb::Patch => Mode::Object,
            _ => return None,
        };
        let chain = self.config.switches.chain(
            component,
            &info.verb,
            &info.resource,
            &self.config.extra.borrow(),
        );
        let api_version = if info.api_group.is_empty() {
            info.api_version.clone()
        } else {
            format!("{}/{}", info.api_group, info.api_version)
        };
        let o = &info.options;
        let scope = Scope::new(
            &info.namespace,
            o.label_selector.as_deref(),
            o.field_selector.as_deref(),
        );
        (!chain.is_empty()).then(|| Plan {
            chain,
            mode,
            api_version,
            resource: info.resource.clone(),
            scope,
        })
    }
}

impl<S> Service<Request<Body>> for FilterService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Some(plan) = self.plan(&req) else {
            return ResponseFuture(Box::pin(self.inner.call(req)));
        };
        policy::rewrite_request(req.headers_mut());
        let fut = self.inner.call(req);
        let mode = plan.mode;
        let setup = Setup {
            chain: plan.chain,
            config: self.config.config.clone(),
            view: self.config.view.clone(),
            max_bytes: self.config.max_bytes,
            max_tracked: self.config.max_tracked,
            api_version: plan.api_version,
            resource: plan.resource,
            seen: Some(self.config.seen.clone()),
            scope: plan.scope,
        };
        ResponseFuture(Box::pin(async move {
            let mut resp = fut.await?;
            if !policy::response_is_cacheable(resp.status(), resp.headers()) {
                return Ok(resp);
            }
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            Ok(resp.map(|body| Body::new(FilterBody::new(body, mode, setup))))
        }))
    }
}
