//! Integration tests of yurt-core: one binary, one module per concern.
mod crd;
mod patch;
mod protobuf;
mod request_info;
mod selector;
