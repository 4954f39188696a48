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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use http::StatusCode;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tokio::sync::watch;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::filter::{ClusterView, ExtraComponents, FilterConfig, FilterSwitches};
    use crate::request_info::RequestInfoLayer;

    const LIST: &str = r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"kubernetes","namespace":"default"},"spec":{"clusterIP":"10.96.0.1","ports":[{"name":"https","port":443}]}}]}"#;

    async fn cluster_ip(user_agent: &str, status: StatusCode, content_type: &str) -> Value {
        let (_etx, extra) = watch::channel(ExtraComponents::default());
        let (_vtx, view) = watch::channel(Arc::new(ClusterView::new()));
        let layer = FilterLayer::new(
            FilterConfig::new("edge-1"),
            FilterSwitches::default(),
            extra,
            view,
        );
        let ct = content_type.to_owned();
        let svc = ServiceBuilder::new()
            .layer(RequestInfoLayer::new())
            .layer(layer)
            .service(service_fn(move |req: Request<Body>| {
                let ct = ct.clone();
                async move {
                    // Filtered requests ask for JSON; others keep what the client accepts.
                    let filtered = req.headers()[header::USER_AGENT]
                        .to_str()
                        .unwrap()
                        .starts_with("kubelet");
                    let json = req.headers()[header::ACCEPT] == "application/json";
                    assert_eq!(filtered, json);
                    let mut resp = Response::new(Body::from(LIST));
                    *resp.status_mut() = status;
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, ct.parse().unwrap());
                    Ok::<_, Infallible>(resp)
                }
            }));
        let req = Request::get("/api/v1/services")
            .header(header::USER_AGENT, user_agent)
            .header(header::ACCEPT, "application/vnd.kubernetes.protobuf, */*")
            .body(Body::empty())
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let list: Value = serde_json::from_slice(&bytes).unwrap();
        list["items"][0]["spec"]["clusterIP"].clone()
    }

    #[tokio::test]
    async fn filters_clients_but_not_the_hub_errors_or_other_types() {
        let ok = StatusCode::OK;
        let json_ct = "application/json";
        assert_eq!(
            cluster_ip("kubelet/v1.36", ok, json_ct).await,
            json!("169.254.2.1")
        );
        assert_eq!(
            cluster_ip("yurthub/1.0", ok, json_ct).await,
            json!("10.96.0.1")
        );
        assert_eq!(
            cluster_ip("multiplexer-proxy-edge-1", ok, json_ct).await,
            json!("10.96.0.1")
        );
        assert_eq!(
            cluster_ip("kubectl/v1", ok, json_ct).await,
            json!("10.96.0.1")
        );
        assert_eq!(
            cluster_ip("kubelet/v1.36", StatusCode::ACCEPTED, "text/plain").await,
            json!("10.96.0.1")
        );
    }
}
