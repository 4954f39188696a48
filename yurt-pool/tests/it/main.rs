//! Integration tests of yurt-pool against the test apiserver, through kube-rs: the manager's
//! runtime (controller selection, shared watches, skipped controllers, idleness), leader
//! election, and each controller's behaviour.

mod csrapprover;
mod leader;
mod manager;
mod nodebucket;
mod nodepool;
mod servicetopology;
mod support;
