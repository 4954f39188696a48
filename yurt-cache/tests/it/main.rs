//! Integration tests of yurt-cache, one binary: store semantics, integrity and quarantine,
//! crash consistency under SIGKILL, recovery from a full disk, private file modes; the proxy
//! layers (request info, upstream client, health checker, balancer, cache) and the listeners'
//! limits against TestApiServers over loopback; online and offline answers compared request by
//! request.

mod admin;
mod agree;
mod balancer;
mod cache;
mod clients;
mod conns;
mod crash;
mod diskfull;
mod filter;
mod health;
mod hubconfig;
mod integrity;
mod lease;
mod modes;
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
