//! The [`Manager`]: picks controllers, elects a leader, starts the shared informers and runs the
//! controllers until shutdown or loss of leadership.
//!
//! Start-up order: check the apiserver answers (an unreachable apiserver is an error, not a
//! retry loop); with leader election, wait for the Lease; then set up every selected controller
//! whose custom resources are served (a controller whose CRD is missing is skipped with one log
//! line), and only then open the watches, one per resource type. On shutdown the controllers are
//! stopped first and the Lease is released after. If the Lease cannot be renewed, the controllers
//! are stopped at once and [`Manager::run`] returns [`Error::LeadershipLost`]; the process is
//! expected to exit and be restarted as a standby, as upstream does.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use kube::Client;
use tokio::sync::watch;

use crate::context::{Context, ManagerConfig};
use crate::controllers::{self, ControllerDef, RequiredResource};
use crate::leader::{LeaderElector, LeadershipLost, LeaseConfig};
use crate::metrics::LeaseLabel;
use crate::names::{self, UnknownController};

/// Why the manager could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--controllers` named an unknown controller.
    #[error(transparent)]
    UnknownController(#[from] UnknownController),
    /// The leader election settings are inconsistent.
    #[error("leader election: {0}")]
    LeaderElectionConfig(String),
    /// The apiserver did not answer.
    #[error("cannot reach the apiserver: {0}")]
    Unreachable(kube::Error),
    /// Leadership was lost; the controllers have been stopped.
    #[error(transparent)]
    LeadershipLost(#[from] LeadershipLost),
    /// Another apiserver error during start-up.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Where a manager is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet, or waiting for the Lease.
    Standby,
    /// Controllers are running.
    Running,
    /// Stopped (shutdown or lost leadership).
    Stopped,
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    client: Client,
    config: ManagerConfig,
    controllers: Vec<String>,
    leader: Option<LeaseConfig>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("config", &self.config)
            .field("controllers", &self.controllers)
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// The `--controllers` selection (default `*`).
    pub fn controllers<S: AsRef<str>>(mut self, entries: &[S]) -> Self {
        self.controllers = entries.iter().map(|e| e.as_ref().to_owned()).collect();
        self
    }

    /// The settings controllers read.
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// Run controllers only while holding the Lease described by `lease`.
    pub fn leader_election(mut self, lease: LeaseConfig) -> Self {
        self.leader = Some(lease);
        self
    }

    /// Checks the selection and settings and builds the manager.
    pub fn build(self) -> Result<Manager, Error> {
        let all = controllers::all();
        let known: Vec<&'static str> = all.iter().map(|d| d.name).collect();
        let off: Vec<&str> = all
            .iter()
            .filter(|d| d.disabled_by_default)
            .map(|d| d.name)
            .collect();
        let selected = names::select(&self.controllers, &known, &off)?;
        let enabled = all
            .into_iter()
            .filter(|d| selected.contains(&d.name))
            .collect();
        if let Some(lease) = &self.leader {
            lease.validate().map_err(Error::LeaderElectionConfig)?;
        }
        let ctx = Arc::new(Context::new(self.client.clone(), self.config));
        let (phase, _) = watch::channel(Phase::Standby);
        Ok(Manager {
            leader: self.leader.map(|l| LeaderElector::new(self.client, l)),
            ctx,
            enabled,
            phase,
        })
    }
}

/// A set of controllers sharing one [`Context`], optionally behind leader election.
pub struct Manager {
    ctx: Arc<Context>,
    enabled: Vec<ControllerDef>,
    leader: Option<LeaderElector>,
    phase: watch::Sender<Phase>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("enabled", &self.enabled())
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A builder for a manager talking to `client`, running every default controller.
    pub fn builder(client: Client) -> ManagerBuilder {
        ManagerBuilder {
            client,
            config: ManagerConfig::default(),
            controllers: vec!["*".to_owned()],
            leader: None,
        }
    }

    /// Names of every controller this crate provides.
    pub fn known_controllers() -> Vec<&'static str> {
        controllers::all().iter().map(|d| d.name).collect()
    }

    /// The shared context (metrics, client, settings).
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// The selected controllers (some may still be skipped at start for a missing CRD).
    pub fn enabled(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|d| d.name).collect()
    }

    /// Follows the manager's [`Phase`].
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Runs until `shutdown` completes (then releases the Lease and returns `Ok`) or leadership
    /// is lost (then returns [`Error::LeadershipLost`] with the controllers already stopped).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let client = self.ctx.client.clone();
        client
            .apiserver_version()
            .await
            .map_err(Error::Unreachable)?;
        let lease_label = LeaseLabel {
            name: "yurt-manager".to_owned(),
        };

        if let Some(elector) = self.leader.as_mut() {
            tracing::info!(lease = %format!("{}/{}", elector.config().namespace, elector.config().name),
                identity = %elector.config().identity, "attempting to acquire leader lease");
            futures::select! {
                () = elector.acquire().fuse() => {}
                () = shutdown.as_mut() => {
                    self.phase.send_replace(Phase::Stopped);
                    return Ok(());
                }
            }
            self.ctx.metrics.leader.get_or_create(&lease_label).set(1);
        }

        let mut work: Vec<BoxFuture<'static, ()>> = Vec::new();
        for def in &self.enabled {
            if let Some(missing) = missing_resource(&client, def.requires).await? {
                tracing::info!(controller = def.name, resource = %format!("{}.{}", missing.plural, missing.group_version),
                    "custom resource not installed; controller skipped");
                continue;
            }
            tracing::info!(controller = def.name, "starting controller");
            work.push((def.setup)(&self.ctx));
        }
        work.extend(self.ctx.informers.start(&client));
        // With every controller skipped the manager still runs (and serves its probes) until
        // shutdown.
        work.push(futures::future::pending().boxed());
        let mut work = join_all(work).fuse();
        self.phase.send_replace(Phase::Running);

        let outcome = match self.leader.as_mut() {
            Some(elector) => {
                let mut lost = std::pin::pin!(elector.hold().fuse());
                futures::select! {
                    _ = work => Ok(()),
                    () = shutdown.as_mut() => Ok(()),
                    lost = lost.as_mut() => Err(lost),
                }
            }
            None => {
                futures::select! {
                    _ = work => Ok(()),
                    () = shutdown.as_mut() => Ok(()),
                }
            }
        };
        // Stop every controller and watch before touching the Lease.
        drop(work);
        self.phase.send_replace(Phase::Stopped);
        self.ctx.metrics.leader.get_or_create(&lease_label).set(0);
        match outcome {
            Ok(()) => {
                if let Some(elector) = self.leader.as_mut() {
                    if let Err(err) = elector.release().await {
                        tracing::warn!(error = %err, "could not release the leader lease");
                    } else {
                        tracing::info!("released leader lease");
                    }
                }
                Ok(())
            }
            Err(lost) => {
                tracing::error!("{lost}");
                Err(lost.into())
            }
        }
    }
}

