//! Integration tests of yurt-core: one binary, one module per concern.
mod crd;
mod selector;
mod request_info;
mod patch;
