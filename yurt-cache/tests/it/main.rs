//! Integration tests of yurt-cache, one binary: store semantics, integrity and quarantine,
//! crash consistency under SIGKILL; the proxy layers (request info, upstream client, health
//! checker, balancer) against TestApiServers over loopback.

mod balancer;
mod crash;
mod health;
mod integrity;
mod net;
mod request_info;
mod store;
mod upstream;
mod util;