/// The first of `required` the apiserver does not serve, if any.
async fn missing_resource(
    client: &Client,
    required: &[RequiredResource],
) -> Result<Option<RequiredResource>, kube::Error> {
    for r in required {
        match client.list_api_group_resources(r.group_version).await {
            Ok(list) if list.resources.iter().any(|res| res.name == r.plural) => {}
            Ok(_) => return Ok(Some(*r)),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Some(*r)),
            Err(err) => return Err(err),
        }
    }
    Ok(None)
}

/// Applies every OpenYurt CustomResourceDefinition (the same definitions as `deploy/crds/`)
/// with server-side apply as field manager `yurt-manager`, and returns their names. Applying
/// again is a no-op, so this is safe on every start.
pub async fn install_crds(client: &Client) -> Result<Vec<String>, kube::Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("yurt-manager").force();
    let mut names = Vec::new();
    for mut crd in yurt_core::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crd.metadata.managed_fields = None;
        let mut body = serde_json::to_value(&crd).map_err(kube::Error::SerdeError)?;
        body["apiVersion"] = "apiextensions.k8s.io/v1".into();
        body["kind"] = "CustomResourceDefinition".into();
        api.patch(&name, &params, &Patch::Apply(&body)).await?;
        names.push(name);
    }
    Ok(names)
}
