use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use http::Uri;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::lease;
use super::{HealthMetrics, HealthSnapshot, ServerHealth};
use crate::lease::KubeletLiveness;
use crate::upstream::UpstreamClient;

/// How the [`HealthChecker`] probes.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between probe rounds (`--heartbeat-interval-seconds`, 10 s).
    pub interval: Duration,
    /// Bound on each request of a probe (`--heartbeat-timeout-seconds`, 2 s).
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy server healthy
    /// (`--heartbeat-healthy-threshold`, 2).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy server unhealthy (1).
    pub unhealthy_threshold: u32,
    /// What a probe does.
    pub probe: Probe,
    /// Where probe outcomes and health are counted.
    pub metrics: HealthMetrics,
    /// When set and kubelet is not [alive](KubeletLiveness::is_alive), every probe fails
    /// without contacting the server (§1.9 kubelet liveness coupling).
    pub kubelet_liveness: Option<KubeletLiveness>,
}

impl HealthConfig {
    /// Upstream's defaults with the Lease heartbeat of node `node_name`.
    pub fn lease(node_name: &str) -> Self {
        HealthConfig::with_probe(Probe::Lease(LeaseProbe::new(node_name)))
    }

    /// Upstream's defaults with the `/readyz` probe.
    pub fn readyz() -> Self {
        HealthConfig::with_probe(Probe::Readyz)
    }

    fn with_probe(probe: Probe) -> Self {
        HealthConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 1,
            probe,
            metrics: HealthMetrics::default(),
            kubelet_liveness: None,
        }
    }

    /// Sets [`interval`](Self::interval).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Counts into `metrics` (register them with [`HealthMetrics::register`]).
    pub fn metrics(mut self, metrics: HealthMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Couples health to kubelet's liveness: while `liveness` says kubelet is dead, every probe
    /// fails without contacting the server, so the node Lease is no longer renewed and every
    /// server turns unhealthy (a dead kubelet still makes the node NotReady).
    pub fn kubelet_liveness(mut self, liveness: KubeletLiveness) -> Self {
        self.kubelet_liveness = Some(liveness);
        self
    }

    /// Sets both thresholds (each at least 1).
    pub fn thresholds(mut self, healthy: u32, unhealthy: u32) -> Self {
        self.healthy_threshold = healthy.max(1);
        self.unhealthy_threshold = unhealthy.max(1);
        self
    }
}

/// What one probe of one server does; see the [module docs](super).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Probe {
    /// Renew the node Lease (the node heartbeat).
    Lease(LeaseProbe),
    /// `GET /readyz`, for identities that cannot write Leases.
    Readyz,
}

/// The node Lease the [`Probe::Lease`] probe renews.
#[derive(Debug, Clone)]
pub struct LeaseProbe {
    /// The node's name: the Lease's name and `holderIdentity`.
    pub node_name: String,
    /// The Lease's namespace (`kube-node-lease`).
    pub namespace: String,
    /// `spec.leaseDurationSeconds` (`--kubelet-health-grace-period`, 40 s).
    pub lease_duration_seconds: i32,
    /// Re-reads after a 409 Conflict before the probe fails (`--heartbeat-failed-retry`, 3).
    pub retries: u32,
}

impl LeaseProbe {
    /// The Lease of node `node_name` with upstream's defaults.
    pub fn new(node_name: &str) -> Self {
        LeaseProbe {
            node_name: node_name.to_owned(),
            namespace: "kube-node-lease".to_owned(),
            lease_duration_seconds: 40,
            retries: 3,
        }
    }
}

