//! Health of each upstream kube-apiserver, probed by a background task and published on a
//! [`tokio::sync::watch`] channel as a [`HealthSnapshot`].
//!
//! [`HealthChecker::spawn`] starts one task that probes each healthy server every
//! [`HealthConfig::interval`] (10 s) and each unhealthy one every
//! [`HealthConfig::retry_interval`] (1 s, stretched by a random 0-20 %), each probe bounded by
//! [`HealthConfig::timeout`] (2 s), the servers due at the same time concurrently. The fast
//! retry is why a healed link is used again within about three seconds (two successes about a
//! second apart) instead of two full heartbeat intervals. Two probes exist:
//!
//! - [`Probe::Lease`], upstream YurtHub's: **the probe is the node heartbeat**. It renews the
//!   Lease `kube-node-lease/<node>` with the hub's identity (GET, then PUT with
//!   `holderIdentity = <node>`, `renewTime = now`, `leaseDurationSeconds` 40 and the legacy
//!   `openyurt.io/delegate-heartbeat` annotation removed, the Node as owner when the Lease has
//!   none and the Node exists; POST if the Lease does not exist; a
//!   409 Conflict re-reads and retries, up to [`LeaseProbe::retries`] times). Unlike upstream,
//!   which stops a round at the first server that succeeds, every server is probed (and so
//!   renews the Lease) on its own schedule, so each server's health is always current.
//! - [`Probe::Readyz`], for identities that may not write Leases: `GET /readyz` must answer 2xx.
//!
//! With [`HealthConfig::kubelet_liveness`] (edge mode, fed by
//! [`KubeletLeaseLayer`](crate::lease::KubeletLeaseLayer)), kubelet's liveness decides only
//! whether the hub renews the node Lease: while kubelet has not renewed its own lease within
//! the grace period, the Lease probe leaves the node Lease alone (so a dead kubelet still makes
//! the node NotReady, upstream's coupling) and probes `GET /readyz` with the hub's identity
//! instead. The cloud's reachability never depends on kubelet, so a node without a kubelet
//! renewing through the hub (a vendor agent, a node being converted, kubelet restarting)
//! keeps being proxied.
//!
//! A server's state follows upstream's rules: in the first round one success makes it healthy;
//! afterwards it becomes healthy after [`HealthConfig::healthy_threshold`] (2) consecutive
//! successes and unhealthy after [`HealthConfig::unhealthy_threshold`] (1) failure. Every
//! server starts unhealthy until its first probe. The snapshot is republished after each round
//! of probes (its [`round`](HealthSnapshot::round) counts them), so a receiver sees flips
//! promptly.
//!
//! Probe outcomes, per-server health and the time each recovery took (from the start of the
//! last failed probe to healthy, an upper bound on the time from the link's return) are
//! recorded in [`HealthMetrics`] ([`HealthConfig::metrics`]), for the caller to register in
//! its Prometheus registry.
//!
//! # Ownership
//!
//! The task is owned by the [`HealthChecker`] handle: [`HealthChecker::shutdown`] stops it and
//! waits (bounded) for it to end, and dropping the handle aborts it. Receivers outlive it and
//! keep the last snapshot.
//!
//! # Readiness and failure
//!
//! The checker is not a `Service`; it never blocks callers. A probe that errors or times out is
//! one failure of that server, logged at debug level; nothing else fails.

mod checker;
mod lease;
mod metrics;
mod snapshot;

pub use checker::{HealthChecker, HealthConfig, LeaseProbe, Probe};
pub use metrics::{HealthMetrics, ProbeLabels, ServerLabels};
pub use snapshot::{HealthSnapshot, ServerHealth};
