//! Integration tests of yurt-cache, one binary: store semantics, integrity and quarantine,
//! crash consistency under SIGKILL.

mod crash;
mod integrity;
mod store;
mod util;