/// The handle owning the health-checking task; see the [module docs](super).
#[derive(Debug)]
pub struct HealthChecker {
    rx: watch::Receiver<HealthSnapshot>,
    wake: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts probing `servers` (in flag order) through `client`. The first round starts at
    /// once. Call within a Tokio runtime.
    pub fn spawn(client: UpstreamClient, servers: Vec<Uri>, config: HealthConfig) -> Self {
        let (tx, rx) = watch::channel(HealthSnapshot::unprobed(servers));
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, config, tx, wake.clone(), stopped));
        HealthChecker {
            rx,
            wake,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A receiver of every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<HealthSnapshot> {
        self.rx.clone()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.rx.borrow().clone()
    }

    /// Starts a probe round now instead of at the next interval (at most one is queued).
    pub fn probe_now(&self) {
        self.wake.notify_one();
    }

    /// Stops the task and waits for it to end (at most 5 s, then it is aborted).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The task: a round per tick (or per [`HealthChecker::probe_now`]) until stopped.
async fn run(
    client: UpstreamClient,
    config: HealthConfig,
    tx: watch::Sender<HealthSnapshot>,
    wake: Arc<Notify>,
    mut stopped: oneshot::Receiver<()>,
) {
    let servers: Vec<Uri> = tx
        .borrow()
        .servers
        .iter()
        .map(|s| s.server.clone())
        .collect();
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticker.tick() => {}
            _ = wake.notified() => {}
        }
        let probes = servers.iter().map(|server| probe(&client, server, &config));
        let outcomes = tokio::select! {
            _ = &mut stopped => return,
            outcomes = join_all(probes) => outcomes,
        };
        let now = Instant::now();
        tx.send_modify(|snapshot| {
            let first = snapshot.round == 0;
            snapshot.round += 1;
            for (state, outcome) in snapshot.servers.iter_mut().zip(outcomes) {
                apply(state, outcome, first, &config, now);
                config
                    .metrics
                    .record(&state.server.to_string(), outcome, state.healthy);
            }
        });
    }
}

async fn probe(client: &UpstreamClient, server: &Uri, config: &HealthConfig) -> bool {
    if let Some(liveness) = &config.kubelet_liveness
        && !liveness.is_alive()
    {
        tracing::debug!(%server, "health probe failed: kubelet has not renewed its lease");
        return false;
    }
    let result = match &config.probe {
        Probe::Lease(lease) => lease::renew(client, server, lease, config.timeout).await,
        Probe::Readyz => lease::readyz(client, server, config.timeout).await,
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            tracing::debug!(%server, %why, "health probe failed");
            false
        }
    }
}

/// Folds one probe outcome into a server's state (upstream's threshold rules).
fn apply(state: &mut ServerHealth, ok: bool, first: bool, config: &HealthConfig, now: Instant) {
    if ok {
        state.successes = state.successes.saturating_add(1);
        state.failures = 0;
    } else {
        state.failures = state.failures.saturating_add(1);
        state.successes = 0;
    }
    let healthy = if state.healthy {
        state.failures < config.unhealthy_threshold
    } else {
        ok && (first || state.successes >= config.healthy_threshold)
    };
    if healthy != state.healthy {
        tracing::info!(server = %state.server, healthy, "upstream health changed");
        state.healthy = healthy;
        state.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_upstream() {
        let config = HealthConfig::readyz().thresholds(2, 1);
        let now = Instant::now();
        let mut s =
            HealthSnapshot::unprobed(["https://a:6443".parse().unwrap()]).servers[0].clone();
        apply(&mut s, true, true, &config, now);
        assert!(s.healthy, "one success in the first round is enough");
        apply(&mut s, false, false, &config, now);
        assert!(!s.healthy, "one failure makes it unhealthy");
        apply(&mut s, true, false, &config, now);
        assert!(!s.healthy, "one success is not enough afterwards");
        apply(&mut s, true, false, &config, now);
        assert!(s.healthy);
        apply(&mut s, false, true, &config, now);
        assert!(!s.healthy);
        apply(&mut s, false, false, &config, now);
        apply(&mut s, true, false, &config, now);
        apply(&mut s, false, false, &config, now);
        apply(&mut s, true, false, &config, now);
        assert!(!s.healthy, "the successes must be consecutive");
    }
}
