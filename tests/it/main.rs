//! Integration tests of the reference daemons and tools in `examples/`: they are run as the
//! operator runs them, as processes, and judged by exit code and output.

mod credentials;
mod examples;
mod raven;
mod yurt_manager;
mod yurthub;
