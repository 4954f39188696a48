//! HTTP/2 sessions with reversed roles.
//!
//! Why HTTP/2 and why reversed: the agent must dial *out* (edge nodes sit behind NAT), but the
//! cloud is the side that opens streams. So once the agent's outbound transport is up (and the
//! [`crate::handshake`] registered it), the agent runs an h2 **server** on that connection and the
//! cloud runs an h2 **client**, sending one `CONNECT <host>:<port>` request per tunneled stream
//! (RFC 9113 §8.5). Every hard part of multiplexing is then done by a proven, widely deployed
//! implementation (hyper over `h2`): per-stream and per-connection flow control (a slow kubelet
//! reader back-pressures only its own stream, and buffers stay bounded by the windows),
//! concurrent stream limits (`SETTINGS_MAX_CONCURRENT_STREAMS`), RST_STREAM for clean per-stream
//! failure, GOAWAY, and PING frames whose missing ACK declares a session dead. A home-made
//! framing (as in ANP's gRPC packets) would have to re-solve each of these. HTTP/2 also keeps the
//! door open for other transports: anything that yields a byte stream carries a session.
//!
//! [`SessionConfig`] holds the knobs both roles share.

use std::time::Duration;

/// HTTP/2 settings of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A PING is sent after this long without a frame from the peer (default 1 s). Shorter
    /// finds a frozen peer sooner; each ping is a 17-byte frame each way per idle interval.
    pub keepalive_interval: Duration,
    /// A PING unanswered this long declares the session dead (default 2 s). Shorter finds a
    /// frozen peer sooner but may drop a session on a congested or high-latency link. A silent
    /// session is found dead at most `keepalive_interval + keepalive_timeout` after its last
    /// frame (3 s by default; upstream yurt-tunnel's 10 s + 5 s took 15 s).
    pub keepalive_timeout: Duration,
    /// Streams the agent accepts at once on one session.
    pub max_concurrent_streams: u32,
    /// Per-stream flow-control window (bounds per-stream buffering).
    pub stream_window: u32,
    /// Per-connection flow-control window.
    pub connection_window: u32,
    /// Largest HTTP/2 DATA frame this side accepts (fewer, larger frames for bulk streams).
    pub max_frame_size: u32,
    /// Per-stream send buffer bound.
    pub max_send_buf: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(2),
            max_concurrent_streams: 2048,
            stream_window: 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_frame_size: 64 * 1024,
            max_send_buf: 1024 * 1024,
        }
    }
}

pub(crate) type ClientSend =
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Cloud side: an h2 client over an agent's stream.
pub(crate) async fn client<I>(
    io: I,
    cfg: &SessionConfig,
) -> Result<
    (
        ClientSend,
        hyper::client::conn::http2::Connection<
            hyper_util::rt::TokioIo<I>,
            http_body_util::Empty<bytes::Bytes>,
            hyper_util::rt::TokioExecutor,
        >,
    ),
    hyper::Error,
>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(cfg.stream_window)
        .initial_connection_window_size(cfg.connection_window)
        .max_concurrent_reset_streams(1024)
        .max_frame_size(cfg.max_frame_size)
        .max_send_buf_size(cfg.max_send_buf)
        .handshake(hyper_util::rt::TokioIo::new(io))
        .await
}

/// Agent side: an h2 server builder with the session settings.
pub(crate) fn server(
    cfg: &SessionConfig,
) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .initial_stream_window_size(cfg.stream_window)
        .initial_connection_window_size(cfg.connection_window)
        .max_frame_size(cfg.max_frame_size)
        .max_send_buf_size(cfg.max_send_buf);
    b
}
