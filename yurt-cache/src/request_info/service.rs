use std::task::{Context, Poll};

use futures::future::{Either, ready};
use http::{Request, Response};
use tower::Service;
use yurt_core::{Component, RequestInfo, Status};

use super::ResponseFuture;

/// Stores [`RequestInfo`] and [`Component`] in each request's extensions, or answers a
/// malformed request with a 400 `Status`; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RequestInfoService<S> {
    inner: S,
}

impl<S> RequestInfoService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        RequestInfoService { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestInfoService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Vec<u8>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match RequestInfo::from_request(&req) {
            Ok(info) => {
                let component = Component::from_request(&req);
                tracing::trace!(
                    verb = %info.verb.as_str(),
                    path = %info.path,
                    %component,
                    "request resolved"
                );
                req.extensions_mut().insert(info);
                req.extensions_mut().insert(component);
                Either::Left(self.inner.call(req))
            }
            Err(e) => {
                tracing::debug!(uri = %req.uri(), error = %e, "malformed request");
                Either::Right(ready(Ok(Status::from(e).to_response())))
            }
        }
    }
}
