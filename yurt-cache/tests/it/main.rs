//! Integration tests of yurt-cache, one binary: store semantics, integrity and quarantine,
//! crash consistency under SIGKILL; the proxy layers (request info, upstream client, health
//! checker, balancer, cache) against TestApiServers over loopback.

mod admin;
mod balancer;
mod cache;
mod clients;
mod crash;
mod filter;
mod health;
mod hubconfig;
mod integrity;
mod lease;
mod multiplex;
mod net;
mod offline;
mod pages;
mod protobuf;
mod replay;
mod request_info;
mod server;
mod store;
mod upstream;
mod util;
mod yurthub;
