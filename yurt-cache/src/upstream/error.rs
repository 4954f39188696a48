use yurt_core::Status;

use crate::body::BoxError;

/// Errors of the hub's proxy path (upstream client and balancer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection to `server` could be established (refused, timed out, TLS handshake or
    /// certificate failure). Nothing of the request was sent, so it is safe to retry elsewhere.
    #[error("connecting to {server}: {source}")]
    Connect {
        /// The server's URI.
        server: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The exchange with `server` failed after the connection was up (the request may have
    /// been received).
    #[error("request to {server} failed: {source}")]
    Upstream {
        /// The server's URI.
        server: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The client's own request body failed while it was being sent to `server` (a malformed
    /// chunked encoding, a client that hung up mid-body); the exchange was abandoned. Over
    /// HTTP/2 hyper resets the stream, over HTTP/1 it closes the connection, so the failure is
    /// recognised by watching the body, not by the transport's error.
    #[error("the request body for {server} could not be read: {source}")]
    RequestBody {
        /// The server's URI.
        server: String,
        /// The body's error.
        #[source]
        source: BoxError,
    },
    /// A server address cannot be used (no scheme or host, a scheme other than http/https).
    #[error("invalid server address {server:?}: {reason}")]
    InvalidServer {
        /// The address as given.
        server: String,
        /// Why it is refused.
        reason: String,
    },
    /// The TLS configuration could not be built (bad key, unusable CA certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate and key cannot be used (why, in words an operator can act on;
    /// the caller names the file).
    #[error("unusable client certificate: {0}")]
    ClientCert(String),
    /// A PEM document could not be read.
    #[error("reading PEM: {0}")]
    Pem(String),
    /// Every upstream server is unhealthy.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
}

impl Error {
    /// True for [`Error::Connect`]: the request never left the hub.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }

    /// The Kubernetes `Status` the service edge answers with: 503 ServiceUnavailable when no
    /// server could be reached or none is healthy, 500 InternalError for configuration errors,
    /// and 400 BadRequest (as kube-apiserver answers) when the client's request body could not
    /// be read ([`Error::RequestBody`]): that is the client's fault, not the server's.
    pub fn to_status(&self) -> Status {
        match self {
            Error::RequestBody { .. } => Status::bad_request("the request body could not be read"),
            Error::Connect { .. } | Error::Upstream { .. } | Error::NoHealthyUpstream => {
                Status::service_unavailable(self.to_string())
            }
            Error::InvalidServer { .. } | Error::Tls(_) | Error::Pem(_) | Error::ClientCert(_) => {
                Status::internal(self)
            }
        }
    }
}

impl From<&Error> for Status {
    fn from(e: &Error) -> Self {
        e.to_status()
    }
}
