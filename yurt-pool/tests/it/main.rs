//! Integration tests of yurt-pool against the test apiserver, through kube-rs: the manager's
//! runtime (controller selection, shared watches, skipped controllers, idleness), leader
//! election, each controller's behaviour, how many writes the pool controllers make, and the
//! webhook server.

mod csrapprover;
mod leader;
mod manager;
mod nodebucket;
mod nodepool;
mod servicetopology;
mod support;
mod webhook;
mod writes;
