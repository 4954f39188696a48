//! Prometheus metrics of a tunnel server or agent: sessions, streams, bytes, dial latency and
//! dial failures by reason. One [`Metrics`] is shared (cheaply cloned) by every task of a
//! process; [`Metrics::encode`] renders the text exposition format for `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Label = [(&'static str, &'static str); 1];

/// Dial failure reasons (the `reason` label of `yurt_tunnel_dial_failures_total`).
pub mod reason {
    /// No session for the node.
    pub const NO_TUNNEL: &str = "no_tunnel";
    /// Too many dials pending on the session.
    pub const OVERLOADED: &str = "overloaded";
    /// The dial exceeded its deadline.
    pub const TIMEOUT: &str = "timeout";
    /// The agent refused the target (allowlist).
    pub const REFUSED: &str = "refused";
    /// The agent could not reach the target.
    pub const UNREACHABLE: &str = "unreachable";
    /// The session failed while dialing.
    pub const SESSION: &str = "session";
    /// The request named no valid target.
    pub const BAD_TARGET: &str = "bad_target";
    /// The agent did not answer a ping while a dial waited (a frozen agent); the session was
    /// dropped.
    pub const UNRESPONSIVE: &str = "unresponsive";
}

/// Why an agent registration or a front-door client was refused (the `reason` label of
/// `yurt_tunnel_registrations_rejected_total` and `yurt_tunnel_front_door_rejected_total`).
pub mod refusal {
    /// Transport (TLS) handshake failed or timed out.
    pub const TRANSPORT: &str = "transport";
    /// The hello was malformed, of another version, or did not arrive in time.
    pub const HELLO: &str = "hello";
    /// The certificate may not register the node the hello names.
    pub const IDENTITY: &str = "identity";
    /// The hello claims a hostname or address its Node object does not report, or there is no
    /// such Node.
    pub const CLAIMS: &str = "claims";
    /// The hello claims a hostname or address another node's session holds.
    pub const COLLISION: &str = "collision";
    /// A front-door client without a client certificate.
    pub const NO_CERTIFICATE: &str = "no_certificate";
    /// A front-door client whose certificate identity is not allowed.
    pub const NOT_ALLOWED: &str = "not_allowed";
}

/// Tunnel metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    sessions: Gauge,
    streams: Gauge,
    streams_total: Counter,
    bytes: Family<Label, Counter>,
    dial_latency: Histogram,
    dial_failures: Family<Label, Counter>,
    registrations_rejected: Family<Label, Counter>,
    front_door_rejected: Family<Label, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("sessions", &self.inner.sessions.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry (prefix `yurt_tunnel`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("yurt_tunnel");
        let sessions = Gauge::default();
        let streams = Gauge::default();
        let streams_total = Counter::default();
        let bytes = Family::<Label, Counter>::default();
        let dial_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let dial_failures = Family::<Label, Counter>::default();
        let registrations_rejected = Family::<Label, Counter>::default();
        let front_door_rejected = Family::<Label, Counter>::default();
        registry.register("sessions", "Live agent sessions", sessions.clone());
        registry.register("streams", "Open tunneled streams", streams.clone());
        registry.register(
            "streams_opened",
            "Tunneled streams opened",
            streams_total.clone(),
        );
        registry.register(
            "bytes",
            "Bytes carried by tunneled streams, by direction",
            bytes.clone(),
        );
        registry.register(
            "dial_latency_seconds",
            "Time to open a tunneled stream",
            dial_latency.clone(),
        );
        registry.register(
            "dial_failures",
            "Failed dials by reason",
            dial_failures.clone(),
        );
        registry.register(
            "registrations_rejected",
            "Agent registrations refused, by reason",
            registrations_rejected.clone(),
        );
        registry.register(
            "front_door_rejected",
            "Front-door (TLS) clients refused, by reason",
            front_door_rejected.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                sessions,
                streams,
                streams_total,
                bytes,
                dial_latency,
                dial_failures,
                registrations_rejected,
                front_door_rejected,
            }),
        }
    }

    /// Renders the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Live sessions.
    pub fn sessions(&self) -> i64 {
        self.inner.sessions.get()
    }

    /// Open streams.
    pub fn open_streams(&self) -> i64 {
        self.inner.streams.get()
    }

    /// Failed dials with this reason so far.
    pub fn dial_failures(&self, reason: &'static str) -> u64 {
        self.inner
            .dial_failures
            .get_or_create(&[("reason", reason)])
            .get()
    }

    pub(crate) fn set_sessions(&self, n: usize) {
        self.inner.sessions.set(n as i64);
    }

    pub(crate) fn session_delta(&self, d: i64) {
        self.inner.sessions.inc_by(d);
    }

    pub(crate) fn dial_ok(&self, took: Duration) {
        self.inner.dial_latency.observe(took.as_secs_f64());
    }

    pub(crate) fn dial_failed(&self, reason: &'static str) {
        self.inner
            .dial_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Agent registrations refused with this reason (a [`refusal`] constant) so far.
    pub fn registrations_rejected(&self, reason: &'static str) -> u64 {
        self.inner
            .registrations_rejected
            .get_or_create(&[("reason", reason)])
            .get()
    }

    /// Front-door clients refused with this reason (a [`refusal`] constant) so far.
    pub fn front_door_rejected(&self, reason: &'static str) -> u64 {
        self.inner
            .front_door_rejected
            .get_or_create(&[("reason", reason)])
            .get()
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.inner
            .registrations_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub(crate) fn front_door_refused(&self, reason: &'static str) {
        self.inner
            .front_door_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Tracks one open stream until the guard drops.
    pub(crate) fn stream(&self) -> StreamGuard {
        self.inner.streams.inc();
        self.inner.streams_total.inc();
        StreamGuard {
            metrics: self.clone(),
        }
    }

    /// Counts `n` bytes carried towards the edge (`to_edge`) or from it.
    pub(crate) fn add_bytes(&self, to_edge: bool, n: u64) {
        let direction = if to_edge { "to_edge" } else { "from_edge" };
        self.inner
            .bytes
            .get_or_create(&[("direction", direction)])
            .inc_by(n);
    }
}

/// Decrements the open-stream gauge on drop.
pub(crate) struct StreamGuard {
    metrics: Metrics,
}

impl StreamGuard {
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.inner.streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let m = Metrics::new();
        m.set_sessions(2);
        m.dial_ok(Duration::from_millis(1));
        m.dial_failed(reason::NO_TUNNEL);
        {
            let _s = m.stream();
            assert_eq!(m.open_streams(), 1);
        }
        m.add_bytes(true, 10);
        m.add_bytes(false, 20);
        m.rejected(refusal::COLLISION);
        m.front_door_refused(refusal::NOT_ALLOWED);
        let text = m.encode();
        for needle in [
            "yurt_tunnel_sessions 2",
            "yurt_tunnel_streams 0",
            "yurt_tunnel_dial_failures_total{reason=\"no_tunnel\"} 1",
            "yurt_tunnel_bytes_total{direction=\"from_edge\"} 20",
            "yurt_tunnel_dial_latency_seconds_count 1",
            "yurt_tunnel_registrations_rejected_total{reason=\"collision\"} 1",
            "yurt_tunnel_front_door_rejected_total{reason=\"not_allowed\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(m.dial_failures(reason::NO_TUNNEL), 1);
    }
}
