use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use http::Uri;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lease;
use super::{HealthMetrics, HealthSnapshot, ServerHealth};
use crate::lease::KubeletLiveness;
use crate::upstream::UpstreamClient;

/// How the [`HealthChecker`] probes.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between probes of a healthy server (`--heartbeat-interval-seconds`, 10 s).
    pub interval: Duration,
    /// Time between probes of an unhealthy server (1 s, stretched by a random 0-20 % so
    /// many hubs do not probe in step), so a restored link is used within about two of them.
    pub retry_interval: Duration,
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
    /// When set and kubelet is not [alive](KubeletLiveness::is_alive), a [`Probe::Lease`]
    /// probe does not renew the node Lease and probes `/readyz` instead: kubelet's liveness
    /// decides whether the node looks alive to the cloud, never whether the cloud is reachable.
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
            retry_interval: Duration::from_secs(1),
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

    /// Sets [`retry_interval`](Self::retry_interval).
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
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

    /// Couples the node heartbeat to kubelet's liveness: while `liveness` says kubelet is dead,
    /// the node Lease is no longer renewed (a dead kubelet still makes the node NotReady) and
    /// each server is probed with `GET /readyz` instead, so the hub keeps proxying for
    /// whatever else runs on the node.
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

    /// Probes every server now instead of when each is next due (at most one is queued).
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

/// The task: probes each server when it is due (healthy servers every
/// [`HealthConfig::interval`], unhealthy ones every jittered [`HealthConfig::retry_interval`]),
/// or all of them on [`HealthChecker::probe_now`], until stopped.
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
    let start = Instant::now();
    // When each server is next probed; every server is due at once.
    let mut due = vec![start; servers.len()];
    // When the last failed probe of each server started: the link was down then, so the time
    // from it to healthy bounds the time from the link's return to the hub using it.
    let mut failed_at: Vec<Option<Instant>> = vec![None; servers.len()];
    loop {
        let next = due.iter().copied().min().unwrap_or(start + config.interval);
        let all = tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep_until(next) => false,
            _ = wake.notified() => true,
        };
        let now = Instant::now();
        let chosen: Vec<usize> = (0..servers.len())
            .filter(|&i| all || due[i] <= now)
            .collect();
        let probes = chosen.iter().map(|&i| probe(&client, &servers[i], &config));
        let outcomes = tokio::select! {
            _ = &mut stopped => return,
            outcomes = join_all(probes) => outcomes,
        };
        let done = Instant::now();
        tx.send_modify(|snapshot| {
            snapshot.round += 1;
            for (&i, outcome) in chosen.iter().zip(outcomes) {
                let state = &mut snapshot.servers[i];
                let was_healthy = state.healthy;
                apply(state, outcome, &config, done);
                if !outcome {
                    failed_at[i] = Some(now);
                } else if state.healthy
                    && !was_healthy
                    && let Some(failed) = failed_at[i].take()
                {
                    let recovery = done.saturating_duration_since(failed);
                    tracing::info!(server = %state.server, ?recovery, "upstream healthy again");
                    config
                        .metrics
                        .record_recovery(&state.server.to_string(), recovery);
                }
                config
                    .metrics
                    .record(&state.server.to_string(), outcome, state.healthy);
                due[i] = done
                    + if state.healthy {
                        config.interval.max(Duration::from_millis(1))
                    } else {
                        retry_delay(config.retry_interval)
                    };
            }
        });
    }
}

/// `base` stretched by a random 0-20 %, at least 1 ms.
fn retry_delay(base: Duration) -> Duration {
    base.max(Duration::from_millis(1))
        .mul_f64(1.0 + 0.2 * crate::local::random_fraction())
}

async fn probe(client: &UpstreamClient, server: &Uri, config: &HealthConfig) -> bool {
    let kubelet_dead = config
        .kubelet_liveness
        .as_ref()
        .is_some_and(|l| !l.is_alive());
    let result = match &config.probe {
        Probe::Lease(_) if kubelet_dead => {
            tracing::debug!(%server, "kubelet has not renewed its lease: probing /readyz");
            lease::readyz(client, server, config.timeout).await
        }
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
fn apply(state: &mut ServerHealth, ok: bool, config: &HealthConfig, now: Instant) {
    // Never probed before: one success is enough.
    let first = state.successes == 0 && state.failures == 0 && !state.healthy;
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
        apply(&mut s, true, &config, now);
        assert!(s.healthy, "one success in the first probe is enough");
        apply(&mut s, false, &config, now);
        assert!(!s.healthy, "one failure makes it unhealthy");
        apply(&mut s, true, &config, now);
        assert!(!s.healthy, "one success is not enough afterwards");
        apply(&mut s, true, &config, now);
        assert!(s.healthy);
        apply(&mut s, false, &config, now);
        assert!(!s.healthy);
        apply(&mut s, false, &config, now);
        apply(&mut s, true, &config, now);
        apply(&mut s, false, &config, now);
        apply(&mut s, true, &config, now);
        assert!(!s.healthy, "the successes must be consecutive");
        let mut never =
            HealthSnapshot::unprobed(["https://a:6443".parse().unwrap()]).servers[0].clone();
        apply(&mut never, false, &config, now);
        apply(&mut never, true, &config, now);
        assert!(!never.healthy, "a first failure makes the threshold apply");
    }

    #[test]
    fn retries_are_jittered_up_to_a_fifth() {
        for _ in 0..100 {
            let d = retry_delay(Duration::from_secs(1));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_millis(1200),
                "{d:?}"
            );
        }
    }
}
