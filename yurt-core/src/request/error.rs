//! [`RequestError`]: why a request line could not be resolved into a
//! [`RequestInfo`](super::RequestInfo).

/// A request line that cannot be resolved. Each case is one kube-apiserver answers with
/// `400 Bad Request`, so callers map any of them to a `BadRequest` Status; the message names
/// the offending part and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A query parameter that list/watch options need could not be decoded (a non-integer
    /// `limit` or `timeoutSeconds`, an unsupported `resourceVersionMatch`).
    #[error("invalid value {value:?} for query parameter {name:?}: {reason}")]
    InvalidQueryParameter {
        /// The parameter's name, e.g. `timeoutSeconds`.
        name: String,
        /// The value as sent (after percent-decoding).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The URL path is malformed: a bad percent-escape, bytes that are not UTF-8 once decoded,
    /// or a legacy `/watch/` or `/proxy/` prefix with nothing after it.
    #[error("invalid request path {path:?}: {reason}")]
    InvalidPath {
        /// The path as sent.
        path: String,
        /// Why it was refused.
        reason: String,
    },
}

impl RequestError {
    /// Shorthand for [`RequestError::InvalidQueryParameter`].
    pub(crate) fn query(name: &str, value: &str, reason: impl Into<String>) -> RequestError {
        RequestError::InvalidQueryParameter {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`RequestError::InvalidPath`].
    pub(crate) fn path(path: &str, reason: impl Into<String>) -> RequestError {
        RequestError::InvalidPath {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}
