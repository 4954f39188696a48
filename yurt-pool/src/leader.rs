//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, so that of
//! several manager replicas exactly one runs controllers.
//!
//! - A candidate reads the Lease every retry period (2 s). It takes the Lease when nobody holds
//!   it, or when the record has not changed for the holder's `leaseDurationSeconds` (15 s) as
//!   measured on the candidate's own clock from the moment it first saw that record: clocks of
//!   different machines are never compared.
//! - Every write carries the resourceVersion the decision was based on, so two candidates
//!   cannot both win: the slower one gets a conflict and stays a follower.
//! - The leader renews every retry period. A renewal round that does not succeed within the
//!   renew deadline (10 s) ends leadership, which is before the Lease (15 s) can expire for the
//!   others: the leader stops its controllers before anyone else may start theirs.
//! - On shutdown the leader releases the Lease (empty holder, 1 s duration) so a standby takes
//!   over at once instead of after 15 s.
//!
//! The decision itself ([`decide`]) is a pure function of the observed record and the clock,
//! tested without a server; [`LeaderElector`] does the I/O.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Where and how to elect a leader.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (`--leader-elect-resource-namespace`, default `kube-system`).
    pub namespace: String,
    /// Name of the Lease (`--leader-elect-resource-name`, default `yurt-manager`).
    pub name: String,
    /// This candidate's identity, written as `holderIdentity` (host name plus a unique suffix).
    pub identity: String,
    /// How long a non-renewed Lease stays valid for the others (`--leader-elect-lease-duration`).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up
    /// (`--leader-elect-renew-deadline`); shorter than the lease duration.
    pub renew_deadline: Duration,
    /// Pause between attempts (`--leader-elect-retry-period`).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Upstream's defaults (15 s / 10 s / 2 s) for the Lease `namespace/name`.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timing invariants client-go enforces: lease duration > renew deadline >
    /// retry period (times 1.2 for jitter), all positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("--leader-elect-retry-period must be positive".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(
                "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
                    .into(),
            );
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err("--leader-elect-renew-deadline must be greater than 1.2 x --leader-elect-retry-period".into());
        }
        Ok(())
    }
}

/// What a candidate should do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No Lease exists: create it with this record.
    Create(LeaseSpec),
    /// Write this record (taking over or renewing), conditional on the read resourceVersion.
    Write(LeaseSpec),
    /// Someone else holds a Lease that has not expired yet.
    HeldBy(String),
}

