use futures::future::{Either, Ready};

/// The response future of [`RequestInfoService`](super::RequestInfoService): either the inner
/// service's future, or a ready 400 `Status` response for a malformed request.
pub type ResponseFuture<F, T, E> = Either<F, Ready<Result<T, E>>>;
