//! Node-pool reconcilers: the runtime of yurt-manager and its controllers.
//!
//! A [`Manager`] runs kube-runtime controllers that share one [`Context`] (client, settings,
//! Prometheus metrics, a Kubernetes Event recorder, and [`informers::Informers`] so each
//! resource type is watched once per process), optionally behind client-go style leader
//! election on a Lease ([`leader`]). Controllers are picked with upstream's `--controllers`
//! syntax ([`names`]).
//!
//! | controller | alias | what it does |
//! | --- | --- | --- |
//! | `nodepool-controller` | `nodepool` | NodePool status, pool labels/annotations/taints on member nodes |
//! | `node-bucket-controller` | `nodebucket` | pool membership split into NodeBuckets of `--max-nodes-per-bucket` |
//! | `csr-approver-controller` | `csrapprover` | approves exactly the hub and tunnel CSRs |
//! | `service-topology-endpoints-controller` | `servicetopologyendpoints` | re-delivers Endpoints when a Service's topology annotation changes |
//! | `service-topology-endpointslice-controller` | `servicetopologyendpointslices` | the same for EndpointSlices |
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), yurt_pool::Error> {
//! use yurt_pool::{LeaseConfig, Manager};
//!
//! let manager = Manager::builder(client)
//!     .controllers(&["*"])
//!     .leader_election(LeaseConfig::new("kube-system", "yurt-manager", "host-1"))
//!     .build()?;
//! manager.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! [`webhook`] is the manager's webhook server (port 10273): Node, NodePool and Pod admission
//! webhooks and NodePool v1beta1/v1beta2 conversion, with its certificates kept in a Secret.
//!
//! The CRD types the controllers reconcile live in `yurt_core::crd`.

#![forbid(unsafe_code)]

pub mod context;
pub mod controllers;
pub mod informers;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod names;
pub mod probes;
pub mod ratelimit;
pub mod webhook;

pub use context::{Context, ManagerConfig};
pub use leader::{LeaderElector, LeadershipLost, LeaseConfig};
pub use manager::{Error, Manager, ManagerBuilder, Phase, install_crds};
pub use metrics::Metrics;
