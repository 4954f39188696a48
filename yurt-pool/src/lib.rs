//! Node-pool reconcilers.
//!
//! kube-runtime controllers for OpenYurt's pool-level objects: NodePool membership and status,
//! YurtAppSet per-pool workloads, autonomy tolerations and service topology (yurt-manager's
//! equivalent). The CRD types they reconcile live in `yurt_core::crd`.
//!
//! Status: not implemented yet; the controllers arrive with the yurt-pool issues. This crate is
//! published now so the workspace layout is final.

#![forbid(unsafe_code)]