/// Decides the next step of candidate `identity` (see the module docs). `current` is the
/// record read now, `unchanged_since` when this candidate first saw exactly that record.
pub fn decide(
    identity: &str,
    lease_duration: Duration,
    current: Option<&LeaseSpec>,
    unchanged_since: Instant,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    let mine = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration.as_secs().max(1) as i32),
        acquire_time: acquire.or(Some(MicroTime(wall))),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(current) = current else {
        return Decision::Create(mine(None, 0));
    };
    let holder = current.holder_identity.as_deref().unwrap_or("");
    let transitions = current.lease_transitions.unwrap_or(0);
    if holder == identity {
        return Decision::Write(mine(current.acquire_time.clone(), transitions));
    }
    let held_for = Duration::from_secs(current.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    if !holder.is_empty() && unchanged_since + held_for > now {
        return Decision::HeldBy(holder.to_owned());
    }
    Decision::Write(mine(None, transitions + 1))
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
#[error("leader election lost: could not renew Lease {namespace}/{name} within the renew deadline")]
pub struct LeadershipLost {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
}

/// One candidate's view of the Lease, doing the reads and writes of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<(Option<LeaseSpec>, Instant)>,
    leading: bool,
    last_renewed: Option<Instant>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .field("leading", &self.leading)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate for the Lease described by `config`.
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            leading: false,
            last_renewed: None,
        }
    }

    /// The election's settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether the last attempt made (or kept) this candidate the leader.
    pub fn is_leader(&self) -> bool {
        self.leading
    }

    /// When this candidate last wrote the Lease as its holder (measured before the write was
    /// sent, so the others' view of the Lease cannot be older).
    pub fn last_renewed(&self) -> Option<Instant> {
        self.last_renewed
    }

    /// One read-decide-write round; `Ok(true)` when this candidate holds the Lease afterwards.
    /// Conflicts (another candidate wrote first) are `Ok(false)`.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let lease = self.api.get_opt(&self.config.name).await?;
        let now = Instant::now();
        let spec = lease.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_since = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => {
                self.observed = Some((spec.clone(), now));
                now
            }
        };
        let decision = decide(
            &self.config.identity,
            self.config.lease_duration,
            spec.as_ref(),
            unchanged_since,
            now,
            Timestamp::now(),
        );
        let result = match decision {
            Decision::HeldBy(_) => Ok(None),
            Decision::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(Some)
            }
            Decision::Write(spec) => {
                let mut lease = lease.expect("Write is decided only for an existing Lease");
                lease.spec = Some(spec);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map(Some)
            }
        };
        match result {
            Ok(Some(written)) => {
                self.observed = Some((written.spec.clone(), Instant::now()));
                self.leading = true;
                self.last_renewed = Some(started);
                Ok(true)
            }
            Ok(None) => {
                self.leading = false;
                Ok(false)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.leading = false;
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Waits until this candidate holds the Lease, retrying every retry period.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %format!("{}/{}", self.config.namespace, self.config.name),
                        identity = %self.config.identity, "successfully acquired lease");
                    return;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "error retrieving or updating the leader lease")
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Keeps renewing the Lease; returns when a renewal round fails for the whole renew deadline
    /// (or the Lease was taken over), which is before the Lease can expire for the others.
    pub async fn hold(&mut self) -> LeadershipLost {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = Instant::now() + self.config.renew_deadline;
            let renewed = loop {
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => break true,
                    Ok(Ok(false)) if !self.observed_held_by_other() => {}
                    Ok(Ok(false)) => break false,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "failed to renew the leader lease")
                    }
                    Err(_) => break false,
                }
                if Instant::now() + self.config.retry_period >= deadline {
                    break false;
                }
                tokio::time::sleep(self.config.retry_period).await;
            };
            if !renewed {
                self.leading = false;
                return LeadershipLost {
                    namespace: self.config.namespace.clone(),
                    name: self.config.name.clone(),
                };
            }
        }
    }

    fn observed_held_by_other(&self) -> bool {
        matches!(&self.observed, Some((Some(spec), _))
            if spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty() && h != self.config.identity))
    }

    /// Gives the Lease up if this candidate holds it (empty holder, 1 s duration), so a standby
    /// takes over without waiting for expiry. Bounded by the renew deadline.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let work = async {
            let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            let now = MicroTime(Timestamp::now());
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            });
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await?;
            Ok(())
        };
        let result = match tokio::time::timeout(self.config.renew_deadline, work).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("timed out releasing the leader lease");
                Ok(())
            }
        };
        self.leading = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(transitions),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created_with_no_transitions() {
        let t = Instant::now();
        let Decision::Create(spec) = decide("a", LEASE, None, t, t, Timestamp::UNIX_EPOCH) else {
            panic!("expected Create");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn a_live_lease_of_another_holder_is_respected_until_it_expires_locally() {
        let seen = Instant::now();
        let other = held_by("b", 3);
        let wall = Timestamp::UNIX_EPOCH;
        assert_eq!(
            decide(
                "a",
                LEASE,
                Some(&other),
                seen,
                seen + Duration::from_secs(14),
                wall
            ),
            Decision::HeldBy("b".into())
        );
        let Decision::Write(spec) = decide(
            "a",
            LEASE,
            Some(&other),
            seen,
            seen + Duration::from_secs(16),
            wall,
        ) else {
            panic!("expected a take-over");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(
            spec.lease_transitions,
            Some(4),
            "a take-over is a transition"
        );
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let seen = Instant::now();
        let mine = held_by("a", 2);
        let later = Timestamp::from_second(100).unwrap();
        let Decision::Write(spec) = decide("a", LEASE, Some(&mine), seen, seen, later) else {
            panic!("expected a renewal");
        };
        assert_eq!(spec.lease_transitions, Some(2));
        assert_eq!(spec.acquire_time, mine.acquire_time);
        assert_eq!(spec.renew_time, Some(MicroTime(later)));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let seen = Instant::now();
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            lease_transitions: Some(1),
            ..LeaseSpec::default()
        };
        assert!(matches!(
            decide(
                "a",
                LEASE,
                Some(&released),
                seen,
                seen,
                Timestamp::UNIX_EPOCH
            ),
            Decision::Write(_)
        ));
    }

    #[test]
    fn timing_invariants_are_checked() {
        let mut c = LeaseConfig::new("kube-system", "yurt-manager", "a");
        assert!(c.validate().is_ok());
        c.renew_deadline = Duration::from_secs(15);
        assert!(c.validate().is_err());
        c.renew_deadline = Duration::from_secs(2);
        assert!(c.validate().is_err());
    }
}
