//! Integration tests of yurt-testkit: one binary, one module per concern.
mod chaos;
mod kubeconfig;
mod pki;

mod admission;
mod auth;
mod crd;
mod crud;
mod discovery;
mod encodings;
mod faults;
mod fidelity;
mod kube_rs;
mod kubectl;
mod openapi;
mod patch;
mod python;
mod sandbox;
mod schema;
mod subresources;
mod support;
mod watch;
