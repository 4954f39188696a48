//! Errors of the tunnel: one enum for setup, transport, handshake and dial failures, each with a
//! message an operator can act on.

use std::io;

/// Everything that can go wrong in yurt-tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Socket-level failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// TLS configuration or handshake failure.
    #[error("tls error: {0}")]
    Tls(String),
    /// A certificate or key file could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    Pem {
        /// What was being loaded ("certificate", "private key", "CA bundle").
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The registration handshake failed or was refused.
    #[error("handshake: {0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    /// The peer's identity does not match what is required.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// HTTP/2 session failure.
    #[error("http/2: {0}")]
    Http(#[from] hyper::Error),
    /// An operation exceeded its deadline.
    #[error("timed out after {0:?}: {1}")]
    Timeout(std::time::Duration, &'static str),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}
